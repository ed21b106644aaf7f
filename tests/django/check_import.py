#!/usr/bin/env python3
"""End-to-end check of `portcullis import-django` against a fixture built by make_fixture.py.

Stdlib only. Every import goes into a fresh portcullis SQLite database in its own temp dir;
then `portcullis serve` runs on a free port and every credential in the manifest is tried
over HTTP. Prints one PASS/FAIL line per check; exits 1 if any check failed.

  check_import.py good    --bin BIN --manifest M --from SRC [--sessions] [--secret-via env|file]
  check_import.py bad     --bin BIN --manifest M --from SRC                  (the --bad fixture)
  check_import.py refuse  --bin BIN --manifest M --plain-dump FILE --dump FILE
  check_import.py bulk    --bin BIN --manifest M --from SRC                  (the 100k timing)
"""

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

NOT_AUTHENTICATED = {"detail": "Authentication credentials were not provided."}
INVALID_CREDENTIALS = {"error": "Invalid credentials"}
LOGGED_IN = {"message": "Logged in successfully"}
NO_CONTENT_TYPES = (
    "the permissions in this file name their content type by id, and the file has no contenttypes "
    "records to resolve it: dump them too (`manage.py dumpdata auth authtoken contenttypes --format json`), "
    "or use --natural-foreign"
)
# Django's validators apply to `portcullis changepassword`.
STRONG_PASSWORD = "Corr3ct-Horse-Battery-Staple!"


class Abort(Exception):
    """A check whose failure makes the rest of the scenario meaningless."""


class Report:
    def __init__(self, label):
        self.label = label
        self.passed = 0
        self.failed = []

    def check(self, ok, what, detail=None, fatal=False):
        if ok:
            self.passed += 1
            print(f"PASS [{self.label}] {what}", flush=True)
        else:
            self.failed.append(what)
            print(f"FAIL [{self.label}] {what}", flush=True)
            if detail is not None:
                for line in str(detail).rstrip().splitlines() or [""]:
                    print(f"       | {line}", flush=True)
            if fatal:
                raise Abort(what)
        return ok

    def equal(self, got, want, what, fatal=False):
        return self.check(got == want, what, f"want: {want!r}\ngot:  {got!r}", fatal=fatal)

    def info(self, text):
        print(f"INFO [{self.label}] {text}", flush=True)


def thousands(n):
    return f"{n:,}"


def summary_line(users, groups, permissions, tokens, sessions=None, skipped=0, dry_run=False, present=None):
    """What Summary::line() prints (src/django_import/mod.rs)."""
    line = (f"{'would import' if dry_run else 'imported'} {thousands(users)} users, {thousands(groups)} groups, "
            f"{thousands(permissions)} permissions, {thousands(tokens)} tokens")
    if sessions is not None:
        line += f", {thousands(sessions)} sessions"
    line += f"; {thousands(skipped)} skipped"
    if present:
        counts, updated = present
        shown = [f"{thousands(n)} {what}" for what, n in counts if n > 0]
        if shown:
            line += f" ({', '.join(shown)} already here, {thousands(updated)} users updated)"
    return line


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------

