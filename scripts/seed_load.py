#!/usr/bin/env python3
"""Fills a portcullis database (SQLite file or PostgreSQL URL) with N users, N sessions and N
tokens for the load test, and writes K session keys and K token keys, spread evenly over the
N, to files (one per line).

Only what the server itself would store is written: SHA-256 digests of the keys, a real
argon2id hash (copied from the first user, made by the server) for every password. Keys are
derived from the row number (`md5("s<i>")`, 32 hex characters, for sessions; two md5s cut to
40 for tokens), so that PostgreSQL can make them itself (`generate_series`) and this script
can still name them: 10^6 rows of each in well under a minute on either database.

usage: seed_load.py DB N K SESSIONS_OUT TOKENS_OUT
  DB: a SQLite file path, or postgres://... (filled with psql)
"""
import hashlib
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone

BATCH = 50_000


def session_key(i: int) -> str:
    return hashlib.md5(f"s{i}".encode()).hexdigest()


def token_key(i: int) -> str:
    return (hashlib.md5(f"t{i}".encode()).hexdigest() + hashlib.md5(f"u{i}".encode()).hexdigest())[:40]


def fill_sqlite(db: str, n: int) -> None:
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode = WAL")
    (password,) = con.execute("SELECT password FROM auth_user ORDER BY id LIMIT 1").fetchone()
    (first,) = con.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM auth_user").fetchone()
    now = datetime.now(timezone.utc)
    stamp_now, expires = now.isoformat(), (now + timedelta(days=14)).isoformat()
    with con:
        for start in range(0, n, BATCH):
            rows = range(start, min(n, start + BATCH))
            con.executemany(
                "INSERT INTO auth_user (id, username, username_key, password, date_joined, security_stamp)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                ((first + i, f"load{i:07d}", f"load{i:07d}", password, stamp_now, f"stamp{i}") for i in rows),
            )
            con.executemany(
                "INSERT INTO auth_session (key_digest, public_id, user_id, auth_stamp, created_at, last_seen,"
                " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                ((hashlib.sha256(session_key(i).encode()).digest(), f"p{i}", first + i, f"stamp{i}",
                  stamp_now, stamp_now, expires) for i in rows),
            )
            con.executemany(
                "INSERT INTO auth_token (key_digest, user_id, name, created_at) VALUES (?, ?, 'load', ?)",
                ((hashlib.sha256(token_key(i).encode()).digest(), first + i, stamp_now) for i in rows),
            )
    con.close()


def fill_postgres(url: str, n: int) -> None:
    sql = f"""
\\set ON_ERROR_STOP on
BEGIN;
CREATE TEMP TABLE seq AS SELECT i, 'load' || lpad(i::text, 7, '0') AS name FROM generate_series(0, {n - 1}) AS i;
INSERT INTO auth_user (username, username_key, password, date_joined, security_stamp)
  SELECT name, name, (SELECT password FROM auth_user ORDER BY id LIMIT 1), now(), 'stamp' || i FROM seq;
CREATE TEMP TABLE ids AS SELECT seq.i, u.id FROM seq JOIN auth_user u ON u.username = seq.name;
INSERT INTO auth_session (key_digest, public_id, user_id, auth_stamp, created_at, last_seen, expires_at)
  SELECT sha256(convert_to(md5('s' || i), 'UTF8')), 'p' || i, id, 'stamp' || i, now(), now(), now() + interval '14 days'
  FROM ids;
INSERT INTO auth_token (key_digest, user_id, name, created_at)
  SELECT sha256(convert_to(left(md5('t' || i) || md5('u' || i), 40), 'UTF8')), id, 'load', now() FROM ids;
COMMIT;
ANALYZE auth_user; ANALYZE auth_session; ANALYZE auth_token;
"""
    subprocess.run(["psql", "-q", url], input=sql, text=True, check=True)


def main() -> None:
    db, n, k, sessions_out, tokens_out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    if db.startswith("postgres"):
        fill_postgres(db, n)
    else:
        fill_sqlite(db, n)
    step = max(1, n // max(1, k))
    picked = range(0, n, step)[:k]
    with open(sessions_out, "w") as f:
        f.write("".join(session_key(i) + "\n" for i in picked))
    with open(tokens_out, "w") as f:
        f.write("".join(token_key(i) + "\n" for i in picked))


if __name__ == "__main__":
    main()
