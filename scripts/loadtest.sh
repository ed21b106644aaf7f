#!/usr/bin/env bash
# Load test of a release portcullis on this machine's loopback, against its ceiling: a bare
# poem server (benches/bare-poem: poem's router and server, same Cargo.lock, same allocator,
# same build profile) answering the same requests with the same bodies.
#
# The servers are pinned to one core and wrk to the other (taskset); every scenario runs on
# portcullis and on the ceiling back to back, rounds are interleaved, and every ratio is read
# within the run, so ratios mean something even where absolute numbers swing.
#
# Then the database is filled with 10^3, 10^5 and 10^6 users, sessions and tokens (SQLite,
# and PostgreSQL when one answers on 127.0.0.1:5432), and for each size: a hot token and a
# hot session, 10^4 distinct tokens and sessions round-robin (each is reused about once a
# second, so with cache.ttl = 1 a good part are misses), the same credential with the cache
# off (cache.ttl = 0: every request a database read), and resident memory.
#
# usage: scripts/loadtest.sh [--duration SECONDS] [--rounds N] [--connections N]
#                            [--sizes "1000 100000 1000000"] [--backends "sqlite postgres"] [--quick]
#   --quick: 3-second scenarios, one round, sizes 1000 and 100000 (a smoke run)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=10
ROUNDS=3
CONNECTIONS=64
SIZES="1000 100000 1000000"
BACKENDS="sqlite postgres"
DISTINCT=10000
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --sizes) SIZES=$2; shift 2 ;;
    --backends) BACKENDS=$2; shift 2 ;;
    --quick) DURATION=3; ROUNDS=1; SIZES="1000 100000"; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

command -v wrk >/dev/null || { echo "installing wrk"; apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }; }
CORES=$(nproc)
if [ "$CORES" -ge 2 ]; then SERVER_CPU=0; WRK_CPU=1; else SERVER_CPU=0; WRK_CPU=0; fi

echo "building the release binaries (portcullis and the bare-poem ceiling)..."
cargo build --release --quiet -p portcullis -p bare-poem
# One argon2 verification at the configured parameters, from the criterion bench (run now
# if it has not been): the login scenario is compared with cores / hash time.
ESTIMATE="${CARGO_TARGET_DIR:-target}/criterion/password/argon2id_verify_configured_params/new/estimates.json"
if [ ! -f "$ESTIMATE" ]; then
  echo "measuring argon2 with the criterion bench..."
  cargo bench --quiet --bench auth -- password --warm-up-time 1 --measurement-time 5 >/dev/null
fi
HASH_MS=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["mean"]["point_estimate"] / 1e6)' "$ESTIMATE")
RELEASE="$(cd "${CARGO_TARGET_DIR:-target}/release" && pwd)"
BIN="$RELEASE/portcullis"
BARE="$RELEASE/bare-poem"

WORK=$(mktemp -d)
SERVER_PID=""
BARE_PID=""
PG_DB=portcullis_load
PG_ADMIN="postgres://postgres@127.0.0.1:5432/postgres"
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  [ -n "$BARE_PID" ] && kill "$BARE_PID" 2>/dev/null && wait "$BARE_PID" 2>/dev/null
  jobs -p | xargs -r kill 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
BASE="http://127.0.0.1:$PORT"
BARE_PORT=$(free_port)
CEIL="http://127.0.0.1:$BARE_PORT"
export PORTCULLIS_JWT__ACCESS_TOKEN_LIFETIME=3600   # outlive the run
export PORTCULLIS_THROTTLE__LOGIN="100000/s" PORTCULLIS_THROTTLE__LOGIN_IP="1000000/s"
export PORTCULLIS_METRICS__BIND=""   # no fixed metrics port: two servers run side by side below
unset DATABASE_URL PORTCULLIS_DATABASE__URL

# start_server [ENV=VALUE...]: portcullis on $PORT in $WORK, with extra environment.
start_server() {
  (cd "$WORK" && exec env "$@" taskset -c "$SERVER_CPU" "$BIN" serve --bind "127.0.0.1:$PORT" >>"$WORK/server.log" 2>&1) &
  SERVER_PID=$!
  for _ in $(seq 2000); do curl -fs "$BASE/healthz" >/dev/null 2>&1 && return 0; sleep 0.005; done
  echo "server did not start; log:" >&2; tail -20 "$WORK/server.log" >&2; exit 1
}
stop_server() { kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""; }