class Portcullis:
    """The binary, with a fresh SQLite database in a temp dir of its own."""

    TABLES = ["auth_user", "auth_group", "auth_permission", "auth_user_groups", "auth_user_user_permissions",
              "auth_group_permissions", "auth_token", "auth_session"]

    def __init__(self, binary, keep=False):
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="pc-django-")
        self.keep = keep
        self.db_path = os.path.join(self.dir, "p.sqlite3")
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("PORTCULLIS_") and k not in ("DATABASE_URL", "DJANGO_SECRET_KEY", "RUST_LOG")}
        self.env.update({
            "DATABASE_URL": f"sqlite://{self.db_path}?mode=rwc",
            "PORTCULLIS_METRICS__BIND": "",
            "PORTCULLIS_LOG__LEVEL": "warn",
        })
        self.server = None
        self.base = None
        self.log_path = os.path.join(self.dir, "serve.log")

    def run(self, args, stdin="", env=None, timeout=600):
        full_env = dict(self.env, **(env or {}))
        t0 = time.monotonic()
        out = subprocess.run([self.binary, *args], input=stdin, capture_output=True, text=True, env=full_env,
                             timeout=timeout, cwd=self.dir)
        out.seconds = time.monotonic() - t0
        return out

    # -- the database, read directly --------------------------------------------------------
    def query(self, sql, params=()):
        if not os.path.exists(self.db_path):
            return []
        con = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()

    def count(self, table):
        rows = self.query(f"SELECT COUNT(*) FROM {table}")
        return rows[0][0] if rows else 0

    def counts(self):
        return {t: self.count(t) for t in self.TABLES}

    def password(self, username):
        rows = self.query("SELECT password FROM auth_user WHERE username = ?", (username,))
        return rows[0][0] if rows else None

    # -- the server -------------------------------------------------------------------------
    def start(self, report):
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        log = open(self.log_path, "w")
        self.server = subprocess.Popen([self.binary, "serve"], env=dict(self.env, PORTCULLIS_SERVER__BIND=f"127.0.0.1:{port}"),
                                       stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
        log.close()
        t0 = time.monotonic()
        status = None
        while time.monotonic() - t0 < 60:
            if self.server.poll() is not None:
                break
            try:
                status, _, _ = self.http("GET", "/healthz", timeout=2)
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        report.check(status == 200, f"serve: GET /healthz 200 on {self.base} ({time.monotonic() - t0:.1f} s)",
                     self.tail_log(), fatal=True)

    def stop(self):
        if self.server and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        self.server = None

    def tail_log(self, n=30):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return "server log:\n" + "".join(f.readlines()[-n:])
        except OSError:
            return "(no server log)"

    def http(self, method, path, body=None, headers=None, timeout=60):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=dict(headers or {}))
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as res:
                status, hdrs, raw = res.status, res.headers, res.read()
        except urllib.error.HTTPError as e:
            status, hdrs, raw = e.code, e.headers, e.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return status, hdrs, parsed

    def close(self):
        self.stop()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def session_cookie(hdrs, name="sessionid"):
    for value in hdrs.get_all("Set-Cookie") or []:
        first = value.split(";", 1)[0]
        if first.startswith(name + "=") and first[len(name) + 1:]:
            return first[len(name) + 1:]
    return None


# ---------------------------------------------------------------------------------------------
# Checks shared by the scenarios.

def import_args(source, sessions, secret, secret_via, workdir, extra=()):
    args = ["import-django", "--from", source, *extra]
    env = {}
    if sessions:
        args.append("--sessions")
        if secret_via == "file":
            path = os.path.join(workdir, "django-secret-key")
            with open(path, "w", encoding="utf-8") as f:
                f.write(secret + "\n")
            args += ["--django-secret-key-file", path]
        else:
            env["DJANGO_SECRET_KEY"] = secret
    return args, env


