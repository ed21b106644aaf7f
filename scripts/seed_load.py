#!/usr/bin/env python3
"""Fills a portcullis SQLite database with N users, N sessions and N tokens for the load
test, and writes the first K session keys and token keys to files (one per line).

Only what the server itself would store is written: SHA-256 digests of the keys, a real
argon2id hash (copied from an existing user) for every password.
usage: seed_load.py DB N K SESSIONS_OUT TOKENS_OUT
"""
import hashlib
import secrets
import sqlite3
import sys
from datetime import datetime, timedelta, timezone


def main() -> None:
    db, n, k, sessions_out, tokens_out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    con = sqlite3.connect(db)
    (password,) = con.execute("SELECT password FROM auth_user ORDER BY id LIMIT 1").fetchone()
    now = datetime.now(timezone.utc)
    stamp_now = now.isoformat()
    expires = (now + timedelta(days=14)).isoformat()
    session_keys, token_keys = [], []
    with con:
        for i in range(n):
            name = f"load{i:06d}"
            stamp = secrets.token_hex(16)
            cur = con.execute(
                "INSERT INTO auth_user (username, username_key, password, email, first_name, last_name,"
                " is_active, is_staff, is_superuser, last_login, date_joined, security_stamp)"
                " VALUES (?, ?, ?, '', '', '', 1, 0, 0, NULL, ?, ?)",
                (name, name, password, stamp_now, stamp),
            )
            user_id = cur.lastrowid
            session_key = secrets.token_hex(16)
            token_key = secrets.token_hex(20)
            con.execute(
                "INSERT INTO auth_session (key_digest, public_id, user_id, auth_stamp, data, version,"
                " created_at, last_seen, expires_at, ip, user_agent) VALUES (?, ?, ?, ?, '{}', 0, ?, ?, ?, NULL, NULL)",
                (hashlib.sha256(session_key.encode()).digest(), secrets.token_hex(16), user_id, stamp,
                 stamp_now, stamp_now, expires),
            )
            con.execute(
                "INSERT INTO auth_token (key_digest, user_id, name, created_at, last_used, expires_at)"
                " VALUES (?, ?, 'load', ?, NULL, NULL)",
                (hashlib.sha256(token_key.encode()).digest(), user_id, stamp_now),
            )
            if i < k:
                session_keys.append(session_key)
                token_keys.append(token_key)
    with open(sessions_out, "w") as f:
        f.write("\n".join(session_keys) + "\n")
    with open(tokens_out, "w") as f:
        f.write("\n".join(token_keys) + "\n")


if __name__ == "__main__":
    main()
