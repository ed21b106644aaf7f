#!/usr/bin/env python3
"""Verifiers nobody here wrote, against a running portcullis (started by run.sh).

    check.py --base http://127.0.0.1:PORT --bin BINARY --alg RS256|ES256|EdDSA

1. PyJWT's PyJWKClient, pointed at /.well-known/jwks.json, verifies a portcullis access token
   and refuses tampered ones (payload changed, signature changed, an unknown kid, an alg swap
   to HS256 with the public key as the secret); portcullis itself refuses them too (401 on /protected/,
   {"active": false} from /introspect/).
2. simplejwt with JWK_URL, in a DRF view (JWTStatelessUserAuthentication, IsAuthenticated),
   accepts portcullis access tokens and refuses tampered and refresh tokens.
3. `portcullis rotatekeys` while the server runs: the server signs within a few seconds with
   the key it published as "next" before, so both verifiers accept old and new tokens alike
   with the key set they cached before the rotation (PyJWT 2.15 fetches the set again for an
   unknown kid only 30 s after its last fetch: a key first published at the rotation would
   be refused that long).

Stdlib + PyJWT + Django/DRF/simplejwt only; everything on loopback; every wait is bounded.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import jwt
from jwt import PyJWKClient

PASSWORD = "c0rrect-h0rse-battery"
failures: list[str] = []


def check(ok: bool, what: str) -> None:
    print(f"  {'ok  ' if ok else 'FAIL'} {what}")
    if not ok:
        failures.append(what)


def http(method: str, url: str, body: dict | None = None, headers: dict | None = None, form: bool = False):
    data = None
    headers = dict(headers or {})
    if body is not None:
        if form:
            data = "&".join(f"{k}={urllib.request.quote(v)}" for k, v in body.items()).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            return res.status, json.loads(res.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def tampered(token: str, public_pem: bytes) -> dict[str, str]:
    """Forgeries of `token`, by name."""
    head, payload, sig = token.split(".")
    claims = json.loads(unb64(payload))
    claims["user_id"] = "1" if claims["user_id"] != "1" else "2"
    header = json.loads(unb64(head))
    flipped = sig[:-4] + ("AAAA" if not sig.endswith("AAAA") else "BBBB")
    hs_header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": header["kid"]}).encode())
    signing_input = f"{hs_header}.{payload}".encode()
    alg_swap = f"{hs_header}.{payload}.{b64(hmac.new(public_pem, signing_input, hashlib.sha256).digest())}"
    other_kid = b64(json.dumps({**header, "kid": "not-a-portcullis-kid"}).encode())
    return {
        "payload changed": f"{head}.{b64(json.dumps(claims).encode())}.{sig}",
        "signature changed": f"{head}.{payload}.{flipped}",
        "an alg swap to HS256 with the public key as secret": alg_swap,
        "an unknown kid": f"{other_kid}.{payload}.{sig}",
    }


class Server:
    def __init__(self, base: str, bin_path: str, alg: str, service_token: str):
        self.base, self.bin, self.alg, self.service = base, bin_path, alg, service_token

    def pair(self) -> tuple[str, str]:
        status, body = http("POST", f"{self.base}/api/token/", {"username": "john", "password": PASSWORD})
        assert status == 200, (status, body)
        return body["access"], body["refresh"]

    def accepts(self, token: str) -> bool:
        return http("GET", f"{self.base}/protected/", headers={"Authorization": f"Bearer {token}"})[0] == 200

    def active(self, token: str) -> bool:
        status, body = http(
            "POST", f"{self.base}/introspect/", {"token": token}, {"Authorization": f"Token {self.service}"}, form=True
        )
        assert status == 200, (status, body)
        return body["active"]


def pyjwt_verifies(client: PyJWKClient, token: str, alg: str) -> bool:
    try:
        key = client.get_signing_key_from_jwt(token)
        claims = jwt.decode(token, key.key, algorithms=[alg])
        return claims["token_type"] == "access"
    except (jwt.PyJWTError, jwt.PyJWKClientError):
        return False


def configure_django(jwks_url: str, alg: str):
    """A Django project with one DRF view behind simplejwt (JWK_URL); returns its test client."""
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="not-portcullis-key",
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "rest_framework"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        REST_FRAMEWORK={
            "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework_simplejwt.authentication.JWTStatelessUserAuthentication"],
            "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
        },
        SIMPLE_JWT={"ALGORITHM": alg, "JWK_URL": jwks_url, "SIGNING_KEY": None, "VERIFYING_KEY": None},
    )
    django.setup()
    from django.test import Client

    return Client()


urlpatterns = []  # filled in once Django is configured (ROOT_URLCONF is this module)


def add_view() -> None:
    from django.urls import path
    from rest_framework.response import Response
    from rest_framework.views import APIView

    class Whoami(APIView):
        def get(self, request):
            return Response({"user_id": request.user.id, "token_type": request.auth["token_type"]})

    urlpatterns.append(path("whoami/", Whoami.as_view()))


def django_accepts(client, token: str, user_id: str) -> bool:
    res = client.get("/whoami/", HTTP_AUTHORIZATION=f"Bearer {token}")
    return res.status_code == 200 and res.json() == {"user_id": user_id, "token_type": "access"}


def django_refuses(client, token: str) -> bool:
    res = client.get("/whoami/", HTTP_AUTHORIZATION=f"Bearer {token}")
    return res.status_code == 401 and res.json().get("code") == "token_not_valid"


def public_pem(jwks_url: str, token: str) -> bytes:
    from cryptography.hazmat.primitives import serialization

    key = PyJWKClient(jwks_url).get_signing_key_from_jwt(token).key
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def rotate_and_wait(server: Server, old_kid: str) -> tuple[str, float]:
    """`portcullis rotatekeys`; then a new access token once the server signs with the new key."""
    out = subprocess.run([server.bin, "rotatekeys"], capture_output=True, text=True, timeout=60)
    check(out.returncode == 0, f"portcullis rotatekeys: {out.stdout.strip().splitlines()[:1]}")
    started = time.monotonic()
    while time.monotonic() - started < 15:
        access, _ = server.pair()
        if jwt.get_unverified_header(access)["kid"] != old_kid:
            return access, time.monotonic() - started
        time.sleep(0.2)
    raise SystemExit("FAIL: the server did not sign with the new key within 15 s")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--bin", required=True)
    parser.add_argument("--alg", required=True)
    parser.add_argument("--service-token", required=True)
    args = parser.parse_args()
    server = Server(args.base, args.bin, args.alg, args.service_token)
    jwks_url = f"{args.base}/.well-known/jwks.json"
    print(f"{args.alg}: PyJWT {jwt.__version__}")

    access, refresh = server.pair()
    user_id = jwt.decode(access, options={"verify_signature": False})["user_id"]
    header = jwt.get_unverified_header(access)
    check(header["alg"] == args.alg and bool(header.get("kid")), f"the token's header names {args.alg} and a kid")

    pyjwk = PyJWKClient(jwks_url)  # caches the set: after the rotation it must fetch it again
    check(pyjwt_verifies(pyjwk, access, args.alg), "PyJWKClient verifies the access token from the JWKS")
    forgeries = tampered(access, public_pem(jwks_url, access))
    for name, forged in forgeries.items():
        check(not pyjwt_verifies(pyjwk, forged, args.alg), f"PyJWKClient refuses it with {name}")
        check(not server.accepts(forged) and not server.active(forged), f"portcullis refuses it with {name}")

    client = configure_django(jwks_url, args.alg)
    add_view()
    check(django_accepts(client, access, user_id), "simplejwt (JWK_URL) accepts the access token in a DRF view")
    check(django_refuses(client, refresh), "simplejwt refuses the refresh token (wrong type)")
    for name, forged in forgeries.items():
        check(django_refuses(client, forged), f"simplejwt refuses it with {name}")

    _, before = http("GET", jwks_url)
    published = [k["kid"] for k in before["keys"]]
    check(published[:1] == [header["kid"]] and len(published) == 2, "the JWKS lists the current key and the next one")
    new_access, waited = rotate_and_wait(server, header["kid"])
    print(f"  ..  the server signed with the new key {waited:.1f} s after rotatekeys")
    _, after = http("GET", jwks_url)
    kids = [k["kid"] for k in after["keys"]]
    new_kid = jwt.get_unverified_header(new_access)["kid"]
    check(new_kid == published[1], "the new signing key is the one published as next before the rotation")
    check(kids[0] == new_kid and kids[2] == header["kid"] and len(kids) == 3, "the JWKS lists the new key, a new next one, and the old one")
    for label, token in [("old", access), ("new", new_access)]:
        check(pyjwt_verifies(pyjwk, token, args.alg), f"after the rotation PyJWKClient verifies the {label} token")
        check(django_accepts(client, token, user_id), f"after the rotation simplejwt accepts the {label} token")
        check(server.accepts(token) and server.active(token), f"after the rotation portcullis accepts the {label} token")
    forged = tampered(new_access, public_pem(jwks_url, new_access))["payload changed"]
    check(not pyjwt_verifies(pyjwk, forged, args.alg) and django_refuses(client, forged), "a tampered new token is refused")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