def check_database(r, pc, manifest, expect_counts, keep_ids=True, extra_users=()):
    """Row counts, per-user fields and flags, memberships and grants, versus the manifest."""
    got = pc.counts()
    for table, want in expect_counts.items():
        r.equal(got[table], want, f"db: {table} has {want} rows")

    rows = pc.query("SELECT id, username, password, email, first_name, last_name, is_active, is_staff, "
                    "is_superuser FROM auth_user")
    here = {row[1]: row for row in rows}
    for u in manifest["users"]:
        row = here.get(u["username"])
        if not r.check(row is not None, f"db: user {u['username']!r} imported"):
            continue
        _id, _name, password, email, first, last, active, staff, superuser = row
        got_u = {"email": email, "first_name": first, "last_name": last, "is_active": bool(active),
                 "is_staff": bool(staff), "is_superuser": bool(superuser), "password": password}
        want_u = {"email": u["email"], "first_name": u["first_name"], "last_name": u["last_name"],
                  "is_active": u["is_active"], "is_staff": u["is_staff"], "is_superuser": u["is_superuser"],
                  "password": u["password_column"]}
        if keep_ids:
            got_u["id"], want_u["id"] = _id, u["id"]
        r.equal(got_u, want_u, f"db: user {u['username']!r}: "
                + ("id, " if keep_ids else "") + "flags (superuser/staff/active), names, email, exact Django hash")
    for name, column in extra_users:
        r.equal(here.get(name, (None,) * 3)[2], column, f"db: user {name!r} keeps its Django password column")

    memberships = set(pc.query(
        "SELECT u.username, g.name FROM auth_user_groups ug JOIN auth_user u ON u.id = ug.user_id "
        "JOIN auth_group g ON g.id = ug.group_id"))
    want = {(u["username"], g) for u in manifest["users"] for g in u["groups"]}
    r.equal(sorted(memberships), sorted(want), f"db: auth_user_groups = the manifest's {len(want)} memberships")

    grants = set(pc.query(
        "SELECT u.username, p.app_label || '.' || p.codename FROM auth_user_user_permissions up "
        "JOIN auth_user u ON u.id = up.user_id JOIN auth_permission p ON p.id = up.permission_id"))
    want = {(u["username"], p) for u in manifest["users"] for p in u["permissions"]}
    r.equal(sorted(grants), sorted(want), f"db: auth_user_user_permissions = the manifest's {len(want)} grants")

    group_perms = set(pc.query(
        "SELECT g.name, p.app_label || '.' || p.codename FROM auth_group_permissions gp "
        "JOIN auth_group g ON g.id = gp.group_id JOIN auth_permission p ON p.id = gp.permission_id"))
    want = {(g, p) for g, perms in manifest["groups"].items() for p in perms}
    r.equal(sorted(group_perms), sorted(want), f"db: auth_group_permissions = the manifest's {len(want)} grants")
    r.equal(sorted(n for (n,) in pc.query("SELECT name FROM auth_group")), sorted(manifest["groups"]),
            "db: auth_group names")

    digests = {bytes(d) for (d,) in pc.query("SELECT key_digest FROM auth_token")}
    want = {hashlib.sha256(k.encode()).digest() for k in manifest["tokens"].values()}
    r.check(want <= digests, "db: every DRF token stored as its SHA-256 digest")
    with open(pc.db_path, "rb") as f:
        raw = f.read()
    wal = pc.db_path + "-wal"
    if os.path.exists(wal):
        with open(wal, "rb") as f:
            raw += f.read()
    leaked = [k for k in manifest["tokens"].values() if k.encode() in raw]
    r.equal(leaked, [], "db: no plaintext token key in the database file")


def check_tokens(r, pc, manifest):
    users = {u["username"]: u for u in manifest["users"]}
    for username, key in manifest["tokens"].items():
        status, hdrs, body = pc.http("GET", "/profile/", headers={"Authorization": f"Token {key}"})
        u = users[username]
        if u["is_active"]:
            r.equal((status, body), (200, {"username": username, "email": u["email"]}),
                    f"token of {username!r}: GET /profile/ 200 with that username")
        else:
            # /profile/'s chain is ["token"] (src/api/policy.rs): DRF's TokenAuthentication
            # answers an inactive user's token with 401 + WWW-Authenticate: Token.
            r.equal((status, body, hdrs.get("WWW-Authenticate")),
                    (401, {"detail": "User inactive or deleted."}, "Token"),
                    f"token of inactive {username!r}: GET /profile/ 401 'User inactive or deleted.'")


def check_sessions(r, pc, manifest, imported, when=""):
    for s in manifest["sessions"]:
        status, _, body = pc.http("GET", "/protected/", headers={"Cookie": f"sessionid={s['key']}"})
        tag = f"session {s['key'][:8]}… of {s['username']!r} ({s['how']}){when}"
        if imported and not s["expired"]:
            r.equal((status, body), (200, {"message": f"Hello, {s['username']}! You have access to this view."}),
                    f"{tag}: GET /protected/ 200")
        else:
            why = "expired" if s["expired"] else "not imported (no --sessions)"
            r.equal((status, body), (403, NOT_AUTHENTICATED), f"{tag}, {why}: GET /protected/ 403")


