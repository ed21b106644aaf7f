"""The second factor end to end, against the real binary over HTTP on loopback, with codes
from an implementation that is not ours: Debian's `oathtool` (`--totp -b SECRET`, and
`-N @UNIXTIME` for neighbouring steps).

Started by run.sh: python3 e2e.py --bin PORTCULLIS. Standard library only. Prints one
PASS/FAIL line per check and a closing "N passed, N failed" line; exits 1 on any failure.
"""

import argparse
import base64
import http.cookiejar
import json
import os
import re
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

PASSWORD = "c0rrect-h0rse-battery"
passed = failed = 0


def check(ok, what, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"PASS: {what}")
    else:
        failed += 1
        print(f"FAIL: {what}" + (f" -- {detail}" if detail else ""))
    return ok


def oathtool(secret, at=None):
    """The code of `secret` (base32) at unix time `at` (default now)."""
    args = ["oathtool", "--totp", "-b"]
    if at is not None:
        args += ["-N", f"@{int(at)}"]
    return subprocess.run(args + [secret], capture_output=True, text=True, check=True, timeout=10).stdout.strip()


def step(at=None):
    return int((time.time() if at is None else at) // 30)


class Server:
    """`portcullis serve` on a free loopback port, in `workdir` (where its key file goes)."""

    def __init__(self, binary, workdir, env):
        self.log_path = os.path.join(workdir, f"server-{int(time.time() * 1000)}.log")
        self.log = open(self.log_path, "w")
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("PORTCULLIS_") and k != "RUST_LOG"}
        full_env.update(env)
        self.proc = subprocess.Popen(
            [binary, "serve"], cwd=workdir, env=full_env, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        self.base = None
        while time.monotonic() < deadline and self.base is None:
            time.sleep(0.1)
            match = re.search(r"listening on (http://[0-9.:]+)", open(self.log_path).read())
            if match:
                self.base = match.group(1)
            if self.proc.poll() is not None:
                break
        if self.base is None:
            self.stop()
            sys.exit(f"the server did not start:\n{open(self.log_path).read()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()
        return open(self.log_path).read()


class Client:
    """JSON over HTTP, with a cookie jar (a browser) when asked."""

    def __init__(self, base, cookies=False):
        self.base = base
        handlers = [urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())] if cookies else []
        self.opener = urllib.request.build_opener(*handlers)

    def call(self, method, path, body=None, auth=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if auth:
            req.add_header("Authorization", auth)
        try:
            with self.opener.open(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"null"), resp.headers
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null"), e.headers

    def post(self, path, body, auth=None):
        return self.call("POST", path, body, auth)


def register(client, username):
    status, body, _ = client.post("/register/", {"username": username, "password": PASSWORD})
    assert status == 201, body


def token(client, username):
    status, body, _ = client.post("/api-token-auth/", {"username": username, "password": PASSWORD})
    assert status == 200 and "token" in body, body
    return f"Token {body['token']}"


def enrol(client, username, check_url=False):
    """Setup and activation with oathtool's current code: (secret, recovery codes, token, step used)."""
    register(client, username)
    auth = token(client, username)
    status, setup, _ = client.post("/mfa/totp/setup/", {}, auth)
    assert status == 200, setup
    secret = setup["secret"]
    if check_url:
        url = urllib.parse.urlsplit(setup["otpauth_url"])
        query = dict(urllib.parse.parse_qsl(url.query))
        check((url.scheme, url.netloc, urllib.parse.unquote(url.path)) == ("otpauth", "totp", f"/portcullis:{username}"),
              "otpauth URL: scheme, type and issuer:account label", setup["otpauth_url"])
        check(query.get("secret") == secret and query.get("issuer") == "portcullis", "otpauth URL: secret and issuer", query)
        check(query.get("algorithm", "SHA1") == "SHA1" and query.get("digits", "6") == "6"
              and query.get("period", "30") == "30", "otpauth URL: SHA1, 6 digits, 30 s (explicit or by default)", query)
        check(len(base64.b32decode(secret + "=" * (-len(secret) % 8))) == 20, "a 160-bit secret")
        check(setup["qr_svg"].startswith("<svg") and setup["qr_svg"].endswith("</svg>"), "the QR code is an SVG")
    now = time.time()
    status, body, _ = client.post("/mfa/totp/activate/", {"code": oathtool(secret, now)}, auth)
    assert status == 200 and len(body["recovery_codes"]) == 10, body
    return secret, body["recovery_codes"], auth, step(now)


def wrong_code(secret):
    near = {oathtool(secret, time.time() + d * 30) for d in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222") if c not in near)


def login(client, path, username):
    status, body, headers = client.post(path, {"username": username, "password": PASSWORD})
    ok = status == 200 and body.get("mfa_required") is True and not headers.get_all("Set-Cookie")
    check(ok, f"{path}: a right password answers mfa_required and issues nothing", f"{status} {body}")
    return body.get("ephemeral_token", "")


def scenarios(base, basic):
    c = Client(base)
    # Alice: enrolment, the URL field by field, and a token login with the next step's code.
    secret, recovery, auth, used = enrol(c, "alice", check_url=True)
    eph = login(c, "/api-token-auth/", "alice")
    nxt = oathtool(secret, (used + 1) * 30)
    status, body, _ = c.post("/mfa/verify/", {"ephemeral_token": eph, "code": nxt})
    check(status == 200 and len(body.get("token", "")) == 40, "verify with the next step's code (-N) gives the token", body)
    status, who, _ = c.call("GET", "/whoami/", auth=f"Token {body.get('token')}")
    check(who.get("aal") == 2 and who.get("auth") == "token", "/whoami/ shows aal 2 for it", who)
    # Replays: the same code, and an older step, on a new login; then a recovery code.
    eph = login(c, "/api-token-auth/", "alice")
    status, body, _ = c.post("/mfa/verify/", {"ephemeral_token": eph, "code": nxt})
    check(status == 400 and "already been used" in body["code"][0], "the same code again is refused", body)
    status, body, _ = c.post("/mfa/verify/", {"ephemeral_token": eph, "code": oathtool(secret, (used - 1) * 30)})
    check(status == 400 and "already been used" in body["code"][0], "an earlier step's code (-N) is refused", body)
    status, body, _ = c.post("/mfa/verify/", {"ephemeral_token": eph, "code": oathtool(secret, time.time() + 90)})
    check(status == 400 and body["code"] == ["Invalid code."], "a code three steps ahead is wrong", body)
    status, body, _ = c.post("/mfa/verify/", {"ephemeral_token": eph, "code": recovery[0]})
    check(status == 200 and "token" in body, "a recovery code completes the login", body)
    status, body, _ = c.post("/mfa/verify/", {"ephemeral_token": eph, "code": recovery[1]})
    check(status == 400 and "ephemeral_token" in body, "the ephemeral token works once", body)

    # Bob: a browser session through /login/ and /mfa/verify/.
    bsecret, _, _, bused = enrol(c, "bob")
    browser = Client(base, cookies=True)
    eph = login(browser, "/login/", "bob")
    status, body, headers = browser.post("/mfa/verify/", {"ephemeral_token": eph, "code": oathtool(bsecret, (bused + 1) * 30)})
    cookies = headers.get_all("Set-Cookie") or []
    check(status == 200 and any(c.startswith("sessionid=") for c in cookies), "verify sets the session cookie", cookies)
    status, who, _ = browser.call("GET", "/whoami/")
    check(who.get("auth") == "session" and who.get("aal") == 2, "the session is at aal 2", who)

    # Carol: a JWT pair, aal in the claims.
    csecret, _, _, cused = enrol(c, "carol")
    eph = login(c, "/api/token/", "carol")
    status, pair, _ = c.post("/mfa/verify/", {"ephemeral_token": eph, "code": oathtool(csecret, (cused + 1) * 30)})
    claims = json.loads(base64.urlsafe_b64decode(pair["access"].split(".")[1] + "=="))
    check(status == 200 and claims.get("aal") == 2 and "aal_at" in claims, "the JWT pair carries aal 2", claims)

    # Dave: wrong codes count in the username's login throttle (5 a minute by default).
    dsecret, _, _, _ = enrol(c, "dave")
    eph = login(c, "/api/token/", "dave")
    wrong = [c.post("/mfa/verify/", {"ephemeral_token": eph, "code": wrong_code(dsecret)})[0] for _ in range(5)]
    status, body, headers = c.post("/mfa/verify/", {"ephemeral_token": eph, "code": oathtool(dsecret)})
    check(wrong == [400] * 5 and status == 429 and headers.get("Retry-After"), "the 6th code in a minute is throttled",
          f"{wrong} {status}")

    if basic:
        basic_auth = "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
        status, body, _ = c.call("GET", "/whoami/", auth=basic_auth)
        # 403, not 401: the chain starts with the session authenticator (DRF's rule).
        check(status == 403 and body == {"detail": "Second factor required.", "code": "mfa_required"},
              "Basic is refused for a TOTP user", f"{status} {body}")
    return {"alice": (secret, used + 1)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    binary = os.path.realpath(parser.parse_args().bin)
    with tempfile.TemporaryDirectory(prefix="pc-mfa-") as work:
        env = {
            "DATABASE_URL": f"sqlite://{work}/db.sqlite3?mode=rwc",
            "PORTCULLIS_SERVER__BIND": "127.0.0.1:0",
            "PORTCULLIS_METRICS__BIND": "",
            "PORTCULLIS_AUTH__CHAIN": '["session", "token", "jwt", "basic"]',
        }
        server = Server(binary, work, env)
        key_file = os.path.join(work, "portcullis-mfa.key")
        mode = stat.S_IMODE(os.stat(key_file).st_mode) if os.path.exists(key_file) else None
        check(mode == 0o600, "serve created the key file, mode 0600, in its working directory", oct(mode or 0))
        key = open(key_file).read().strip() if mode else ""
        try:
            users = scenarios(server.base, basic=True)
        finally:
            log = server.stop()
        # A restart reads the same key: Alice's secret still opens. Her last step was one ahead
        # of the clock; the one after it is accepted once the clock reaches hers.
        secret, last = users["alice"]
        wait = last * 30 - time.time()
        if wait > 0:
            print(f"waiting {wait:.0f} s for the next unused time step")
            time.sleep(wait + 0.5)
        server = Server(binary, work, env)
        try:
            c = Client(server.base)
            eph = login(c, "/login/", "alice")
            status, body, _ = c.post("/mfa/verify/", {"ephemeral_token": eph, "code": oathtool(secret, (last + 1) * 30)})
            check(status == 200, "after a restart the key file still opens the secret", body)
        finally:
            log += server.stop()
        check(key and key not in log, "the key never appears in the log")
        check(secret not in log, "no TOTP secret appears in the log")
        check(not re.search(r"status=5\d\d", log) and "panicked" not in log, "no 5xx, no panic in the log")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
