#!/usr/bin/env bash
# Instructions per request, by layer, under callgrind (valgrind): counts, not seconds, so the
# same on a busy machine. The release binaries serve wrk (4 connections, 5 s) with
# instrumentation on only while wrk runs (after a 2-second warm-up that fills the caches);
# the total is divided by the requests wrk counted.
#
# Layers are read from inclusive costs of functions callgrind names (inlining merges some,
# so each row says what it holds). SHA-256 runs in software under valgrind, which hides the
# CPU's SHA extensions: its row is what a machine without them pays.
#
# usage: scripts/profile_layers.sh            (release build of portcullis and bare-poem)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { apt-get install -y valgrind >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y valgrind >/dev/null; }; }
command -v wrk >/dev/null || apt-get install -y wrk >/dev/null
cargo build --release --quiet -p portcullis -p bare-poem
RELEASE="$(cd "${CARGO_TARGET_DIR:-target}/release" && pwd)"
WORK=$(mktemp -d)
PID=""
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; rm -rf "$WORK"' EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
export PORTCULLIS_METRICS__BIND="" PORTCULLIS_JWT__ACCESS_TOKEN_LIFETIME=3600

# The database: one user, a token, a session.
(cd "$WORK" && exec "$RELEASE/portcullis" serve --bind "127.0.0.1:$PORT" >"$WORK/setup.log" 2>&1) &
PID=$!
for _ in $(seq 400); do curl -fs "$BASE/healthz" >/dev/null 2>&1 && break; sleep 0.05; done
curl -fs -X POST "$BASE/register/" -H 'Content-Type: application/json' -d '{"username": "loadtest", "password": "load-test-passw0rd"}' >/dev/null
TOKEN=$(curl -fs -X POST "$BASE/api-token-auth/" -d "username=loadtest&password=load-test-passw0rd" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
COOKIE=$(curl -fs -D - -o /dev/null -X POST "$BASE/login/" -H 'Content-Type: application/json' \
  -d '{"username": "loadtest", "password": "load-test-passw0rd"}' | sed -n 's/^set-cookie: \(sessionid=[^;]*\).*/\1/ip' | tr -d '\r')
kill $PID; wait $PID 2>/dev/null || true; PID=""

# profile NAME BINARY-AND-ARGS -- WRK-ARGS: prints "NAME requests" and leaves $WORK/NAME.out.
profile() {
  local name=$1; shift
  local cmd=()
  while [ "$1" != "--" ]; do cmd+=("$1"); shift; done; shift
  (cd "$WORK" && exec env ${EXTRA_ENV:-} valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/$name.out" "${cmd[@]}" >"$WORK/$name.log" 2>&1) &
  PID=$!
  for _ in $(seq 600); do curl -fs -o /dev/null "$BASE/healthz" 2>/dev/null && break; sleep 0.1; done
  wrk -t1 -c4 -d2s "$@" >/dev/null 2>&1
  callgrind_control -i on $PID >/dev/null
  local out; out=$(wrk -t1 -c4 -d5s "$@" 2>&1)
  callgrind_control -i off $PID >/dev/null
  kill $PID; wait $PID 2>/dev/null || true; PID=""
  echo "$name $(echo "$out" | awk '/requests in/ {print $1}')" >>"$WORK/requests"
}
P=("$RELEASE/portcullis" serve --bind "127.0.0.1:$PORT")
B=("$RELEASE/bare-poem" "127.0.0.1:$PORT")
profile healthz "${P[@]}" -- "$BASE/healthz"
profile token "${P[@]}" -- -H "Authorization: Token $TOKEN" "$BASE/protected/"
profile session "${P[@]}" -- -H "Cookie: $COOKIE" "$BASE/protected/"
EXTRA_ENV="PORTCULLIS_CACHE__TTL=0" profile token_db "${P[@]}" -- -H "Authorization: Token $TOKEN" "$BASE/protected/"
profile bare_healthz "${B[@]}" -- "$BASE/healthz"
profile bare_protected "${B[@]}" -- -H "Authorization: Token $TOKEN" "$BASE/protected/"

for f in "$WORK"/*.out; do callgrind_annotate --inclusive=yes --threshold=100 "$f" >"${f%.out}.txt" 2>/dev/null; done
python3 - "$WORK" <<'PY'
import re, sys, pathlib
work = pathlib.Path(sys.argv[1])
requests = dict((l.split()[0], int(l.split()[1])) for l in (work / "requests").read_text().split("\n") if l)

def costs(name):
    table = {}
    for line in (work / f"{name}.txt").read_text().splitlines():
        m = re.match(r"\s*([\d,]+) \([^)]*\)\s+(.*?)(?: \[.*\])?$", line)
        if m:
            # "???:name" or "path/to/file.c:name": drop the file part (names hold "::", files not).
            fn = re.sub(r"^(\?\?\?|[^:\s]*\.[A-Za-z]+):(?!:)", "", m.group(2))
            table[fn] = max(table.get(fn, 0), int(m.group(1).replace(",", "")))
    return table

def find(table, *needles):
    """The largest inclusive cost of a function whose name contains every needle."""
    return max((v for k, v in table.items() if all(n in k for n in needles)), default=0)

def total(t):
    return t.get("PROGRAM TOTALS", 0)

rows = []
for name in ["healthz", "token", "session", "token_db"]:
    t, n = costs(name), requests[name]
    per = lambda v: v / n
    all_ = total(t)
    serve = find(t, "portcullis::server::conn::serve::{{closure}}::{{closure}}::{{closure}}")
    # SQLite runs on sqlx's thread of its own, outside tokio's workers.
    workers = find(t, "tokio::runtime::scheduler::multi_thread::worker::run")
    # Authentication is polled inside `framed`'s `catch_unwind`; the compiler may inline it
    # into that wrapper, which then carries its cost.
    auth = find(t, "portcullis::api::auth::authenticate::{{closure}}") or find(
        t, "<core::panic::unwind_safe::AssertUnwindSafe<F> as core::future::future::Future>::poll")
    # The operation poem-openapi generated (extractors, the handler, its response through
    # JSON, the operation id it records) is the `After` it wraps every operation in; the
    # routing (`app::Operations`, a hash lookup) is inlined into authentication.
    api = find(t, "<poem::endpoint::after::After<E,F> as poem::endpoint::endpoint::Endpoint>::call::{{closure}}")
    rows.append((name, n, {
        "total": per(all_),
        "hyper, tokio, connection (HTTP/1, socket, timeouts)": per(workers - serve),
        "outside the async workers (sqlx's SQLite thread: the database read)": per(all_ - workers),
        "outer layers: headers, metrics, log line, cookie jar, errors, path": per(serve - auth),
        "authentication and permission (chain, cache, policy), routing": per(auth - api),
        "poem-openapi's operation: extractors, handler, JSON": per(api),
        "  of which the request log line": per(find(t, "portcullis::logging::request")),
        "  of which metrics (request count and latency, the chain's outcomes)": per(find(t, "portcullis::metrics::Metrics::request") + find(t, "portcullis::authn::Chain::count")),
        "  of which Django's headers": per(find(t, "portcullis::api::headers::Headers::apply")),
        "  of which path normalisation": per(find(t, "portcullis::app::normalize_path")),
        "  of which SHA-256 of the key (software)": per(find(t, "sha2::sha256::compress256")),
        "  of which the credential cache": per(find(t, "portcullis::authn::cache::CredentialCache::get")),
    }))
for name in ["bare_healthz", "bare_protected"]:
    t, n = costs(name), requests[name]
    rows.append((name, n, {"total": total(t) / n}))

labels = list(rows[0][2].keys())
print("| instructions per request | " + " | ".join(r[0] for r in rows) + " |")
print("| --- |" + " ---: |" * len(rows))
for label in labels:
    cells = []
    for _, _, values in rows:
        v = values.get(label)
        cells.append("" if v is None or (v == 0 and label.startswith("  ")) else f"{v:,.0f}")
    print(f"| {label.strip()} | " + " | ".join(cells) + " |")
print("| requests profiled | " + " | ".join(f"{n:,}" for _, n, _ in rows) + " |")
PY