def check_logins(r, pc, manifest):
    """Every user's Django password: the exact Django hash before, argon2id after one login."""
    first_active = next(u for u in manifest["users"] if u["is_active"])
    for u in manifest["users"]:
        name = u["username"]
        before = pc.password(name)
        r.equal(before, u["password_column"], f"login {name!r} ({u['hasher']}): stored hash is the Django hash before")
        if u is first_active:
            status, _, body = pc.http("POST", "/login/", {"username": name, "password": u["password"] + "x"})
            r.equal((status, body, pc.password(name)), (400, INVALID_CREDENTIALS, before),
                    f"login {name!r} with a wrong password: 400, hash untouched")
        t0 = time.monotonic()
        status, hdrs, body = pc.http("POST", "/login/", {"username": name, "password": u["password"]})
        took = time.monotonic() - t0
        after = pc.password(name)
        if not u["is_active"]:
            r.equal((status, body, after), (400, INVALID_CREDENTIALS, before),
                    f"login inactive {name!r} with its right password: 400 {INVALID_CREDENTIALS}, hash untouched")
            continue
        r.equal((status, body), (200, LOGGED_IN), f"login {name!r} ({u['hasher']}): POST /login/ 200 ({took:.2f} s)")
        r.check(after is not None and after.startswith("$argon2id$"),
                f"login {name!r}: hash upgraded to $argon2id$ by that login", f"now: {after!r}")
        cookie = session_cookie(hdrs)
        status, _, body = pc.http("GET", "/protected/", headers={"Cookie": f"sessionid={cookie}"})
        r.equal((status, body), (200, {"message": f"Hello, {name}! You have access to this view."}),
                f"login {name!r}: its new session cookie opens /protected/")
        status, _, body = pc.http("POST", "/login/", {"username": name, "password": u["password"]})
        r.equal((status, body, pc.password(name)), (200, LOGGED_IN, after),
                f"login {name!r} again: 200 against the argon2id hash, which stays")


def refused_login(r, pc, name, password, why):
    before = pc.password(name)
    status, _, body = pc.http("POST", "/login/", {"username": name, "password": password})
    r.equal((status, body, pc.password(name)), (400, INVALID_CREDENTIALS, before),
            f"login {name!r} ({why}): 400 {INVALID_CREDENTIALS}")


def reimport(r, pc, args, env, manifest, n_sessions, n_users=None, skipped=0):
    """A second run writes nothing."""
    before = pc.counts()
    out = pc.run(args, env=env)
    n_users = manifest["counts"]["users"] if n_users is None else n_users
    c = manifest["counts"]
    present = ([("users", n_users), ("groups", c["groups"]), ("permissions", c["permissions"]),
                ("tokens", c["tokens"]), ("sessions", n_sessions or 0)], 0)
    want = summary_line(0, 0, 0, 0, 0 if n_sessions is not None else None, skipped=skipped, present=present)
    r.equal((out.returncode, out.stdout.strip()), (0, want), "re-import: nothing new, everything already here")
    r.equal(pc.counts(), before, "re-import: every table's row count unchanged")


# ---------------------------------------------------------------------------------------------
# Scenarios.

def scenario_good(r, args, manifest, pc):
    c = manifest["counts"]
    live = [s for s in manifest["sessions"] if not s["expired"]]
    expired = [s for s in manifest["sessions"] if s["expired"]]
    n_sessions = len(live) if args.sessions else None
    imp, env = import_args(args.source, args.sessions, manifest["secret_key"], args.secret_via, pc.dir)
    expect = dict(users=c["users"], groups=c["groups"], permissions=c["permissions"], tokens=c["tokens"],
                  sessions=n_sessions)

    out = pc.run(imp + ["--dry-run"], env=env)
    r.equal((out.returncode, out.stdout.strip()), (0, summary_line(**expect, dry_run=True)),
            f"dry run: summary line ({out.seconds:.2f} s)", fatal=False)
    if out.returncode != 0:
        r.info(out.stderr)
    r.equal(pc.counts(), {t: 0 for t in pc.TABLES}, "dry run: nothing written (auth_user etc. empty)")

    out = pc.run(imp, env=env)
    r.info(f"import: {out.seconds:.2f} s; stderr: {out.stderr.strip() or '(empty)'}")
    r.equal((out.returncode, out.stdout.strip()), (0, summary_line(**expect)),
            f"import: exact summary line ({out.seconds:.2f} s)", fatal=True)
    if args.sessions and expired:
        r.check(f"not imported: {len(expired)} expired sessions" in out.stderr,
                f"import: stderr says {len(expired)} expired session not imported", out.stderr)

    check_database(r, pc, manifest, {
        "auth_user": c["users"], "auth_group": c["groups"], "auth_permission": c["permissions"],
        "auth_token": c["tokens"], "auth_user_groups": c["user_groups"],
        "auth_user_user_permissions": c["user_permissions"], "auth_group_permissions": c["group_permissions"],
        "auth_session": len(live) if args.sessions else 0,
    }, keep_ids=not args.natural)
    if args.natural:
        ids = dict(pc.query("SELECT username, id FROM auth_user"))
        r.info("natural-primary dump has no user pks: ids here "
               + ", ".join(f"{u['username']}={ids.get(u['username'])} (Django {u['id']})" for u in manifest["users"]))

    pc.start(r)
    check_tokens(r, pc, manifest)
    check_sessions(r, pc, manifest, imported=args.sessions)
    check_logins(r, pc, manifest)
    if args.sessions:
        # The upgrade is not a password change here: the security stamp stays, so imported
        # sessions survive it (Django's session hash is an HMAC of the hash, so Django's own
        # upgrade-on-login would end them).
        check_sessions(r, pc, manifest, imported=True, when=" after the hash upgrades")
    pc.stop()

    reimport(r, pc, imp, env, manifest, n_sessions)


