#!/usr/bin/env bash
# Throughput of token-authenticated GET /protected/ with one and with two portcullis
# instances on one PostgreSQL (same load tool, same run), with the credential cache on and
# off (cache.ttl = 0: one database query per request).
#
# usage: scripts/scaleout.sh [postgres://postgres@127.0.0.1:5432/test] [--duration SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
PG_URL=postgres://postgres@127.0.0.1:5432/test
DURATION=10
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    postgres://*) PG_URL=$1; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
command -v wrk >/dev/null || apt-get install -y wrk >/dev/null
cargo build --release --quiet
BIN="$(cd "${CARGO_TARGET_DIR:-target}/release" && pwd)/portcullis"
SCHEMA="scaleout_$(date +%s)"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql -q "$PG_URL" -c "SET client_min_messages = warning; DROP SCHEMA IF EXISTS \"$SCHEMA\" CASCADE" || true
  rm -rf "$WORK"
}
trap cleanup EXIT
export DATABASE_URL="$PG_URL" PORTCULLIS_DATABASE__SCHEMA="$SCHEMA" PORTCULLIS_METRICS__BIND="" PORTCULLIS_LOG__LEVEL=warn

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
start() { # port ttl
  (cd "$WORK" && PORTCULLIS_CACHE__TTL=$2 exec "$BIN" serve --bind "127.0.0.1:$1" >>"$WORK/server-$1.log" 2>&1) &
  PIDS+=($!)
  for _ in $(seq 1000); do curl -fs "http://127.0.0.1:$1/healthz" >/dev/null 2>&1 && return; sleep 0.01; done
  echo "server on $1 did not start" >&2; exit 1
}
rps() { wrk -t1 -c"$2" -d"${DURATION}s" -H "Authorization: Token $TOKEN" "$1/protected/" | awk '/Requests\/sec/ {print $2}'; }

for ttl in 1 0; do
  A=$(free_port); B=$(free_port)
  start "$A" "$ttl"; start "$B" "$ttl"
  curl -fs -X POST "http://127.0.0.1:$A/register/" -H 'Content-Type: application/json' \
    -d '{"username": "scale'"$ttl"'", "password": "scale-out-passw0rd"}' >/dev/null
  TOKEN=$(curl -fs -X POST "http://127.0.0.1:$A/api-token-auth/" -d "username=scale$ttl&password=scale-out-passw0rd" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  ONE=$(rps "http://127.0.0.1:$A" 64)
  TWO_A=$(mktemp); TWO_B=$(mktemp)
  rps "http://127.0.0.1:$A" 32 >"$TWO_A" &
  LOAD=$!
  rps "http://127.0.0.1:$B" 32 >"$TWO_B"
  wait "$LOAD"
  TWO=$(python3 -c "print(float(open('$TWO_A').read()) + float(open('$TWO_B').read()))")
  echo "cache.ttl=$ttl: one instance $ONE req/s; two instances $TWO req/s ($(cat "$TWO_A") + $(cat "$TWO_B"))"
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; PIDS=()
done
