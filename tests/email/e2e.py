"""Account recovery by email against a real SMTP server (aiosmtpd) on loopback.

Run by tests/email/run.sh. Starts aiosmtpd in this process and `portcullis serve` with the
SMTP backend and `account.email_verification = "mandatory"`, then, as a user would:

  1. sendtestemail: the configuration check reaches the server, with proper headers;
  2. registration sends a verification mail; the password doors refuse the user until its
     link is followed; the link works once;
  3. password reset: the mail is parsed with Python's `email` package, the link followed,
     the old password and every credential (session, token, JWT) dead, the link single-use;
  4. an unknown address: the same answer, no mail; known vs unknown timed (medians within 1.5x);
  5. the mail server stopped mid-run, then hanging without a greeting: answers stay the same
     and fast, failures are logged and counted in metrics, mail flows again once it is back;
  6. the audit trail has the requests, the completion and the verification.

Every wait is bounded; everything listens on 127.0.0.1. Exits non-zero on the first failure.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import email.utils
import http.cookiejar
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

from aiosmtpd.controller import Controller

PASSWORD = "c0rrect-h0rse-battery"
NEW_PASSWORD = "an0ther-l0ng-passphrase"
RESET_URL = "https://app.example.com/reset/{uid}/{token}/"
VERIFY_URL = "https://app.example.com/verify/{key}/"
METRICS_TOKEN = "email-e2e-metrics"


def check(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)
    print(f"  ok  {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    """aiosmtpd's handler: every message received, parsed as a mail client would."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.cond = threading.Condition()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.cond:
            self.messages.append(msg)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self.cond.notify_all()
        return "250 Message accepted for delivery"

    def wait(self, count: int, timeout: float = 10.0) -> list[email.message.EmailMessage]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} mails within {timeout} s, got {len(self.messages)}")
                self.cond.wait(left)
            return list(self.messages)

    def count(self) -> int:
        with self.cond:
            return len(self.messages)


class Client:
    """HTTP with an optional cookie jar (a browser), JSON in and out."""

    def __init__(self, base: str, cookies: bool = False) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar() if cookies else None
        handlers = [urllib.request.HTTPCookieProcessor(self.jar)] if cookies else []
        self.opener = urllib.request.build_opener(*handlers)

    def call(self, method: str, path: str, body=None, headers=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=dict(headers or {}))
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with self.opener.open(req, timeout=10) as resp:
                status, raw, hdrs = resp.status, resp.read(), resp.headers
        except urllib.error.HTTPError as e:
            status, raw, hdrs = e.code, e.read(), e.headers
        text = raw.decode()
        try:
            return status, json.loads(text) if text else None, hdrs
        except ValueError:
            return status, text, hdrs

    def post(self, path, body, headers=None):
        return self.call("POST", path, body, headers)

    def get(self, path, headers=None):
        return self.call("GET", path, None, headers)