def scenario_bad(r, args, manifest, pc):
    c = manifest["counts"]
    bad = manifest["bad"]
    live = [s for s in manifest["sessions"] if not s["expired"]]
    imp, env = import_args(args.source, True, manifest["secret_key"], args.secret_via, pc.dir)
    ids = {}
    con = sqlite3.connect(f"file:{manifest['database']}?mode=ro", uri=True) if manifest["engine"] == "sqlite" else None
    if con:
        ids = dict(con.execute("SELECT username, id FROM auth_user").fetchall())
        con.close()
    lo, hi = sorted(bad["case_duplicate"]["usernames"], key=lambda n: ids.get(n, 0))
    forged = bad["bad_signature_session"]["key"]

    # Without --skip-bad-rows: exit 1, the bad rows named, nothing written.
    out = pc.run(imp, env=env)
    r.equal(out.returncode, 1, f"import without --skip-bad-rows: exit 1 ({out.seconds:.2f} s)")
    r.info("stderr:\n" + out.stderr.rstrip())
    dup_row = f'user {ids.get(hi, "")} "{hi}": username differs only in case from user {ids.get(lo, "")} "{lo}"'
    r.check(dup_row in out.stderr, f"stderr names the case-duplicate {hi!r} (vs {lo!r})", out.stderr)
    r.check(f"session {forged[:6]}…: session data signature does not match" in out.stderr,
            "stderr names the forged session (signed with another SECRET_KEY)", out.stderr)
    r.check("2 rows cannot be imported (nothing was written" in out.stderr, "stderr: 2 rows, nothing written",
            out.stderr)
    r.equal(out.stdout, "", "stdout empty")
    r.equal(pc.counts(), {t: 0 for t in pc.TABLES}, "db: no users (nor anything else) written")

    # With --skip-bad-rows: the two rows left out, the rest imported.
    out = pc.run(imp + ["--skip-bad-rows"], env=env)
    r.info("stderr:\n" + out.stderr.rstrip())
    want = summary_line(c["users"] - 1, c["groups"], c["permissions"], c["tokens"], len(live), skipped=2)
    r.equal((out.returncode, out.stdout.strip()), (0, want), f"import --skip-bad-rows: exit 0, summary line "
            f"({out.seconds:.2f} s)", fatal=True)
    r.check(f"skipped {dup_row}" in out.stderr, f"stderr: skipped {hi!r}", out.stderr)
    r.check(f"skipped session {forged[:6]}…" in out.stderr, "stderr: skipped the forged session", out.stderr)
    for u in bad["unknown_hash"]:
        algo = u["password_column"].split("$")[0]
        line = next((ln for ln in out.stderr.splitlines() if ln.startswith(f'warning: user "{u["username"]}"')), "")
        r.check(f'password hash format "{algo}" is not supported' in line
                and f"portcullis changepassword {u['username']}" in line,
                f"stderr: warning: {u['username']!r} ({algo}) ... portcullis changepassword {u['username']}",
                out.stderr)
    for n, why in [(1, "expired"), (1, "anonymous (no user)"), (1, "stale (password changed since login)")]:
        r.check(f"not imported: {n} {why} sessions" in out.stderr, f"stderr: not imported: {n} {why} sessions",
                out.stderr)

    check_database(r, pc, manifest, {
        "auth_user": c["users"] - 1, "auth_group": c["groups"], "auth_permission": c["permissions"],
        "auth_token": c["tokens"], "auth_user_groups": c["user_groups"],
        "auth_user_user_permissions": c["user_permissions"], "auth_group_permissions": c["group_permissions"],
        "auth_session": len(live),
    }, extra_users=[(u["username"], u["password_column"]) for u in bad["unknown_hash"]]
        + [(bad["unusable_password"]["username"], bad["unusable_password"]["password_column"])])
    r.equal(pc.query("SELECT username FROM auth_user WHERE username = ?", (hi,)), [],
            f"db: {hi!r} not imported; {lo!r} is")

    pc.start(r)
    check_tokens(r, pc, manifest)
    check_sessions(r, pc, manifest, imported=True)
    for what, key in [("stale", bad["stale_session"]["key"]), ("anonymous", bad["anonymous_session"]["key"]),
                      ("forged", forged)]:
        status, _, body = pc.http("GET", "/protected/", headers={"Cookie": f"sessionid={key}"})
        r.equal((status, body), (403, NOT_AUTHENTICATED), f"{what} session {key[:8]}…: GET /protected/ 403")
    check_logins(r, pc, manifest)
    refused_login(r, pc, bad["unusable_password"]["username"], "anything-at-all", "unusable password")
    refused_login(r, pc, hi, bad["case_duplicate"]["passwords"][hi], "case duplicate, not imported")
    for u in bad["unknown_hash"]:
        refused_login(r, pc, u["username"], u["password"], f"hash format {u['password_column'].split('$')[0]!r}")

    # Such users get a password with `portcullis changepassword` (Django's validators apply).
    for u in bad["unknown_hash"]:
        name = u["username"]
        out = pc.run(["changepassword", name], stdin="password\npassword\n")
        r.check(out.returncode == 1 and "This password is too common." in out.stderr,
                f"changepassword {name} with 'password': refused by the validators", out.stdout + out.stderr)
        r.equal(pc.password(name), u["password_column"], f"changepassword {name}: unchanged after the refusal")
        out = pc.run(["changepassword", name], stdin=f"{STRONG_PASSWORD}\n{STRONG_PASSWORD}\n")
        r.equal((out.returncode, out.stdout.strip().splitlines()[-1:] if out.stdout.strip() else []),
                (0, [f"Password changed successfully for user '{name}'"]), f"changepassword {name}: exit 0",
                )
        if out.returncode != 0:
            r.info(out.stderr)
        r.check((pc.password(name) or "").startswith("$argon2id$"), f"changepassword {name}: stored as $argon2id$")
        status, _, body = pc.http("POST", "/login/", {"username": name, "password": STRONG_PASSWORD})
        r.equal((status, body), (200, LOGGED_IN), f"login {name!r} with the new password: 200")
    pc.stop()

    reimport(r, pc, imp + ["--skip-bad-rows"], env, manifest, len(live), n_users=c["users"] - 1, skipped=2)


