#!/usr/bin/env bash
# Headless-Chromium end-to-end test of the Swagger UI page (/docs/), see swagger.mjs.
#
# Usage: tests/browser/run.sh PATH/TO/portcullis [ARTIFACT_DIR]
#
#   ARTIFACT_DIR defaults to ci-artifacts/ at the repository root (git-ignored); the screenshots
#   swagger-session.png and swagger-token.png go there, plus *-failure.png and the server's log
#   (swagger-server.log) when something fails.
#
# It installs Debian's chromium with apt if /usr/bin/chromium is missing and playwright-core
# (pinned in package-lock.json) with `npm ci` if node_modules does not hold that version;
# then, in a temporary directory: a SQLite database, `migrate`, `createsuperuser`,
# `drf_create_token`, and `serve` on a free loopback port. The server is stopped on exit.
# Exits with the test's status. The whole run is bounded (about 2 minutes once installed).
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 PATH/TO/portcullis [ARTIFACT_DIR]" >&2
  exit 2
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../.." && pwd)"
bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
artifacts="${2:-$repo_root/ci-artifacts}"
mkdir -p "$artifacts"
artifacts="$(cd "$artifacts" && pwd)"
rm -f "$artifacts/swagger-server.log"

if [ ! -x "$bin" ]; then
  echo "FAIL: $bin is not an executable" >&2
  exit 2
fi

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# --- the browser and the driver ------------------------------------------------------------
chromium_bin="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium_bin" ]; then
  echo "installing chromium (apt)..."
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium >/dev/null
fi

if ! command -v node >/dev/null 2>&1; then
  echo "FAIL: node (>= 20) is needed to run the test" >&2
  exit 2
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  echo "FAIL: node >= 20 is needed (playwright-core), found $(node --version)" >&2
  exit 2
fi

wanted="$(node -p "require('$here/package-lock.json').packages['node_modules/playwright-core'].version")"
have="$(node -p "try { require('$here/node_modules/playwright-core/package.json').version } catch { '' }")"
if [ "$wanted" != "$have" ]; then
  echo "installing playwright-core $wanted (npm ci)..."
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

# --- a server with one user and one token --------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-e2e.XXXXXX")"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export DATABASE_URL="sqlite://$work/db.sqlite3?mode=rwc"
export PORTCULLIS_METRICS__BIND=""   # no second listener on 127.0.0.1:9464
unset PORTCULLIS_CONFIG
username="alice"
password="E2e-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"

timeout 60 "$bin" migrate >"$work/setup.log" 2>&1 \
  || { echo "FAIL: portcullis migrate"; cat "$work/setup.log"; exit 1; }
PORTCULLIS_SUPERUSER_PASSWORD="$password" timeout 60 "$bin" createsuperuser \
  --username "$username" --email "$username@example.com" --noinput >>"$work/setup.log" 2>&1 \
  || { echo "FAIL: portcullis createsuperuser"; cat "$work/setup.log"; exit 1; }
# Prints "Generated token <key> for user <username>".
token_out="$(timeout 60 "$bin" drf_create_token "$username" 2>>"$work/setup.log")" \
  || { echo "FAIL: portcullis drf_create_token"; cat "$work/setup.log"; exit 1; }
token="$(printf '%s\n' "$token_out" | sed -n 's/^Generated token \([0-9A-Za-z]\+\) for user .*/\1/p' | head -n1)"
if [ -z "$token" ]; then
  echo "FAIL: could not read the token from drf_create_token's output: $token_out"
  exit 1
fi

free_port() {
  node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}

# A port found free may be taken before the server binds it: try a few.
base_url=""
for attempt in 1 2 3; do
  port="$(free_port)"
  PORTCULLIS_SERVER__BIND="127.0.0.1:$port" "$bin" serve >"$work/serve.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 300); do   # up to 30 s
    if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
    if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/healthz" || true)" = "200" ]; then
      base_url="http://127.0.0.1:$port"
      break
    fi
    sleep 0.1
  done
  [ -n "$base_url" ] && break
  echo "server did not come up on port $port (attempt $attempt):"
  tail -n 20 "$work/serve.log"
  kill -KILL "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
done
if [ -z "$base_url" ]; then
  echo "FAIL: portcullis serve did not answer 200 on /healthz"
  exit 1
fi
echo "server: $base_url (pid $server_pid, database $work/db.sqlite3)"

# --- the test ------------------------------------------------------------------------------
set +e
BASE_URL="$base_url" USERNAME="$username" PASSWORD="$password" TOKEN="$token" \
  ARTIFACT_DIR="$artifacts" CHROMIUM="$chromium_bin" \
  timeout --kill-after=10 150 node "$here/swagger.mjs"
status=$?
set -e
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
  echo "FAIL: swagger.mjs did not finish within 150 s"
fi
if [ "$status" -ne 0 ]; then
  cp "$work/serve.log" "$artifacts/swagger-server.log" 2>/dev/null || true
  echo "server log: $artifacts/swagger-server.log"
fi
exit "$status"
