#!/usr/bin/env bash
# Offline verification of portcullis JWTs by verifiers nobody here wrote (issue #16):
# PyJWT's PyJWKClient and simplejwt with JWK_URL, before and after `portcullis rotatekeys`.
#
#   bash tests/jwks/run.sh <portcullis-binary> [artifact-dir]
#
# For each of RS256, ES256 and EdDSA: starts the binary on a free loopback port with a fresh
# SQLite database and no key files (the key pair is made at first start), registers a user and
# a service account holding portcullis.introspect, then runs check.py (see its docstring). The
# Python packages (tests/jwks/requirements.txt) go into a virtualenv of their own outside the
# clone, seeing the system's packages (Django, DRF, cryptography are usually there already).
# Server logs go to the artifact dir (default ci-artifacts/). About 20 s in all.
set -euo pipefail

if [[ $# -lt 1 ]]; then
  echo "usage: $0 <portcullis-binary> [artifact-dir]" >&2
  exit 2
fi
HERE=$(cd "$(dirname "$0")" && pwd)
ART=${2:-ci-artifacts}
mkdir -p "$ART"
ART=$(realpath "$ART")
WORK=$(mktemp -d /tmp/pc-jwks.XXXXXX)
# A private copy: the binary may be rebuilt while this runs.
cp "$1" "$WORK/portcullis"
BIN="$WORK/portcullis"

VENV=${PORTCULLIS_JWKS_VENV:-$HOME/.cache/portcullis-jwks-venv}
if ! "$VENV/bin/python" - "$HERE/requirements.txt" 2>/dev/null <<'EOF'
import re, sys
from importlib.metadata import version
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if line:
        name, pinned = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)", line).groups()
        assert version(name) == pinned, name
EOF
then
  python3 -m venv --system-site-packages "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$HERE/requirements.txt"
fi
PY="$VENV/bin/python"

SERVER_PID=
stop_server() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=
}
cleanup() { stop_server; rm -rf "$WORK"; }
trap cleanup EXIT

unset RUST_LOG PORTCULLIS_CONFIG
export PORTCULLIS_METRICS__BIND=""
export PORTCULLIS_JWT__KEYS_POLL_INTERVAL=1
SVC_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')

status=0
for alg in RS256 ES256 EdDSA; do
  echo "== $alg =="
  export DATABASE_URL="sqlite://$WORK/$alg.sqlite3?mode=rwc"
  export PORTCULLIS_JWT__ALGORITHM="$alg"
  log="$ART/jwks-$alg-server.log"
  PORTCULLIS_SERVER__BIND=127.0.0.1:0 "$BIN" serve >"$log" 2>&1 &
  SERVER_PID=$!
  BASE=
  for _ in $(seq 300); do
    BASE=$(grep -o 'listening on http://[0-9.:]*' "$log" | head -n1 | sed 's/^listening on //' || true)
    [[ -n "$BASE" ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$log" >&2; echo "FAIL: the server exited" >&2; exit 1; }
    sleep 0.1
  done
  [[ -n "$BASE" ]] || { cat "$log" >&2; echo "FAIL: the server did not start" >&2; exit 1; }

  curl -fsS -o /dev/null -H 'Content-Type: application/json' \
    -d '{"username": "john", "password": "c0rrect-h0rse-battery"}' "$BASE/register/"
  curl -fsS -o /dev/null -H 'Content-Type: application/json' \
    -d "{\"username\": \"svc\", \"password\": \"$SVC_PASSWORD\"}" "$BASE/register/"
  "$BIN" grant svc portcullis.introspect >/dev/null
  SVC_TOKEN=$("$BIN" drf_create_token svc | sed -n 's/^Generated token \([0-9a-f]*\) for user svc$/\1/p')

  t0=$(date +%s.%N)
  if ! timeout 180 "$PY" "$HERE/check.py" --base "$BASE" --bin "$BIN" --alg "$alg" --service-token "$SVC_TOKEN"; then
    status=1
  fi
  echo "  ($alg: $(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$t0" "$(date +%s.%N)") s)"
  stop_server
  if grep -qE 'status=5[0-9][0-9]|panicked at' "$log"; then
    echo "FAIL: the $alg server answered 5xx or panicked (see $log)" >&2
    status=1
  fi
done

if [[ $status -eq 0 ]]; then
  echo "PASS: PyJWKClient and simplejwt (JWK_URL) verify portcullis JWTs before and after rotatekeys (RS256, ES256, EdDSA)"
else
  echo "FAIL: tests/jwks (server logs in $ART)" >&2
fi
exit "$status"