def scenario_refuse(r, args, manifest, pc):
    out = pc.run(["import-django", "--from", args.plain_dump])
    r.equal(out.returncode, 1, f"plain `dumpdata auth authtoken` ({os.path.basename(args.plain_dump)}): exit 1")
    r.check(NO_CONTENT_TYPES in out.stderr, "...with the message asking for contenttypes or --natural-foreign",
            out.stderr)
    r.equal(pc.count("auth_user"), 0, "...and nothing written")
    out = pc.run(["import-django", "--from", args.dump, "--sessions"], env={"DJANGO_SECRET_KEY": manifest["secret_key"]})
    r.check(out.returncode == 1 and "--sessions needs the Django database: dumpdata files do not hold django_session"
            in out.stderr, f"dumpdata file with --sessions: exit 1, 'needs the Django database'", out.stderr)
    r.equal(pc.count("auth_user"), 0, "...and nothing written")


def scenario_bulk(r, args, manifest, pc):
    c = manifest["counts"]
    bulk = manifest["bulk"]
    out = pc.run(["import-django", "--from", args.source], timeout=1800)
    secs = out.seconds
    want = summary_line(c["users"], c["groups"], c["permissions"], c["tokens"])
    r.equal((out.returncode, out.stdout.strip()), (0, want), f"import of {thousands(c['users'])} users: summary line",
            fatal=True)
    r.info(f"TIMING: imported {thousands(c['users'])} users + {thousands(c['tokens'])} tokens in {secs:.2f} s "
           f"= {c['users'] / secs:,.0f} users/s")
    got = pc.counts()
    r.equal((got["auth_user"], got["auth_token"]), (c["users"], c["tokens"]), "db: every user and token there")
    pc.start(r)
    last = f"bulk{bulk['count'] - 1:06d}"
    for name in ["bulk000000", last]:
        r.equal(pc.password(name), bulk["password_column"], f"{name}: the Django hash before login")
        status, _, body = pc.http("POST", "/login/", {"username": name, "password": bulk["password"]})
        r.equal((status, body), (200, LOGGED_IN), f"login {name}: 200")
        r.check((pc.password(name) or "").startswith("$argon2id$"), f"login {name}: upgraded to $argon2id$")
    for name, key in bulk["sample_tokens"].items():
        status, _, body = pc.http("GET", "/profile/", headers={"Authorization": f"Token {key}"})
        r.equal((status, body and body.get("username")), (200, name), f"token of {name}: GET /profile/ 200")
    pc.stop()
    if args.timing_file:
        with open(args.timing_file, "w") as f:
            json.dump({"users": c["users"], "tokens": c["tokens"], "seconds": round(secs, 3),
                       "users_per_second": round(c["users"] / secs)}, f)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["good", "bad", "refuse", "bulk"])
    p.add_argument("--bin", required=True, help="the portcullis binary")
    p.add_argument("--manifest", required=True, help="manifest.json written by make_fixture.py")
    p.add_argument("--from", dest="source", help="what to give import-django --from")
    p.add_argument("--label", help="shown in every PASS/FAIL line")
    p.add_argument("--sessions", action="store_true", help="import with --sessions")
    p.add_argument("--natural", action="store_true", help="the source is a --natural-primary dump (no user ids)")
    p.add_argument("--secret-via", choices=["env", "file"], default="env",
                   help="give Django's SECRET_KEY as DJANGO_SECRET_KEY or --django-secret-key-file")
    p.add_argument("--plain-dump", help="refuse: a plain `dumpdata auth authtoken` file")
    p.add_argument("--dump", help="refuse: any dumpdata file (tried with --sessions)")
    p.add_argument("--timing-file", help="bulk: write the timing here as JSON")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (portcullis DB, server log)")
    args = p.parse_args()
    with open(args.manifest, encoding="utf-8") as f:
        manifest = json.load(f)
    # A SIGTERM (CI timeout, run.sh interrupted) still stops the server through `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    r = Report(args.label or args.mode)
    pc = Portcullis(os.path.abspath(args.bin), keep=args.keep)
    t0 = time.monotonic()
    try:
        {"good": scenario_good, "bad": scenario_bad, "refuse": scenario_refuse, "bulk": scenario_bulk}[args.mode](
            r, args, manifest, pc)
    except Abort:
        print(f"ABORT [{r.label}] stopping this scenario after a fatal failure", flush=True)
        if pc.server:
            print(pc.tail_log(), flush=True)
    except Exception:
        import traceback
        traceback.print_exc()
        r.failed.append("exception")
        if pc.server:
            print(pc.tail_log(), flush=True)
    finally:
        pc.close()
    verdict = "PASSED" if not r.failed else "FAILED"
    print(f"== [{r.label}] {verdict}: {r.passed} passed, {len(r.failed)} failed "
          f"({time.monotonic() - t0:.1f} s)" + (f"; temp dir kept: {pc.dir}" if args.keep else ""), flush=True)
    sys.exit(0 if not r.failed else 1)


if __name__ == "__main__":
    main()