class Server:
    def __init__(self, binary: str, work: str, env: dict[str, str]) -> None:
        self.binary, self.work, self.env = binary, work, env
        self.log_path = os.path.join(work, "server.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([binary, "serve"], cwd=work, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.base = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not self.base:
            if self.proc.poll() is not None:
                raise RuntimeError("portcullis exited:\n" + open(self.log_path).read())
            found = re.search(r"listening on (http://[0-9.:]+)", open(self.log_path).read())
            self.base = found.group(1) if found else ""
            time.sleep(0.1)
        if not self.base:
            raise RuntimeError("portcullis did not start:\n" + open(self.log_path).read())

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([self.binary, *args], cwd=self.work, env=self.env, capture_output=True, text=True, timeout=60)

    def text(self) -> str:
        self.log.flush()
        return open(self.log_path).read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def headers_are_proper(msg, to: str) -> None:
    check(msg["From"] == "Portcullis <noreply@auth.example.com>", f"From: {msg['From']}")
    check(msg["To"] == to, f"To: {msg['To']}")
    check(email.utils.parsedate_to_datetime(msg["Date"]) is not None, f"Date: {msg['Date']}")
    check(re.fullmatch(r"<[0-9a-f]{32}@auth\.example\.com>", msg["Message-ID"] or "") is not None,
          f"Message-ID: {msg['Message-ID']}")
    check(msg.get_content_type() == "text/plain" and msg.get_content_charset() == "utf-8", "text/plain; charset=utf-8")


def link(msg, pattern: str) -> re.Match:
    found = re.search(pattern, msg.get_content())
    if not found:
        raise AssertionError(f"no link matching {pattern} in:\n{msg.get_content()}")
    return found


def metric(client: Client, kind: str, outcome: str) -> int:
    _, text, _ = client.get("/metrics", {"Authorization": f"Bearer {METRICS_TOKEN}"})
    found = re.search(rf'portcullis_emails_total\{{kind="{kind}",outcome="{outcome}"\}} (\d+)', text or "")
    return int(found.group(1)) if found else 0


def wait_for(condition, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            check(True, what)
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


def step_test_email(server: Server, inbox: Inbox) -> None:
    print("1. sendtestemail")
    done = server.cli("sendtestemail", "ops@example.com")
    check(done.returncode == 0, f"sendtestemail exits 0 ({done.stderr.strip()})")
    msg = inbox.wait(1)[0]
    headers_are_proper(msg, "ops@example.com")
    check(msg["Subject"].startswith("Test email from "), f"Subject: {msg['Subject']}")


def step_verification(base: str, inbox: Inbox) -> None:
    print("2. mandatory email verification")
    api = Client(base)
    status, body, _ = api.post("/register/", {"username": "zoë", "password": PASSWORD, "email": "zoe@example.com"})
    check(status == 201, f"registered ({status} {body})")
    msg = inbox.wait(2)[1]
    headers_are_proper(msg, "zoe@example.com")
    check("zoë" in msg.get_content(), "the body is UTF-8 text, read back as sent")
    key = link(msg, r"https://app\.example\.com/verify/([^/\s]+)/").group(1)
    refused = {"non_field_errors": ["E-mail is not verified."]}
    for path in ["/login/", "/api-token-auth/", "/api/token/"]:
        status, body, _ = api.post(path, {"username": "zoë", "password": PASSWORD})
        check((status, body) == (400, refused), f"{path} refuses the unverified user: {status} {body}")
    status, body, _ = api.post("/login/", {"username": "zoë", "password": "wrong-password"})
    check(body == {"error": "Invalid credentials"}, "a wrong password is refused as for anyone")
    check(api.post("/registration/verify-email/", {"key": key})[:2] == (200, {"detail": "ok"}), "the link verifies")
    check(api.post("/registration/verify-email/", {"key": key})[0] == 404, "once")


def step_reset(base: str, inbox: Inbox) -> None:
    print("3. password reset through the mailed link")
    browser, api = Client(base, cookies=True), Client(base)
    check(browser.post("/login/", {"username": "zoë", "password": PASSWORD})[0] == 200, "logged in (session)")
    token = api.post("/api-token-auth/", {"username": "zoë", "password": PASSWORD})[1]["token"]
    pair = api.post("/api/token/", {"username": "zoë", "password": PASSWORD})[1]
    before = inbox.count()
    status, body, _ = api.post("/password/reset/", {"email": "ZOE@example.com"})
    check((status, body) == (200, {"detail": "Password reset e-mail has been sent."}), "reset asked")
    msg = inbox.wait(before + 1)[before]
    headers_are_proper(msg, "zoe@example.com")
    check(msg["Subject"] == "Password reset on app.example.com", f"Subject: {msg['Subject']}")
    found = link(msg, r"https://app\.example\.com/reset/([^/\s]+)/([^/\s]+)/")
    uid, reset_token = found.group(1), found.group(2)
    confirm = {"uid": uid, "token": reset_token, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    status, body, _ = api.post("/password/reset/confirm/", confirm)
    check((status, body) == (200, {"detail": "Password has been reset with the new password."}), "reset done")
    check(browser.get("/protected/")[0] in (401, 403), "the session is dead")
    check(api.get("/protected/", {"Authorization": f"Token {token}"})[0] in (401, 403), "the token is dead")
    check(api.get("/protected/", {"Authorization": f"Bearer {pair['access']}"})[0] in (401, 403), "the access JWT is dead")
    check(api.post("/api/token/refresh/", {"refresh": pair["refresh"]})[0] == 401, "the refresh JWT is dead")
    check(api.post("/login/", {"username": "zoë", "password": PASSWORD})[0] == 400, "the old password is dead")
    confirm["new_password1"] = confirm["new_password2"] = "y3t-an0ther-passphrase"
    status, body, _ = api.post("/password/reset/confirm/", confirm)
    check((status, body) == (400, {"token": ["Invalid value"]}), "the link works once")
    check(api.post("/login/", {"username": "zoë", "password": NEW_PASSWORD})[0] == 200, "the new password works")


def timed(api: Client, address: str) -> tuple[float, tuple]:
    started = time.perf_counter()
    status, body, _ = api.post("/password/reset/", {"email": address})
    return time.perf_counter() - started, (status, body)


def step_unknown_and_timing(base: str, inbox: Inbox, rounds: int) -> float:
    print("4. an unknown address: the same answer, no mail, the same time")
    api = Client(base)
    before = inbox.count()
    answer = timed(api, "nobody@example.com")[1]
    check(answer == (200, {"detail": "Password reset e-mail has been sent."}), "the same answer")
    time.sleep(1.0)
    check(inbox.count() == before, "no mail for an unknown address")
    known, unknown, statuses = [], [], set()
    for i in range(rounds):
        order = [("zoe@example.com", known), (f"nobody{i}@example.com", unknown)]
        for address, into in order if i % 2 else reversed(order):
            elapsed, answer = timed(api, address)
            statuses.add(answer[0])
            into.append(elapsed)
    check(statuses == {200}, f"every answer 200 ({statuses})")
    k, u = statistics.median(known), statistics.median(unknown)
    ratio = max(k, u) / min(k, u)
    print(f"  known median {k * 1000:.2f} ms, unknown median {u * 1000:.2f} ms, ratio {ratio:.2f} ({rounds} each)")
    check(ratio <= 1.5, f"known and unknown within 1.5x (ratio {ratio:.2f})")
    inbox.wait(before + rounds, timeout=30)
    check(True, f"{rounds} mails sent for the known address, none for the {rounds + 1} unknown")
    return ratio


def hung_smtp(port: int, stop: threading.Event) -> threading.Thread:
    """A server that accepts and never greets: a mail server that hangs."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(16)
    listener.settimeout(0.2)

    def serve() -> None:
        held = []
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                pass
        for conn in held:
            conn.close()
        listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def step_outage(server: Server, inbox: Inbox, controller: Controller, port: int) -> Controller:
    print("5. the mail server stopped mid-run, then hanging, then back")
    api = Client(server.base)
    failed = metric(api, "password_reset", "failed")
    controller.stop()
    for address in ["zoe@example.com", "nobody@example.com"]:
        elapsed, answer = timed(api, address)
        check(answer == (200, {"detail": "Password reset e-mail has been sent."}) and elapsed < 1.0,
              f"server down, {address}: the same answer in {elapsed * 1000:.0f} ms")
    wait_for(lambda: metric(api, "password_reset", "failed") == failed + 1, "the failure is counted")
    check("could not send a mail" in server.text(), "and logged")

    stop = threading.Event()
    thread = hung_smtp(port, stop)
    try:
        elapsed, answer = timed(api, "zoe@example.com")
        check(answer[0] == 200 and elapsed < 1.0, f"server hanging: answered in {elapsed * 1000:.0f} ms")
        wait_for(lambda: metric(api, "password_reset", "failed") == failed + 2,
                 "the hung send is given up (email.timeout) and counted", timeout=20)
    finally:
        stop.set()
        thread.join(timeout=5)

    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    before = inbox.count()
    check(api.post("/password/reset/", {"email": "zoe@example.com"})[0] == 200, "server back: asked again")
    inbox.wait(before + 1)
    check(True, "mail flows again")
    return controller


def step_audit(server: Server) -> None:
    print("6. the audit trail")
    for event in ["password_reset_requested", "password_reset_completed", "email_verified", "email_verification_sent"]:
        out = server.cli("audit", "--event", event, "--limit", "5")
        check(out.returncode == 0 and event in out.stdout, f"{event} recorded")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="pc-email-")
    inbox, smtp_port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTCULLIS_") and k not in ("DATABASE_URL", "RUST_LOG")}
    env.update({
        "DATABASE_URL": f"sqlite://{work}/db.sqlite3?mode=rwc",
        "PORTCULLIS_SERVER__BIND": "127.0.0.1:0",
        "PORTCULLIS_METRICS__BIND": "",
        "PORTCULLIS_METRICS__TOKEN": METRICS_TOKEN,
        "PORTCULLIS_EMAIL__BACKEND": "smtp",
        "PORTCULLIS_EMAIL__SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "PORTCULLIS_EMAIL__FROM": "Portcullis <noreply@auth.example.com>",
        "PORTCULLIS_EMAIL__TIMEOUT": "2",
        "PORTCULLIS_EMAIL__PASSWORD_RESET_URL": RESET_URL,
        "PORTCULLIS_EMAIL__VERIFY_EMAIL_URL": VERIFY_URL,
        # The timing step sends a hundred requests from one client.
        "PORTCULLIS_EMAIL__THROTTLE_ADDRESS": "1000/hour",
        "PORTCULLIS_EMAIL__THROTTLE_IP": "1000/hour",
        "PORTCULLIS_ACCOUNT__EMAIL_VERIFICATION": "mandatory",
    })
    server = Server(args.bin, work, env)
    print(f"portcullis at {server.base}, aiosmtpd at 127.0.0.1:{smtp_port}")
    try:
        step_test_email(server, inbox)
        step_verification(server.base, inbox)
        step_reset(server.base, inbox)
        ratio = step_unknown_and_timing(server.base, inbox, args.rounds)
        controller = step_outage(server, inbox, controller, smtp_port)
        step_audit(server)
    except AssertionError as e:
        print(f"FAIL: {e}")
        print("---- server log (last 40 lines) ----")
        print("\n".join(server.text().splitlines()[-40:]))
        return 1
    finally:
        server.stop()
        try:
            controller.stop()
        except Exception:  # already stopped by a failed step
            pass
    print(f"PASS: recovery by email over real SMTP (known/unknown timing ratio {ratio:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
