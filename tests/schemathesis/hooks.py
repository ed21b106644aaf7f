"""Schemathesis hooks for portcullis: real credentials on every operation that declares security.

Loaded by `run.sh` through `SCHEMATHESIS_HOOKS`. It reads:

  PORTCULLIS_ST_BASE_URL     the server, e.g. http://127.0.0.1:40123
  PORTCULLIS_ST_BIN          the portcullis binary (to mint tokens with `drf_create_token`)
  PORTCULLIS_ST_USER         the superuser the Token credentials belong to ("alice")
  PORTCULLIS_ST_SESSION_USER / PORTCULLIS_ST_SESSION_PASSWORD
                             a second, plain user whose session cookie serves `/session/data/`
  DATABASE_URL               (inherited by the CLI, the same database as the server)

Why a programmatic provider and not `--header`/`[auth.openapi.*]`:

* Schemathesis fills every declared security scheme it has no configuration for with
  generated values (cookie `sessionid`, `Authorization` for token/bearer/basic), and those
  override a plain `--header`. An `@schemathesis.auth()` provider takes precedence over all
  of them, and the generated values of the alternatives it does not use are dropped.
* The `token` scheme is an apiKey whose value must be `Token <key>`; the built-in dynamic
  auth (`[auth.dynamic.openapi.token]`) would send the bare key.
* `/session/data/` only accepts the session cookie (+ CSRF header for PATCH), `/profile/`
  only a token: one static credential cannot cover both.

Credentials that the run itself revokes: the fuzzer calls `POST /logout/` (revokes the
token it was sent), `POST /logoutall/` (revokes every credential of the user), and
`DELETE /tokens/{id}/` (the stateful phase feeds it the ids `GET /tokens/` lists, ours
included); `POST /password/change/` would too, but the fuzzer never knows the password.
After such a call succeeds, or after any 401/403 to a request that carried our credential,
the credential is marked suspect; before the next request that carries it (`before_call`,
i.e. at send time, not when the case was generated) it is checked with one cheap GET and,
if dead, replaced by a new one. With one worker (run.sh's default) no request can be in
flight while another revokes its credential, so every request carries a live one unless
the fuzzer meant otherwise (negative cases and the `ignored_auth` probes drop or garble
it; those are left alone).

Tokens are minted with the CLI (`portcullis drf_create_token`), not with
`POST /api-token-auth/`: the fuzzer's wrong passwords trip the login throttles (5 failures
a minute per username: it learns the name "alice" from responses and tries it on
`/login/`, and its wrong `old_password`s on `/password/change/` are charged to alice;
20 a minute per client IP: all of its requests come from 127.0.0.1), and a throttled
password check answers 429 even for the right password, so re-login through the API would
fail for most of the run unless the throttles were relaxed, which the harness does not do.
The session belongs to a second user, "bob", that no fuzzed request authenticates as, so
nothing the fuzzer does revokes it; it is logged in once, when this file is loaded (before
any fuzzed request, so before the fuzzer can trip the per-IP login throttle), and
re-checked like the token.

No caching or re-login by Schemathesis itself (`refresh_interval=None`). Its reactive
re-auth only fires on `retry_on` statuses (401 by default, while a revoked token gets 403
here: the default chain starts with the session authenticator, which has no challenge),
replays the request once, and when the replay fails the same way it stops re-authenticating
for that operation for the rest of the run; `POST /logout/` answers 401 to a bad `refresh`
whatever the credential, so it would lose its credential for good early on.
"""

from __future__ import annotations

import atexit
import os
import re
import subprocess
import sys
import threading
import time

import requests
import schemathesis

BASE_URL = os.environ["PORTCULLIS_ST_BASE_URL"].rstrip("/")
BIN = os.environ["PORTCULLIS_ST_BIN"]
USER = os.environ.get("PORTCULLIS_ST_USER", "alice")
SESSION_USER = os.environ["PORTCULLIS_ST_SESSION_USER"]
SESSION_PASSWORD = os.environ["PORTCULLIS_ST_SESSION_PASSWORD"]

# Operations that, when they succeed, may have revoked the credential they were sent with.
REVOKING = re.compile(r"^(POST /logout|POST /logoutall|DELETE /tokens/.*|DELETE /sessions/.*|POST /password/change)$")

_http = requests.Session()


