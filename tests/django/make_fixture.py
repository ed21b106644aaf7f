#!/usr/bin/env python3
"""Build a real Django (+ DRF authtoken) database with Django itself, for portcullis' import tests.

Writes into --out DIR:
  django.sqlite3            (sqlite only) the database
  manifest.json             what was created: users + plaintext passwords, tokens, sessions, groups, counts
  dumpdata.json             `manage.py dumpdata auth authtoken --format json`
  dumpdata.natural.json     `manage.py dumpdata auth authtoken --format json --natural-foreign --natural-primary`
  dumpdata.contenttypes.json `manage.py dumpdata auth authtoken contenttypes --format json`
                            (--dumpdata all|both|plain|natural|contenttypes|none picks which; default all;
                            both = plain + natural)

Usage:
  python3 tests/django/make_fixture.py --out DIR [--database sqlite|postgres] [--pg-url URL]
                                       [--users N] [--dumpdata WHICH] [--bad]

No Django project is needed: settings are configured in-process. Every fact written to the
manifest is read back from the database after building, and the session data is checked with an
independent stdlib-only re-implementation of Django's signing (see verify_session_data()).
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import sys
import time
import zlib
from datetime import timedelta
from urllib.parse import unquote, urlparse

SECRET_KEY = "django-insecure-portcullis-fixture-k3y!x@2#9z$q%w^e&r*t(y)u_i+o=p"
DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/django_fixture"

# (hasher class, algorithm name, expected prefix of the stored password column)
HASHERS = [
    ("django.contrib.auth.hashers.PBKDF2PasswordHasher", "pbkdf2_sha256", "pbkdf2_sha256$"),
    ("django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher", "pbkdf2_sha1", "pbkdf2_sha1$"),
    ("django.contrib.auth.hashers.Argon2PasswordHasher", "argon2", "argon2$argon2id$"),
    ("django.contrib.auth.hashers.BCryptSHA256PasswordHasher", "bcrypt_sha256", "bcrypt_sha256$$2b$"),
    ("django.contrib.auth.hashers.BCryptPasswordHasher", "bcrypt", "bcrypt$$2b$"),
    ("django.contrib.auth.hashers.ScryptPasswordHasher", "scrypt", "scrypt$"),
]
PASSWORDS = {
    "pbkdf2_sha256": "Pbkdf2-Sha256-pass!1",
    "pbkdf2_sha1": "pbkdf2 sha1 pass 2",
    "argon2": "argon2-Pässwörd-3",  # non-ASCII: hashed as UTF-8
    "bcrypt_sha256": "bcrypt_sha256-pass-4-" + "x" * 80,  # > 72 bytes: fine, pre-hashed
    "bcrypt": "bcrypt-pass-5",
    "scrypt": "scrypt-pass-6",
}
BULK_PASSWORD = "bulk-user-password"
BULK_SALT = "portcullisbulksalt00"  # fixed so the shared hash is reproducible


# name -> (file, apps dumped, natural keys); --dumpdata picks a set of names.
DUMP_FILES = {
    "plain": ("dumpdata.json", ["auth", "authtoken"], False),
    "natural": ("dumpdata.natural.json", ["auth", "authtoken"], True),
    "contenttypes": ("dumpdata.contenttypes.json", ["auth", "authtoken", "contenttypes"], False),
}
DUMPS = {"all": ["plain", "natural", "contenttypes"], "both": ["plain", "natural"], "plain": ["plain"],
         "natural": ["natural"], "contenttypes": ["contenttypes"], "none": []}


def bulk_token_key(i):
    return hashlib.sha1(f"portcullis-bulk-token:{i}".encode()).hexdigest()


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output directory (created if missing)")
    p.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--pg-url", default=DEFAULT_PG_URL,
                   help="PostgreSQL URL; this database is DROPPED and recreated (default: %(default)s)")
    p.add_argument("--users", type=int, default=0, help="extra bulk users to create (default 0)")
    p.add_argument("--batch", type=int, default=5000, help="bulk_create batch size (default 5000)")
    p.add_argument("--dumpdata", choices=sorted(DUMPS), default="all",
                   help="which dumpdata files to write (default all; both = plain + natural; "
                        "each takes ~65 s for 100k users)")
    p.add_argument("--bad", action="store_true",
                   help="also add malformed/edge-case rows for error tests (recorded under manifest 'bad')")
    return p.parse_args()


def pg_settings(url):
    u = urlparse(url)
    if u.scheme not in ("postgres", "postgresql"):
        sys.exit(f"--pg-url must be postgres://..., got {url!r}")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(u.path.lstrip("/")) or "django_fixture",
        "USER": unquote(u.username or "postgres"),
        "PASSWORD": unquote(u.password or ""),
        "HOST": u.hostname or "127.0.0.1",
        "PORT": str(u.port or 5432),
    }


def recreate_pg_database(db):
    import psycopg
    from psycopg import sql

    with psycopg.connect(dbname="postgres", user=db["USER"], password=db["PASSWORD"] or None,
                         host=db["HOST"], port=db["PORT"], autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db["NAME"])))
        conn.execute(sql.SQL("CREATE DATABASE {} ENCODING 'UTF8' TEMPLATE template0").format(
            sql.Identifier(db["NAME"])))


def configure(args, out):
    from django.conf import settings

    if args.database == "sqlite":
        path = os.path.join(out, "django.sqlite3")
        for suffix in ("", "-journal", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        db = {"ENGINE": "django.db.backends.sqlite3", "NAME": path}
        location = path
    else:
        db = pg_settings(args.pg_url)
        recreate_pg_database(db)
        location = args.pg_url

    settings.configure(
        DEBUG=False,
        SECRET_KEY=SECRET_KEY,
        SECRET_KEY_FALLBACKS=[],
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "rest_framework",
            "rest_framework.authtoken",
        ],
        DATABASES={"default": db},
        PASSWORD_HASHERS=[h[0] for h in HASHERS],
        AUTHENTICATION_BACKENDS=["django.contrib.auth.backends.ModelBackend"],
        SESSION_ENGINE="django.contrib.sessions.backends.db",
        SESSION_SERIALIZER="django.contrib.sessions.serializers.JSONSerializer",
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        ALLOWED_HOSTS=["*"],
    )
    import django

    django.setup()
    return location


# ---------------------------------------------------------------------------------------------
# Independent (stdlib-only) re-implementation of what Django does, used as a self-check so the
# algorithm description handed to the Rust side is proven against real data.

def _salted_hmac(key_salt, value, secret, algorithm):
    h = getattr(hashlib, algorithm)
    key = h(key_salt.encode() + secret.encode()).digest()
    return hmac.new(key, value.encode(), h)


def _b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def verify_session_data(secret, session_data, salt="django.contrib.sessions.SessionStore"):
    """Return the session dict, or raise. Mirrors django.core.signing.loads()."""
    value, sig = session_data.rsplit(":", 1)                # value = "<payload>:<timestamp>"
    expect = base64.urlsafe_b64encode(
        _salted_hmac(salt + "signer", value, secret, "sha256").digest()).rstrip(b"=").decode()
    if not hmac.compare_digest(sig, expect):
        raise ValueError("bad session signature")
    payload, ts = value.rsplit(":", 1)                      # ts = base62(unix seconds)
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    t = 0
    for c in ts:
        t = t * 62 + alphabet.index(c)
    compressed = payload.startswith(".")
    raw = _b64d(payload[1:] if compressed else payload)
    if compressed:
        raw = zlib.decompress(raw)
    return json.loads(raw.decode("latin-1")), t, compressed


def session_auth_hash(secret, password_column):
    return _salted_hmac("django.contrib.auth.models.AbstractBaseUser.get_session_auth_hash",
                        password_column, secret, "sha256").hexdigest()


# ---------------------------------------------------------------------------------------------

def perm(codename_full):
    from django.contrib.auth.models import Permission

    app_label, codename = codename_full.split(".", 1)
    return Permission.objects.get(content_type__app_label=app_label, codename=codename)


def build_scenario():
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Group, User
    from rest_framework.authtoken.models import Token

    spec = {}  # username -> dict(password, hasher, prefix)

    groups = {
        "editors": ["auth.add_user", "auth.change_user", "auth.view_user", "auth.view_group"],
        "viewers": ["auth.view_user", "auth.view_group", "authtoken.view_token"],
    }
    for name, perms in groups.items():
        g = Group.objects.create(name=name)
        g.permissions.set([perm(p) for p in perms])

    # One user per hasher, hashed with THAT hasher.
    for _cls, algo, prefix in HASHERS:
        username = f"u_{algo}"
        pw = PASSWORDS[algo]
        u = User(username=username, email=f"{username}@example.com", first_name=algo, last_name="User")
        u.password = make_password(pw, hasher=algo)
        u.save()
        spec[username] = {"password": pw, "hasher": algo, "prefix": prefix}

    def add(username, password, hasher="pbkdf2_sha256", **kw):
        u = User(username=username, **kw)
        u.password = make_password(password, hasher=hasher)
        u.save()
        spec[username] = {"password": password, "hasher": hasher,
                          "prefix": dict((h[1], h[2]) for h in HASHERS)[hasher]}
        return u

    admin = add("admin", "Admin-pass-0!", email="admin@example.com", is_staff=True, is_superuser=True,
                first_name="Ada", last_name="Admin")
    staffer = add("staffer", "Staffer-pass-7", email="staffer@example.com", is_staff=True)
    inactive = add("inactive", "Inactive-pass-8", email="inactive@example.com", is_active=False)
    zoe = add("zoë", "zoë-Pässwörd-9", email="zoe@example.com", first_name="Zoë")
    alice = add("alice", "Alice-pass-10", email="alice@example.com")

    Group.objects.get(name="editors").user_set.add(admin, staffer, zoe)
    Group.objects.get(name="viewers").user_set.add(staffer, alice, inactive,
                                                   User.objects.get(username="u_bcrypt"))
    alice.user_permissions.add(perm("auth.delete_user"), perm("authtoken.add_token"))
    User.objects.get(username="u_argon2").user_permissions.add(perm("auth.view_user"))

    for uname in ["admin", "alice", "zoë", "u_bcrypt", "inactive"]:
        Token.objects.create(user=User.objects.get(username=uname))

    return spec


def make_sessions(spec):
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.contrib.sessions.models import Session
    from django.test import Client
    from django.utils import timezone

    sessions = []

    # Real password logins (users hashed with the preferred hasher, so no hash upgrade happens).
    for uname in ["alice", "zoë"]:
        c = Client()
        assert c.login(username=uname, password=spec[uname]["password"]), uname
        sessions.append({"key": c.cookies[settings.SESSION_COOKIE_NAME].value, "username": uname,
                         "expired": False, "how": "Client.login"})
    c = Client()
    c.force_login(User.objects.get(username="admin"))
    sessions.append({"key": c.cookies[settings.SESSION_COOKIE_NAME].value, "username": "admin",
                     "expired": False, "how": "Client.force_login"})

    # Expired: a real login whose row is then moved into the past.
    c = Client()
    c.force_login(User.objects.get(username="u_scrypt"))
    key = c.cookies[settings.SESSION_COOKIE_NAME].value
    Session.objects.filter(session_key=key).update(expire_date=timezone.now() - timedelta(days=1))
    sessions.append({"key": key, "username": "u_scrypt", "expired": True, "how": "Client.force_login"})
    return sessions


def build_bad(spec):
    from django.conf import settings
    from django.contrib.auth.hashers import MD5PasswordHasher
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore
    from django.test import Client

    bad = {}
    # Unknown/unsupported hash formats (written with a queryset UPDATE = raw column value).
    unknown = []
    for uname, column, pw in [
        ("u_unknown_algo", "unknownalgo$1$abc$ZGVhZGJlZWY=", "whatever"),
        # md5 is a real Django hasher but NOT in PASSWORD_HASHERS: Django itself rejects it.
        ("u_md5", MD5PasswordHasher().encode("md5-pass", "somesalt"), "md5-pass"),
    ]:
        u = User.objects.create_user(uname, f"{uname}@example.com", "placeholder")
        User.objects.filter(pk=u.pk).update(password=column)
        unknown.append({"username": uname, "password_column": column, "password": pw})
    bad["unknown_hash"] = unknown

    # Case-only username clash: "alice" exists in the scenario.
    User.objects.create_user("Alice", "alice2@example.com", "Other-Alice-pass")
    bad["case_duplicate"] = {"usernames": ["alice", "Alice"],
                             "passwords": {"alice": spec["alice"]["password"], "Alice": "Other-Alice-pass"}}

    # Unusable password ("!" + 40 random chars).
    u = User.objects.create_user("u_unusable", "unusable@example.com")
    u.set_unusable_password()
    u.save()
    bad["unusable_password"] = {"username": "u_unusable",
                                "password_column": User.objects.get(pk=u.pk).password}

    # A session whose _auth_user_hash is stale (password changed after login): Django flushes it.
    c = Client()
    assert c.login(username="staffer", password=spec["staffer"]["password"])
    stale_key = c.cookies[settings.SESSION_COOKIE_NAME].value
    s = User.objects.get(username="staffer")
    s.set_password("Staffer-new-pass")
    s.save()
    spec["staffer"]["password"] = "Staffer-new-pass"
    bad["stale_session"] = {"key": stale_key, "username": "staffer", "user_id": s.pk,
                            "why": "password changed after login; _auth_user_hash no longer matches"}

    # An anonymous (not logged-in) session, as real sites have plenty of.
    store = SessionStore()
    store["cart"] = [1, 2, 3]
    store.save()
    bad["anonymous_session"] = {"key": store.session_key, "data": {"cart": [1, 2, 3]}}

    # A session with a signature made with another SECRET_KEY.
    from django.contrib.sessions.models import Session
    from django.core import signing
    from django.utils import timezone
    forged = signing.dumps({"_auth_user_id": str(User.objects.get(username="admin").pk),
                            "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
                            "_auth_user_hash": "0" * 64},
                           key="some-other-secret", salt="django.contrib.sessions.SessionStore",
                           compress=True)
    Session.objects.create(session_key="forgedsessionkey0000000000000000", session_data=forged,
                           expire_date=timezone.now() + timedelta(days=14))
    bad["bad_signature_session"] = {"key": "forgedsessionkey0000000000000000", "username": "admin",
                                    "why": "signed with SECRET_KEY 'some-other-secret'"}
    return bad


def bulk_users(n, batch):
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User
    from django.db import transaction
    from django.utils import timezone
    from rest_framework.authtoken.models import Token

    shared = make_password(BULK_PASSWORD, salt=BULK_SALT, hasher="pbkdf2_sha256")
    now = timezone.now()
    for start in range(0, n, batch):
        idx = range(start, min(n, start + batch))
        with transaction.atomic():
            users = User.objects.bulk_create([
                User(username=f"bulk{i:06d}", email=f"bulk{i}@example.com", password=shared,
                     date_joined=now, is_active=True) for i in idx])
            if any(u.pk is None for u in users):  # backend without RETURNING: look the ids up
                ids = dict(User.objects.filter(username__in=[u.username for u in users])
                           .values_list("username", "pk"))
                for u in users:
                    u.pk = ids[u.username]
            Token.objects.bulk_create([
                Token(key=bulk_token_key(i), user_id=u.pk, created=now)
                for i, u in zip(idx, users) if i % 2 == 0])
    return {
        "count": n,
        "username_format": "bulk{i:06d}",
        "email_format": "bulk{i}@example.com",
        "password": BULK_PASSWORD,
        "password_column": shared,
        "hasher": "pbkdf2_sha256",
        "token_for": "every i with i % 2 == 0",
        "token_key_format": "sha1_hex('portcullis-bulk-token:{i}')",
        "sample_tokens": {f"bulk{i:06d}": bulk_token_key(i) for i in range(0, min(n, 6), 2)},
    }


def read_back(spec, sessions, bad):
    """Everything for the manifest, read from the database (plus plaintext from spec)."""
    from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.hashers import check_password
    from django.contrib.auth.models import Group, User
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session
    from django.db import connection
    from django.utils import timezone
    from rest_framework.authtoken.models import Token

    users = []
    for uname, s in spec.items():
        u = User.objects.get(username=uname)
        assert u.password.startswith(s["prefix"]), (uname, u.password[:30], s["prefix"])
        # hashers.check_password without a setter: User.check_password() would silently re-hash
        # a non-preferred hash (argon2, bcrypt, scrypt, pbkdf2_sha1) to pbkdf2_sha256 on success.
        assert check_password(s["password"], u.password), uname
        users.append({
            "id": u.pk,
            "username": uname,
            "password": s["password"],
            "hasher": s["hasher"],
            "prefix": s["prefix"],
            "password_column": u.password,
            "is_superuser": u.is_superuser,
            "is_staff": u.is_staff,
            "is_active": u.is_active,
            "email": u.email,
            "first_name": u.first_name,
            "last_name": u.last_name,
            "groups": sorted(u.groups.values_list("name", flat=True)),
            "permissions": sorted(f"{p.content_type.app_label}.{p.codename}"
                                  for p in u.user_permissions.select_related("content_type")),
        })
    names = set(spec)
    tokens = {t.user.username: t.key for t in Token.objects.select_related("user")
              .filter(user__username__in=names)}

    groups = {g.name: sorted(f"{p.content_type.app_label}.{p.codename}"
                             for p in g.permissions.select_related("content_type"))
              for g in Group.objects.order_by("name")}

    out_sessions = []
    for s in sessions:
        row = Session.objects.get(session_key=s["key"])
        user = User.objects.get(username=s["username"])
        data, ts, compressed = verify_session_data(SECRET_KEY, row.session_data)
        assert data == SessionStore().decode(row.session_data), "stdlib decoder disagrees with Django"
        assert data[SESSION_KEY] == str(user.pk)
        assert data[HASH_SESSION_KEY] == user.get_session_auth_hash() == \
            session_auth_hash(SECRET_KEY, user.password)
        expired = row.expire_date <= timezone.now()
        assert expired == s["expired"]
        loaded = SessionStore(s["key"]).load()  # Django's own view: expired rows load as {}
        assert (loaded == {}) == expired
        out_sessions.append({**s, "user_id": user.pk, "expire_date": row.expire_date.isoformat(),
                             "session_data": row.session_data, "data": data,
                             "signed_at": ts, "compressed": compressed})

    if bad:
        st = bad["stale_session"]
        data, _, _ = verify_session_data(SECRET_KEY, Session.objects.get(session_key=st["key"]).session_data)
        assert data[HASH_SESSION_KEY] != User.objects.get(username="staffer").get_session_auth_hash()
        try:
            verify_session_data(SECRET_KEY, Session.objects.get(
                session_key=bad["bad_signature_session"]["key"]).session_data)
            raise AssertionError("forged session verified")
        except ValueError:
            pass
        for u in bad["unknown_hash"]:
            assert not check_password(u["password"], User.objects.get(username=u["username"]).password)

    counts = {}
    with connection.cursor() as cur:
        for key, table in [("users", "auth_user"), ("groups", "auth_group"),
                           ("permissions", "auth_permission"), ("tokens", "authtoken_token"),
                           ("user_groups", "auth_user_groups"),
                           ("user_permissions", "auth_user_user_permissions"),
                           ("group_permissions", "auth_group_permissions"),
                           ("sessions", "django_session"), ("content_types", "django_content_type")]:
            cur.execute(f"SELECT COUNT(*) FROM {table}")
            counts[key] = cur.fetchone()[0]
    return users, tokens, groups, out_sessions, counts


def main():
    args = parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    t0 = time.monotonic()
    location = configure(args, out)

    import django
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    t_migrate = time.monotonic()

    spec = build_scenario()
    sessions = make_sessions(spec)
    bad = build_bad(spec) if args.bad else None
    t_scenario = time.monotonic()

    bulk = bulk_users(args.users, args.batch) if args.users else None
    t_bulk = time.monotonic()

    users, tokens, groups, out_sessions, counts = read_back(spec, sessions, bad)
    t_verify = time.monotonic()

    for which, (name, apps, natural) in DUMP_FILES.items():
        path = os.path.join(out, name)
        if os.path.exists(path):
            os.remove(path)
        if which in DUMPS[args.dumpdata]:
            # = manage.py dumpdata <apps> --format json [--natural-foreign --natural-primary]
            call_command("dumpdata", *apps, format="json", indent=None,
                         use_natural_foreign_keys=natural, use_natural_primary_keys=natural,
                         output=path, verbosity=0)
    t_dump = time.monotonic()

    import rest_framework
    manifest = {
        "secret_key": SECRET_KEY,
        "database": location,
        "engine": args.database,
        "versions": {"django": django.get_version(), "djangorestframework": rest_framework.VERSION,
                     "python": sys.version.split()[0]},
        "session_cookie_name": "sessionid",
        "users": users,
        "tokens": tokens,
        "sessions": out_sessions,
        "groups": groups,
        "counts": counts,
    }
    if bulk:
        manifest["bulk"] = bulk
    if bad:
        manifest["bad"] = bad
    manifest["timings_s"] = {"migrate": round(t_migrate - t0, 2), "scenario": round(t_scenario - t_migrate, 2),
                             "bulk": round(t_bulk - t_scenario, 2), "verify": round(t_verify - t_bulk, 2),
                             "dumpdata": round(t_dump - t_verify, 2),
                             "total": round(time.monotonic() - t0, 2)}
    with open(os.path.join(out, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {out} ({args.database}): {counts['users']} users, {counts['tokens']} tokens, "
          f"{counts['sessions']} sessions; timings {manifest['timings_s']}")


if __name__ == "__main__":
    main()
