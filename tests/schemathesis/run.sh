#!/usr/bin/env bash
# Schemathesis against a running portcullis: every operation of the spec the server serves
# (GET /openapi.json), every check, real credentials (see hooks.py), a bounded run.
#
#   tests/schemathesis/run.sh <portcullis-binary> [artifact-dir] [extra `st run` options...]
#
# Starts the binary on a free port with a fresh SQLite database and the default config,
# creates a superuser (Token credentials, minted with `drf_create_token`) and a plain user
# (session credentials for /session/data/), runs Schemathesis, writes the JUnit report, the
# Schemathesis output and the server log to the artifact dir (default ci-artifacts/), stops
# the server, and exits non-zero on any failure (a 5xx, an answer the spec does not allow, an
# error of the run itself).
#
# Tunables (environment):
#   ST_MAX_TIME      Schemathesis' own time budget in seconds (default 180): after the examples
#                    and coverage phases, fuzzing and stateful testing repeat until it is spent,
#                    then the run ends normally with its report. The whole script takes about
#                    this long plus ~10 s of set-up; a hard `timeout` of ST_MAX_TIME + 120 s
#                    stops a run that hangs (no report then, exit 124).
#   ST_MAX_EXAMPLES  test cases per operation and phase, per cycle (default 100)
#   ST_WORKERS       concurrent requests (default 1: see hooks.py on revoked credentials)
#   ST_SEED          Hypothesis seed (default random; the output ends with the one used)
#   ST_SPEC          a spec file to test instead of the one the server serves, e.g. to try a
#                    spec change against the current binary before rebuilding
# Extra arguments after the artifact dir go to `st run` as they are.
set -euo pipefail

if [[ $# -lt 1 ]]; then
  echo "usage: $0 <portcullis-binary> [artifact-dir] [extra st run options...]" >&2
  exit 2
fi
BIN=$(realpath "$1")
ART=${2:-ci-artifacts}
shift $(( $# >= 2 ? 2 : 1 ))
HERE=$(cd "$(dirname "$0")" && pwd)
ST_VERSION=4.32.5
MAX_TIME=${ST_MAX_TIME:-180}
MAX_EXAMPLES=${ST_MAX_EXAMPLES:-100}
WORKERS=${ST_WORKERS:-1}

[[ -x "$BIN" ]] || { echo "not an executable: $BIN" >&2; exit 2; }
mkdir -p "$ART"
ART=$(realpath "$ART")

# Schemathesis in a virtualenv of its own, outside the clone (kept between runs).
VENV=${PORTCULLIS_ST_VENV:-$HOME/.cache/portcullis-schemathesis-venv}
if [[ ! -x "$VENV/bin/st" ]] || [[ "$("$VENV/bin/st" --version 2>/dev/null)" != *"$ST_VERSION"* ]]; then
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "schemathesis==$ST_VERSION"
fi

WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  [[ -f "$WORK/server.log" ]] && cp "$WORK/server.log" "$ART/schemathesis-server.log"
  rm -rf "$WORK"
}
trap cleanup EXIT

rand() { python3 -c 'import secrets; print(secrets.token_urlsafe(18))'; }
export DATABASE_URL="sqlite://$WORK/db.sqlite3?mode=rwc"
export PORTCULLIS_METRICS__BIND=""
export PORTCULLIS_LOG__LEVEL=info
unset RUST_LOG PORTCULLIS_CONFIG

# Accounts: alice (superuser: every view, staff and `articles.can_publish` included), and
# bob, a plain user whose session serves the session-only view. Random passwords, so the
# fuzzer can never change them or log in as them by chance.
ALICE_PASSWORD=$(rand)
BOB_PASSWORD=$(rand)
"$BIN" migrate >/dev/null
PORTCULLIS_SUPERUSER_PASSWORD="$ALICE_PASSWORD" "$BIN" createsuperuser --username alice --email a@example.com --noinput >/dev/null

# Port 0: the server picks a free port and logs it.
PORTCULLIS_SERVER__BIND=127.0.0.1:0 "$BIN" serve >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
BASE=
for _ in $(seq 100); do
  BASE=$(grep -o 'listening on http://[0-9.:]*' "$WORK/server.log" | head -n1 | sed 's/^listening on //' || true)
  [[ -n "$BASE" ]] && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; echo "server exited" >&2; exit 1; }
  sleep 0.1
done
[[ -n "$BASE" ]] || { cat "$WORK/server.log" >&2; echo "server did not start" >&2; exit 1; }
for _ in $(seq 50); do curl -fsS "$BASE/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
echo "portcullis at $BASE (log: $ART/schemathesis-server.log)"

curl -fsS -o /dev/null -H 'Content-Type: application/json' \
  -d "{\"username\": \"bob\", \"password\": \"$BOB_PASSWORD\"}" "$BASE/register/"

export PORTCULLIS_ST_BASE_URL="$BASE"
export PORTCULLIS_ST_BIN="$BIN"
export PORTCULLIS_ST_USER=alice
export PORTCULLIS_ST_SESSION_USER=bob
export PORTCULLIS_ST_SESSION_PASSWORD="$BOB_PASSWORD"
export SCHEMATHESIS_HOOKS="$HERE/hooks.py"

seed=()
[[ -n "${ST_SEED:-}" ]] && seed=(--seed "$ST_SEED")

location=("$BASE/openapi.json")
[[ -n "${ST_SPEC:-}" ]] && location=("$(realpath "$ST_SPEC")" --url "$BASE")

status=0
# Output is not sanitised: the credentials in the curl reproductions belong to a server and
# a database that are gone by the time anyone reads them, and the filtered form cannot be
# replayed.
timeout --signal=INT --kill-after=30 "$((MAX_TIME + 120))" \
  "$VENV/bin/st" --config-file "$HERE/schemathesis.toml" --no-color run "${location[@]}" \
    --checks all \
    --max-time "$MAX_TIME" \
    --max-examples "$MAX_EXAMPLES" \
    --workers "$WORKERS" \
    --request-timeout 10 \
    --output-sanitize false \
    --report junit --report-junit-path "$ART/schemathesis-junit.xml" \
    "${seed[@]}" "$@" 2>&1 | tee "$ART/schemathesis-output.txt" || status=${PIPESTATUS[0]}

if [[ $status -eq 124 ]]; then
  echo "schemathesis did not finish within $((MAX_TIME + 120))s" >&2
fi

# Any 5xx the server answered, whatever Schemathesis made of it (request lines reach the
# log within 100 ms: README, "Logs").
sleep 0.5
if grep -E 'status=5[0-9][0-9]' "$WORK/server.log" >"$WORK/5xx.log"; then
  echo "the server answered 5xx:" >&2
  head -n 20 "$WORK/5xx.log" >&2
  grep -E ' (ERROR|WARN) ' "$WORK/server.log" | head -n 20 >&2 || true
  [[ $status -ne 0 ]] || status=1
fi

# A panic drops the connection instead of answering (Schemathesis reports a network error).
if grep -q 'panicked at' "$WORK/server.log"; then
  echo "the server panicked:" >&2
  grep -A1 'panicked at' "$WORK/server.log" | head -n 20 >&2
  [[ $status -ne 0 ]] || status=1
fi

if [[ $status -eq 0 ]]; then
  echo "schemathesis: no failures"
else
  echo "schemathesis: FAILED (exit $status); report: $ART/schemathesis-junit.xml" >&2
fi
exit "$status"