class _Credentials:
    """The current token and session, minted on demand, re-checked when suspect."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.token: str | None = None
        self.session: dict[str, str] | None = None
        self.suspect = {"token": False, "session": False}
        # Every credential handed out, to recognise ours (stale or not) on a request.
        self.tokens: set[str] = set()
        self.sessions: set[str] = set()
        self.minted = {"token": 0, "session": 0}

    # Tokens: `portcullis drf_create_token USER` (no password check, so no throttle).
    def _mint_token(self) -> str:
        out = subprocess.run([BIN, "drf_create_token", USER], capture_output=True, text=True, timeout=60, check=True)
        match = re.search(r"Generated token ([0-9a-f]{40}) for user", out.stdout)
        if not match:
            raise RuntimeError(f"unexpected drf_create_token output: {out.stdout!r} {out.stderr!r}")
        self.minted["token"] += 1
        self.tokens.add(match.group(1))
        return match.group(1)

    def _token_alive(self, token: str) -> bool:
        r = _http.get(f"{BASE_URL}/whoami/", headers={"Authorization": f"Token {token}"}, timeout=30)
        return r.status_code == 200 and r.json().get("username") == USER

    # Sessions: `POST /login/` as SESSION_USER (waits out a throttle, within bounds).
    def _login(self) -> dict[str, str]:
        deadline = time.monotonic() + 90
        while True:
            r = _http.post(
                f"{BASE_URL}/login/", json={"username": SESSION_USER, "password": SESSION_PASSWORD}, timeout=30
            )
            if r.status_code == 200:
                self.minted["session"] += 1
                self.sessions.add(r.cookies["sessionid"])
                return {"sessionid": r.cookies["sessionid"], "csrftoken": r.cookies["csrftoken"]}
            if r.status_code == 429 and time.monotonic() < deadline:
                time.sleep(min(float(r.headers.get("Retry-After", "5")), 30))
                continue
            raise RuntimeError(f"login as {SESSION_USER} failed: {r.status_code} {r.text}")

    def _session_alive(self, session: dict[str, str]) -> bool:
        r = _http.get(f"{BASE_URL}/session/", cookies={"sessionid": session["sessionid"]}, timeout=30)
        return r.status_code == 200 and r.json().get("username") == SESSION_USER

    def current(self, kind: str):
        """A live credential of this kind."""
        with self.lock:
            if kind == "token":
                if self.token is None or (self.suspect["token"] and not self._token_alive(self.token)):
                    self.token = self._mint_token()
                self.suspect["token"] = False
                return self.token
            if self.session is None or (self.suspect["session"] and not self._session_alive(self.session)):
                self.session = self._login()
            self.suspect["session"] = False
            return self.session

    def mark_suspect(self, kind: str | None = None) -> None:
        with self.lock:
            for k in [kind] if kind else list(self.suspect):
                self.suspect[k] = True


CREDENTIALS = _Credentials()
atexit.register(
    lambda: print(
        f"hooks.py: credentials minted during the run: {CREDENTIALS.minted['token']} token(s), "
        f"{CREDENTIALS.minted['session']} session(s)",
        file=sys.stderr,
    )
)
# Both credentials now, before the first fuzzed request: the session's login must not meet
# a login throttle the fuzzer has tripped for 127.0.0.1 in the meantime.
CREDENTIALS.current("token")
CREDENTIALS.current("session")


def _schemes(operation) -> list[str]:
    """The security scheme names the operation accepts, in the spec's order; [] when anonymous only."""
    raw = operation.definition.raw
    requirements = raw.get("security", operation.schema.raw_schema.get("security", [])) or []
    return [name for requirement in requirements for name in requirement]


def _kind(operation) -> str | None:
    schemes = _schemes(operation)
    if "token" in schemes:
        return "token"
    if "session" in schemes:
        return "session"
    return None


def _apply(case, kind: str, value) -> None:
    if kind == "token":
        case.headers["Authorization"] = f"Token {value}"
    else:
        case.cookies["sessionid"] = value["sessionid"]
        case.cookies["csrftoken"] = value["csrftoken"]
        case.headers["X-CSRFToken"] = value["csrftoken"]


@schemathesis.auth(refresh_interval=None)
class PortcullisAuth:
    """`Authorization: Token <key>` wherever the token scheme is accepted; elsewhere the session
    cookie (with the CSRF cookie and `X-CSRFToken` header Django requires on unsafe methods).
    Operations that declare no scheme (simplejwt's views, the cookie examples, health) get none."""

    def get(self, case, context):
        kind = _kind(context.operation)
        if kind is None:
            return None
        return (kind, CREDENTIALS.current(kind))

    def set(self, case, data, context):
        _apply(case, *data)


def _carried(case) -> str | None:
    """Which of our credentials the request carries, if any (possibly a revoked one)."""
    header = case.headers.get("Authorization") if case.headers else None
    if isinstance(header, str) and header.startswith("Token ") and header[6:] in CREDENTIALS.tokens:
        return "token"
    cookie = case.cookies.get("sessionid") if case.cookies else None
    if isinstance(cookie, str) and cookie in CREDENTIALS.sessions:
        return "session"
    return None


@schemathesis.hook
def before_call(context, case, kwargs):
    # Credentials are put on a case when it is generated; one revoked since then is replaced
    # now. Requests that carry none of ours (negative cases, auth probes) are left alone.
    kind = _carried(case)
    if kind is None:
        return
    value = CREDENTIALS.current(kind)
    if (kind == "token" and case.headers["Authorization"] != f"Token {value}") or (
        kind == "session" and case.cookies["sessionid"] != value["sessionid"]
    ):
        _apply(case, kind, value)


@schemathesis.hook
def after_call(context, case, response):
    kind = _carried(case)
    if kind is None:
        return
    label = f"{case.method.upper()} {case.operation.path}"
    if 200 <= response.status_code < 300 and REVOKING.match(label):
        CREDENTIALS.mark_suspect()
    elif response.status_code in (401, 403):
        CREDENTIALS.mark_suspect(kind)