PASSWORD="load-test-passw0rd"
# Registers the load test user and reads a session cookie, a token and a JWT access token.
credentials() {
  curl -fs -X POST "$BASE/register/" -H 'Content-Type: application/json' \
    -d "{\"username\": \"loadtest\", \"password\": \"$PASSWORD\"}" >/dev/null
  COOKIE=$(curl -fs -D - -o /dev/null -X POST "$BASE/login/" -H 'Content-Type: application/json' \
    -d "{\"username\": \"loadtest\", \"password\": \"$PASSWORD\"}" | sed -n 's/^set-cookie: \(sessionid=[^;]*\).*/\1/ip' | tr -d '\r')
  TOKEN=$(curl -fs -X POST "$BASE/api-token-auth/" -d "username=loadtest&password=$PASSWORD" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  ACCESS=$(curl -fs -X POST "$BASE/api/token/" -d "username=loadtest&password=$PASSWORD" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access"])')
}

start_server
credentials
(exec taskset -c "$SERVER_CPU" "$BARE" "127.0.0.1:$BARE_PORT" >"$WORK/bare.log" 2>&1) &
BARE_PID=$!
for _ in $(seq 1000); do curl -fs "$CEIL/healthz" >/dev/null 2>&1 && break; sleep 0.005; done
# Logins as a user of their own: each makes a session, and a user keeps at most
# session.max_per_user (the oldest go), which would end the session measured above.
curl -fs -X POST "$BASE/register/" -H 'Content-Type: application/json' \
  -d "{\"username\": \"loadlogin\", \"password\": \"$PASSWORD\"}" >/dev/null
cat >"$WORK/login.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"username": "loadlogin", "password": "$PASSWORD"}'
wrk.headers["Content-Type"] = "application/json"
LUA

# One wrk run; prints "req_per_s p50_ms p99_ms non2xx errors requests".
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
requests = int(re.search(r"(\d+) requests in", out).group(1))
print(f"{rps:.0f} {ms('50'):.3f} {ms('99'):.3f} {non2xx} {errors} {requests}")
PY
}

declare -A RESULTS
scenario() {
  local name=$1; shift
  RESULTS[$name]+="$(measure "$@")"$'\n'
}

echo "measuring: $ROUNDS rounds x 4 scenarios x 2 servers x ${DURATION}s + login, $CONNECTIONS connections, servers on cpu $SERVER_CPU, wrk on cpu $WRK_CPU"
for round in $(seq "$ROUNDS"); do
  scenario healthz "$CONNECTIONS" "$BASE/healthz"
  scenario healthz_bare "$CONNECTIONS" "$CEIL/healthz"
  scenario session "$CONNECTIONS" -H "Cookie: $COOKIE" "$BASE/protected/"
  scenario session_bare "$CONNECTIONS" -H "Cookie: $COOKIE" "$CEIL/protected/"
  scenario token "$CONNECTIONS" -H "Authorization: Token $TOKEN" "$BASE/protected/"
  scenario token_bare "$CONNECTIONS" -H "Authorization: Token $TOKEN" "$CEIL/protected/"
  scenario jwt "$CONNECTIONS" -H "Authorization: Bearer $ACCESS" "$BASE/protected/"
  scenario jwt_bare "$CONNECTIONS" -H "Authorization: Bearer $ACCESS" "$CEIL/protected/"
  scenario login "$CONNECTIONS" -s "$WORK/login.lua" "$BASE/login/"
  echo "  round $round done"
done
kill "$BARE_PID"; wait "$BARE_PID" 2>/dev/null || true; BARE_PID=""

# The cost of metrics (audit events are not written on GETs): the same token GET against a
# second server on the same database with metrics.enabled = false, alternating.
PORT2=$(free_port)
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
stop_server

# Database sizes. Each: a fresh database, the load test user, N more users with a session
# and a token each (scripts/seed_load.py), then the scenarios.
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
FILLS=""
STARTUP_MS=""
for backend in $BACKENDS; do
  if [ "$backend" = postgres ]; then
    if ! psql -q "$PG_ADMIN" -c "SELECT 1" >/dev/null 2>&1; then
      echo "PostgreSQL does not answer on 127.0.0.1:5432: its sizes are left out"; continue
    fi
    DB_ENV=(PORTCULLIS_DATABASE__URL="postgres://postgres@127.0.0.1:5432/$PG_DB")
  else
    DB_ENV=(PORTCULLIS_DATABASE__URL="sqlite://$WORK/portcullis.sqlite3?mode=rwc")
  fi
  for size in $SIZES; do
    if [ "$backend" = postgres ]; then
      psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $PG_DB" -c "CREATE DATABASE $PG_DB" >/dev/null 2>&1
      TARGET="postgres://postgres@127.0.0.1:5432/$PG_DB"
    else
      rm -f "$WORK"/portcullis.sqlite3*
      TARGET="$WORK/portcullis.sqlite3"
    fi
    start_server "${DB_ENV[@]}"
    credentials
    stop_server
    keys=$(( size < DISTINCT ? size : DISTINCT ))
    T0=$(date +%s%N)
    python3 scripts/seed_load.py "$TARGET" "$size" "$keys" "$WORK/sessions.txt" "$WORK/tokens.txt"
    FILL_S=$(( ($(date +%s%N) - T0) / 1000000 ))
    T0=$(date +%s%N); start_server "${DB_ENV[@]}"; T1=$(date +%s%N)
    [ "$size" = "$(echo "$SIZES" | awk '{print $NF}')" ] && [ "$backend" = sqlite ] && STARTUP_MS=$(( (T1 - T0) / 1000000 ))
    # One pass over the distinct keys first: a credential's first use records it (a token's
    # last_used, a session's last_seen, at most once a minute), a write the steady state
    # does not have.
    for kind in token session; do
      file=$([ $kind = token ] && echo tokens || echo sessions)
      KEYS_FILE="$WORK/$file.txt" KIND=$kind DURATION=2 measure "$CONNECTIONS" -s "$WORK/distinct.lua" "$BASE/protected/" >/dev/null
    done
    HOT_TOKEN=$(measure "$CONNECTIONS" -H "Authorization: Token $TOKEN" "$BASE/protected/")
    HOT_SESSION=$(measure "$CONNECTIONS" -H "Cookie: $COOKIE" "$BASE/protected/")
    D_TOKEN=$(KEYS_FILE="$WORK/tokens.txt" KIND=token measure "$CONNECTIONS" -s "$WORK/distinct.lua" "$BASE/protected/")
    D_SESSION=$(KEYS_FILE="$WORK/sessions.txt" KIND=session measure "$CONNECTIONS" -s "$WORK/distinct.lua" "$BASE/protected/")
    RSS_KB=$(awk '/VmRSS/ {print $2}' "/proc/$SERVER_PID/status")
    stop_server
    start_server "${DB_ENV[@]}" PORTCULLIS_CACHE__TTL=0
    MISS_TOKEN=$(measure "$CONNECTIONS" -H "Authorization: Token $TOKEN" "$BASE/protected/")
    MISS_SESSION=$(measure "$CONNECTIONS" -H "Cookie: $COOKIE" "$BASE/protected/")
    stop_server
    FILLS+="$backend $size $keys $FILL_S $RSS_KB | $HOT_TOKEN | $HOT_SESSION | $D_TOKEN | $D_SESSION | $MISS_TOKEN | $MISS_SESSION"$'\n'
    echo "  $backend, $size stored: done"
  done
  [ "$backend" = postgres ] && psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $PG_DB" >/dev/null 2>&1
done

# Resident memory before and after 300 failed logins, 40 at once (issue #19), on a server of
# its own with login throttling off so that every attempt runs argon2.
STORM_RSS=$(scripts/login_storm_rss.sh "$BIN" --logins 300 --concurrency 40 2>&1) || STORM_RSS+=" (over the bound)"

python3 - "$METRICS_ON" "$METRICS_OFF" "$HASH_MS" "$ROUNDS" "${STARTUP_MS:-0}" "$STORM_RESULT" "$IDLE_RESULT" "$FILLS" \
  "${RESULTS[healthz]}" "${RESULTS[healthz_bare]}" "${RESULTS[session]}" "${RESULTS[session_bare]}" \
  "${RESULTS[token]}" "${RESULTS[token_bare]}" "${RESULTS[jwt]}" "${RESULTS[jwt_bare]}" "${RESULTS[login]}" <<'PY'
import statistics, sys
args = sys.argv[1:]
metrics_on = statistics.median(float(l.split()[0]) for l in args[0].strip().splitlines())
metrics_off = statistics.median(float(l.split()[0]) for l in args[1].strip().splitlines())
hash_ms, rounds, startup = float(args[2]), args[3], int(args[4])
storm, idle = (list(map(float, a.split())) for a in args[5:7])
fills = [l for l in args[7].strip().splitlines() if l]
names = ["healthz", "healthz_bare", "session", "session_bare", "token", "token_bare", "jwt", "jwt_bare", "login"]
runs = {n: [list(map(float, l.split())) for l in a.strip().splitlines()] for n, a in zip(names, args[8:])}
med = {n: [statistics.median(r[i] for r in rs) for i in range(6)] for n, rs in runs.items()}
limit = 1000 / hash_ms  # the server has one core
print()
print(f"| request (median of {rounds}) | portcullis req/s | bare poem req/s | ratio | p50 ms | p99 ms | non-2xx |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for n in ["healthz", "session", "token", "jwt"]:
    rps, p50, p99, bad, err, _ = med[n]
    ceil = med[n + "_bare"][0]
    label = "GET /healthz" if n == "healthz" else f"GET /protected/ ({n})"
    print(f"| {label} | {rps:,.0f} | {ceil:,.0f} | {rps / ceil:.2f}x | {p50:.2f} | {p99:.2f} | {bad + err:.0f} |")
rps, p50, p99, bad, err, _ = med["login"]
print(f"| POST /login/ | {rps:,.0f} | {limit:,.1f} (argon2 limit: 1 core / {hash_ms:.1f} ms) | {rps / limit:.2f}x | {p50:.2f} | {p99:.2f} | {bad + err:.0f} |")
print()
print("all rounds, req/s: " + "; ".join(f"{n} " + ", ".join(f"{r[0]:,.0f}" for r in runs[n]) for n in names))
print(f"token GET with metrics on: {metrics_on:,.0f} req/s, off: {metrics_off:,.0f} req/s "
      f"(metrics cost {100 * (1 - metrics_on / metrics_off):.1f} %)")
print(f"token GET during a 64-connection login storm: {storm[0]:,.0f} req/s, p99 {storm[2]:.2f} ms "
      f"(idle: {idle[0]:,.0f} req/s, p99 {idle[2]:.2f} ms; ratio {storm[0] / idle[0]:.2f})")
if fills:
    print()
    print("| database | stored | fill s | hot token | hot session | 10^4 tokens | 10^4 sessions | token, cache off | session, cache off | RSS MiB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for line in fills:
        head, *cells = [p.split() for p in line.split("|")]
        backend, size, keys, fill_ms, rss = head
        def cell(c):
            rps, p50, p99, bad, err, _ = map(float, c)
            flag = "" if bad + err == 0 else f" ({bad + err:.0f} failed)"
            return f"{rps:,.0f} (p99 {p99:.1f} ms){flag}"
        distinct = "" if int(keys) == 10000 else f" [{int(keys):,} keys]"
        print(f"| {backend} | {int(size):,} | {int(fill_ms) / 1000:.0f} | " + " | ".join(cell(c) for c in cells[:2])
              + " | " + " | ".join(cell(c) + distinct for c in cells[2:4]) + " | "
              + " | ".join(cell(c) for c in cells[4:]) + f" | {int(rss) / 1024:.1f} |")
    print(f"start-up to first answered /healthz on the largest SQLite database: {startup} ms")
PY
echo "failed-login storm: $STORM_RSS"
