#!/usr/bin/env bash
# What forward auth costs, measured in one interleaved run on loopback (wrk, nginx):
#   1. nginx in front of a static upstream, with `auth_request` to portcullis (Token) vs the
#      same nginx without it — the goal: >= 0.5x, the decision costs less than the proxying;
#   2. portcullis's decision endpoint vs `GET /protected/` with the same Token — goal >= 0.8x.
# portcullis is pinned to core 0, nginx and wrk share core 1 (one worker each).
#
# usage: scripts/gateway_bench.sh [BINARY] [--duration SECONDS] [--rounds N]
#   BINARY defaults to the release build ($CARGO_TARGET_DIR or target).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${CARGO_TARGET_DIR:-target}/release/portcullis"
DURATION=5
ROUNDS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    *) BIN=$1; shift ;;
  esac
done
BIN=$(realpath "$BIN")
for tool in wrk nginx; do
  command -v "$tool" >/dev/null || { apt-get install -y -qq "$([ "$tool" = nginx ] && echo nginx-light || echo wrk)" >/dev/null; }
done

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PC=$(port); GUARDED=$(port); OPEN=$(port); UPSTREAM=$(port)

cat >"$WORK/portcullis.toml" <<TOML
[server]
trusted_proxies = ["127.0.0.1"]
[metrics]
bind = ""
[log]
level = "warn"
TOML
export DATABASE_URL="sqlite://$WORK/db.sqlite3?mode=rwc" PORTCULLIS_CONFIG="$WORK/portcullis.toml"
(cd "$WORK" && exec taskset -c 0 "$BIN" serve --bind "127.0.0.1:$PC" 2>"$WORK/portcullis.log") &
PIDS+=($!)

mkdir -p "$WORK"/{body,proxy,fcgi,uwsgi,scgi}
cat >"$WORK/nginx.conf" <<NGINX
$( [ "$(id -u)" = 0 ] && echo "user root;" )
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $WORK/body; proxy_temp_path $WORK/proxy; fastcgi_temp_path $WORK/fcgi;
  uwsgi_temp_path $WORK/uwsgi; scgi_temp_path $WORK/scgi;
  upstream portcullis { server 127.0.0.1:$PC; keepalive 64; }
  upstream app { server 127.0.0.1:$UPSTREAM; keepalive 64; }
  server { listen 127.0.0.1:$UPSTREAM; location / { return 200 "ok\n"; } }
  server {
    listen 127.0.0.1:$OPEN;
    location / { proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://app; }
  }
  server {
    listen 127.0.0.1:$GUARDED;
    location = /_portcullis {
      internal;
      proxy_pass http://portcullis/authz/auth-request/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URL \$scheme://\$http_host\$request_uri;
      proxy_set_header X-Original-Method \$request_method;
    }
    location / {
      auth_request /_portcullis;
      auth_request_set \$pc_user \$upstream_http_remote_user;
      proxy_set_header Remote-User \$pc_user;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://app;
    }
  }
}
NGINX
taskset -c 1 nginx -p "$WORK" -c "$WORK/nginx.conf" -g "daemon off;" &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PC/healthz" >/dev/null && break; sleep 0.1; done

PASSWORD="B3nch-$(od -An -N6 -tx1 /dev/urandom | tr -d ' ')"
curl -sf -X POST "http://127.0.0.1:$PC/register/" -H 'Content-Type: application/json' \
  -d "{\"username\": \"bench\", \"password\": \"$PASSWORD\"}" >/dev/null
TOKEN=$(curl -sf -X POST "http://127.0.0.1:$PC/api-token-auth/" -H 'Content-Type: application/json' \
  -d "{\"username\": \"bench\", \"password\": \"$PASSWORD\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
AUTH="Authorization: Token $TOKEN"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "$AUTH" "http://127.0.0.1:$GUARDED/x")" = 200 ] || { echo "the guarded nginx does not let the token through"; exit 1; }

rps() { taskset -c 1 wrk -t1 -c32 -d"${DURATION}s" "$@" | awk '/Requests\/sec/ {print $2}'; }
declare -A SUM
for round in $(seq "$ROUNDS"); do
  SUM[open]+=" $(rps "http://127.0.0.1:$OPEN/x")"
  SUM[guarded]+=" $(rps -H "$AUTH" "http://127.0.0.1:$GUARDED/x")"
  SUM[protected]+=" $(rps -H "$AUTH" "http://127.0.0.1:$PC/protected/")"
  SUM[decision]+=" $(rps -H "$AUTH" -H 'X-Original-Method: GET' -H 'X-Original-URL: http://app/x' "http://127.0.0.1:$PC/authz/auth-request/")"
  echo "round $round done"
done
median() { printf '%s\n' $1 | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
python3 - "$(median "${SUM[open]}")" "$(median "${SUM[guarded]}")" "$(median "${SUM[protected]}")" "$(median "${SUM[decision]}")" <<'PY'
import sys
open_, guarded, protected, decision = map(float, sys.argv[1:])
print(f"nginx without auth_request   {open_:>10,.0f} req/s")
print(f"nginx with auth_request      {guarded:>10,.0f} req/s   ratio {guarded / open_:.2f}x (goal >= 0.5x)")
print(f"GET /protected/ (Token)      {protected:>10,.0f} req/s")
print(f"GET /authz/auth-request/     {decision:>10,.0f} req/s   ratio {decision / protected:.2f}x (goal >= 0.8x)")
PY
