#!/usr/bin/env bash
# Resident memory of a portcullis server before and after a storm of failed logins.
#
# Every password check runs argon2id at the configured 19 MiB. What that memory may cost is
# one working area per hashing permit (password.hash_workers; 0 = the cores): that much, and
# not a fresh 19 MiB per login kept by the allocator afterwards (issue #19). Login throttling
# is switched off here so that every attempt really runs argon2; usernames alternate between
# an existing user (wrong password) and unknown ones (the dummy hash), the two paths a login
# storm takes.
#
# usage: scripts/login_storm_rss.sh BINARY [--logins N] [--concurrency N]
# Prints "idle ... after ... growth ... bound ..." and exits 1 when the growth passes the bound:
#   64 MiB (request buffers, connections, SQLite cache, blocking-pool threads)
#   + hash_workers x 20 MiB (one working area of m = 19,456 KiB = 19 MiB per permit, rounded up)
set -euo pipefail

[ $# -ge 1 ] || { echo "usage: $0 BINARY [--logins N] [--concurrency N]" >&2; exit 2; }
BIN=$(realpath "$1"); shift
LOGINS=300
CONCURRENCY=40
while [ $# -gt 0 ]; do
  case "$1" in
    --logins) LOGINS=$2; shift 2 ;;
    --concurrency) CONCURRENCY=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

WORK=$(mktemp -d)
PID=""
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

export PORTCULLIS_METRICS__BIND="" PORTCULLIS_THROTTLE__LOGIN="" PORTCULLIS_THROTTLE__LOGIN_IP=""
(cd "$WORK" && exec "$BIN" serve --bind 127.0.0.1:0 2>"$WORK/server.log") &
PID=$!
ADDR=""
for _ in $(seq 300); do
  ADDR=$(sed -n 's|.*listening on http://\([0-9.:]*\).*|\1|p' "$WORK/server.log" | head -n1)
  [ -n "$ADDR" ] && break
  kill -0 "$PID" 2>/dev/null || break
  sleep 0.1
done
[ -n "$ADDR" ] || { echo "the server did not start; log:" >&2; tail -20 "$WORK/server.log" >&2; exit 1; }
BASE="http://$ADDR"

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$PID/status"; }

curl -fsS -o /dev/null -X POST "$BASE/register/" -H 'Content-Type: application/json' \
  -d '{"username": "storm", "password": "St0rm-passw0rd-rss"}'
IDLE=$(rss_kib)

# Every answer must be the failed-login 400: a 429 or 5xx would mean argon2 did not run.
python3 - "$BASE" "$LOGINS" "$CONCURRENCY" <<'PY'
import collections, concurrent.futures, json, sys, urllib.error, urllib.request
base, logins, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def attempt(i):
    user = "storm" if i % 2 else f"nobody-{i}"
    body = json.dumps({"username": user, "password": f"wrong-{i}"}).encode()
    req = urllib.request.Request(base + "/login/", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code
with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
    codes = collections.Counter(pool.map(attempt, range(logins)))
if codes != {400: logins}:
    sys.exit(f"expected {logins} answers 400, got {dict(codes)}")
PY
AFTER=$(rss_kib)

WORKERS=${PORTCULLIS_PASSWORD__HASH_WORKERS:-0}
[ "$WORKERS" -gt 0 ] || WORKERS=$(nproc)
BOUND=$(( (64 + WORKERS * 20) * 1024 ))
GROWTH=$(( AFTER - IDLE ))
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
echo "RSS idle $(mib "$IDLE"), after $LOGINS failed logins ($CONCURRENCY at once) $(mib "$AFTER"):" \
  "growth $(mib "$GROWTH"), bound $(mib "$BOUND") (64 MiB + $WORKERS hash workers x 20 MiB)"
if [ "$GROWTH" -gt "$BOUND" ]; then
  echo "FAIL: resident memory grew by more than the bound" >&2
  exit 1
fi
