#!/usr/bin/env bash
# Load test of a release portcullis on a fresh SQLite database, on this machine's loopback.
#
# The server is pinned to one core and wrk to the other (taskset), scenarios are interleaved
# and repeated, and every figure is read in the same run, so ratios are meaningful even
# where absolute numbers swing.
#
# usage: scripts/loadtest.sh [--duration SECONDS] [--rounds N] [--connections N] [--quick]
#   --quick: 3-second scenarios, one round, a smaller memory fill (for CI smoke runs)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=10
ROUNDS=3
CONNECTIONS=64
FILL=100000
DISTINCT=10000
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --quick) DURATION=3; ROUNDS=1; FILL=10000; DISTINCT=2000; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

command -v wrk >/dev/null || { echo "installing wrk"; apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }; }
CORES=$(nproc)
if [ "$CORES" -ge 2 ]; then SERVER_CPU=0; WRK_CPU=1; else SERVER_CPU=0; WRK_CPU=0; fi

echo "building the release binary..."
cargo build --release --quiet
# One argon2 verification at the configured parameters, from the criterion bench (run now
# if it has not been): the login scenario is compared with cores / hash time.
ESTIMATE="${CARGO_TARGET_DIR:-target}/criterion/password/argon2id_verify_configured_params/new/estimates.json"
if [ ! -f "$ESTIMATE" ]; then
  echo "measuring argon2 with the criterion bench..."
  cargo bench --quiet --bench auth -- password --warm-up-time 1 --measurement-time 5 >/dev/null
fi
HASH_MS=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["mean"]["point_estimate"] / 1e6)' "$ESTIMATE")
BIN="$(cd "${CARGO_TARGET_DIR:-target}/release" && pwd)/portcullis"

WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  jobs -p | xargs -r kill 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
export PORTCULLIS_JWT__ACCESS_TOKEN_LIFETIME=3600   # outlive the run
export PORTCULLIS_THROTTLE__LOGIN="100000/s" PORTCULLIS_THROTTLE__LOGIN_IP="1000000/s"
export PORTCULLIS_METRICS__BIND=""   # no fixed metrics port: two servers run side by side below

start_server() {
  (cd "$WORK" && exec taskset -c "$SERVER_CPU" "$BIN" serve --bind "127.0.0.1:$PORT" >>"$WORK/server.log" 2>&1) &
  SERVER_PID=$!
  for _ in $(seq 1000); do curl -fs "$BASE/healthz" >/dev/null 2>&1 && return 0; sleep 0.005; done
  echo "server did not start; log:" >&2; tail -20 "$WORK/server.log" >&2; exit 1
}
stop_server() { kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""; }

start_server
PASSWORD="load-test-passw0rd"
curl -fs -X POST "$BASE/register/" -H 'Content-Type: application/json' \
  -d "{\"username\": \"loadtest\", \"password\": \"$PASSWORD\"}" >/dev/null
COOKIE=$(curl -fs -D - -o /dev/null -X POST "$BASE/login/" -H 'Content-Type: application/json' \
  -d "{\"username\": \"loadtest\", \"password\": \"$PASSWORD\"}" | sed -n 's/^set-cookie: \(sessionid=[^;]*\).*/\1/ip' | tr -d '\r')
TOKEN=$(curl -fs -X POST "$BASE/api-token-auth/" -d "username=loadtest&password=$PASSWORD" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
ACCESS=$(curl -fs -X POST "$BASE/api/token/" -d "username=loadtest&password=$PASSWORD" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access"])')
cat >"$WORK/login.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"username": "loadtest", "password": "$PASSWORD"}'
wrk.headers["Content-Type"] = "application/json"
LUA

# One wrk run; prints "req_per_s p50_ms p99_ms non2xx errors".
measure() {
  local conns=$1; shift
  local out
  out=$(taskset -c "$WRK_CPU" wrk -t1 -c"$conns" -d"${DURATION}s" --latency "$@" 2>&1)
  python3 - "$out" <<'PY'
import re, sys
out = sys.argv[1]
def ms(label):
    m = re.search(r"^\s*%s%%\s+([\d.]+)(us|ms|s)\s*$" % label, out, re.M)
    if not m: return float("nan")
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
non2xx = int((re.search(r"Non-2xx or 3xx responses: (\d+)", out) or [0, 0])[1])
errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
print(f"{rps:.0f} {ms('50'):.3f} {ms('99'):.3f} {non2xx} {errors}")
PY
}

declare -A RESULTS
scenario() {
  local name=$1; shift
  RESULTS[$name]+="$(measure "$@")"$'\n'
}

echo "measuring: $ROUNDS rounds x 5 scenarios x ${DURATION}s, $CONNECTIONS connections, server on cpu $SERVER_CPU, wrk on cpu $WRK_CPU"
for round in $(seq "$ROUNDS"); do
  scenario healthz "$CONNECTIONS" "$BASE/healthz"
  scenario session "$CONNECTIONS" -H "Cookie: $COOKIE" "$BASE/protected/"
  scenario token "$CONNECTIONS" -H "Authorization: Token $TOKEN" "$BASE/protected/"
  scenario jwt "$CONNECTIONS" -H "Authorization: Bearer $ACCESS" "$BASE/protected/"
  scenario login "$CONNECTIONS" -s "$WORK/login.lua" "$BASE/login/"
  echo "  round $round done"
done

# The cost of metrics (audit events are not written on GETs): the same token GET against a
# second server on the same database with metrics.enabled = false, alternating.
PORT2=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(cd "$WORK" && PORTCULLIS_METRICS__ENABLED=false exec taskset -c "$SERVER_CPU" "$BIN" serve --bind "127.0.0.1:$PORT2" >>"$WORK/server2.log" 2>&1) &
SERVER2_PID=$!
for _ in $(seq 1000); do curl -fs "http://127.0.0.1:$PORT2/healthz" >/dev/null 2>&1 && break; sleep 0.005; done
METRICS_ON=""; METRICS_OFF=""
for round in $(seq "$ROUNDS"); do
  METRICS_ON+="$(measure "$CONNECTIONS" -H "Authorization: Token $TOKEN" "$BASE/protected/")"$'\n'
  METRICS_OFF+="$(measure "$CONNECTIONS" -H "Authorization: Token $TOKEN" "http://127.0.0.1:$PORT2/protected/")"$'\n'
done
kill "$SERVER2_PID"; wait "$SERVER2_PID" 2>/dev/null || true

# Login storm: 64 concurrent logins while token GETs are measured.
taskset -c "$WRK_CPU" wrk -t1 -c64 -d"$((DURATION + 2))s" -s "$WORK/login.lua" "$BASE/login/" >/dev/null 2>&1 &
STORM=$!
sleep 1
STORM_RESULT=$(measure 16 -H "Authorization: Token $TOKEN" "$BASE/protected/")
wait "$STORM" || true
IDLE_RESULT=$(measure 16 -H "Authorization: Token $TOKEN" "$BASE/protected/")

# Start-up on an existing database, then memory after 100,000 users/sessions/tokens and
# 10,000 distinct credentials used.
stop_server
python3 scripts/seed_load.py "$WORK/portcullis.sqlite3" "$FILL" "$DISTINCT" "$WORK/sessions.txt" "$WORK/tokens.txt"
T0=$(date +%s%N); start_server; T1=$(date +%s%N)
STARTUP_MS=$(( (T1 - T0) / 1000000 ))
cat >"$WORK/distinct.lua" <<'LUA'
local keys = {}
for line in io.lines(os.getenv("KEYS_FILE")) do keys[#keys + 1] = line end
local i = 0
request = function()
  i = i % #keys + 1
  if os.getenv("KIND") == "session" then
    return wrk.format("GET", "/protected/", {["Cookie"] = "sessionid=" .. keys[i]})
  end
  return wrk.format("GET", "/protected/", {["Authorization"] = "Token " .. keys[i]})
end
LUA
DISTINCT_TOKEN=$(KEYS_FILE="$WORK/tokens.txt" KIND=token measure 32 -s "$WORK/distinct.lua" "$BASE/protected/")
DISTINCT_SESSION=$(KEYS_FILE="$WORK/sessions.txt" KIND=session measure 32 -s "$WORK/distinct.lua" "$BASE/protected/")
RSS_KB=$(awk '/VmRSS/ {print $2}' "/proc/$SERVER_PID/status")
# Resident memory before and after 300 failed logins, 40 at once (issue #19), on a server of
# its own with login throttling off so that every attempt runs argon2.
STORM_RSS=$(scripts/login_storm_rss.sh "$BIN" --logins 300 --concurrency 40 2>&1) || STORM_RSS+=" (over the bound)"

python3 - "$METRICS_ON" "$METRICS_OFF" "$HASH_MS" "$ROUNDS" "$STARTUP_MS" "$RSS_KB" "$FILL" "$DISTINCT" "$STORM_RESULT" "$IDLE_RESULT" "$DISTINCT_TOKEN" "$DISTINCT_SESSION" \
  "${RESULTS[healthz]}" "${RESULTS[session]}" "${RESULTS[token]}" "${RESULTS[jwt]}" "${RESULTS[login]}" <<'PY'
import statistics, sys
metrics_on = statistics.median(float(l.split()[0]) for l in sys.argv.pop(1).strip().splitlines())
metrics_off = statistics.median(float(l.split()[0]) for l in sys.argv.pop(1).strip().splitlines())
hash_ms = float(sys.argv.pop(1))
rounds, startup, rss, fill, distinct = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
storm, idle, dtoken, dsession = (list(map(float, a.split())) for a in sys.argv[6:10])
names = ["healthz", "session", "token", "jwt", "login"]
runs = {n: [list(map(float, l.split())) for l in a.strip().splitlines()] for n, a in zip(names, sys.argv[10:15])}
limit = 1000 / hash_ms  # the server has one core
med = {n: [statistics.median(r[i] for r in rs) for i in range(5)] for n, rs in runs.items()}
print()
print(f"| scenario (median of {rounds}) | req/s | vs /healthz | p50 ms | p99 ms | non-2xx | socket errors |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for n in names:
    rps, p50, p99, bad, err = med[n]
    label = {"healthz": "GET /healthz (no auth)", "login": "POST /login/"}.get(n, f"GET /protected/ ({n})")
    ratio = "" if n == "healthz" else f"{rps / limit:.2f}x argon2 limit" if n == "login" else f"{rps / med['healthz'][0]:.2f}x"
    print(f"| {label} | {rps:,.0f} | {ratio} | {p50:.2f} | {p99:.2f} | {bad:.0f} | {err:.0f} |")
print()
print(f"token GET with metrics on: {metrics_on:,.0f} req/s, off: {metrics_off:,.0f} req/s "
      f"(metrics cost {100 * (1 - metrics_on / metrics_off):.1f} %; audit events are written off the request path)")
print(f"argon2 limit: 1 core / {hash_ms:.1f} ms per hash (criterion) = {limit:.1f} logins/s")
print(f"all rounds, req/s: " + "; ".join(f"{n} " + ", ".join(f"{r[0]:,.0f}" for r in runs[n]) for n in names))
print(f"token GET during a 64-connection login storm: {storm[0]:,.0f} req/s, p99 {storm[2]:.2f} ms "
      f"(idle: {idle[0]:,.0f} req/s, p99 {idle[2]:.2f} ms; ratio {storm[0] / idle[0]:.2f})")
print(f"{distinct:,} distinct tokens: {dtoken[0]:,.0f} req/s, p99 {dtoken[2]:.2f} ms, non-2xx {dtoken[3]:.0f}; "
      f"{distinct:,} distinct sessions: {dsession[0]:,.0f} req/s, p99 {dsession[2]:.2f} ms, non-2xx {dsession[3]:.0f}")
print(f"resident memory with {fill:,} users, sessions and tokens, {distinct:,} tokens and {distinct:,} sessions used: {rss / 1024:.1f} MiB")
print(f"start-up to first answered /healthz on an existing database: {startup} ms")
PY
echo "failed-login storm: $STORM_RSS"
