#!/usr/bin/env bash
# End-to-end proof of `portcullis import-django` against databases built by Django itself.
#
#   bash tests/django/run.sh <path-to-portcullis-binary> [--no-100k] [--keep]
#
# Builds fixtures with tests/django/make_fixture.py (SQLite; PostgreSQL at 127.0.0.1:5432,
# user postgres, trust auth; the --bad one; 100,000 users), then runs check_import.py on each
# source, every import into a fresh portcullis SQLite database:
#   1. the SQLite Django database, with --sessions (SECRET_KEY from DJANGO_SECRET_KEY)
#   2. dumpdata: the plain `dumpdata auth authtoken` file is refused (no content types);
#      `dumpdata auth authtoken contenttypes` and the --natural-foreign/--natural-primary dump import
#   3. the PostgreSQL Django database, with --sessions (SECRET_KEY from --django-secret-key-file)
#   4. the --bad fixture: refused without --skip-bad-rows, then imported with it
#   5. timing: 100,000 users (SQLite) imported into a fresh database; prints users/s
#      (~30 s in all; --no-100k or PORTCULLIS_DJANGO_100K=0 leaves it out)
# Needs python3 (pip installs tests/django/requirements.txt when not already satisfied).
# Exits non-zero if any check fails.
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
usage() { echo "usage: bash tests/django/run.sh <path-to-portcullis-binary> [--no-100k] [--keep]" >&2; exit 2; }
[ $# -ge 1 ] || usage
bin_arg="$1"; shift
with_100k="${PORTCULLIS_DJANGO_100K:-1}"
keep=0
for arg in "$@"; do
  case "$arg" in
    --no-100k) with_100k=0 ;;
    --with-100k) with_100k=1 ;;
    --keep) keep=1 ;;
    *) usage ;;
  esac
done
[ -x "$bin_arg" ] || { echo "FAIL: $bin_arg is not an executable" >&2; exit 2; }

PY="${PYTHON:-python3}"
PG_URL="${PORTCULLIS_DJANGO_PG_URL:-postgres://postgres@127.0.0.1:5432/django_fixture}"
work="$(mktemp -d /tmp/pc-django-run.XXXXXX)"
cleanup() {
  # check_import.py stops its own servers (and the trap below catches Ctrl-C): only the
  # work dir is left to remove.
  if [ "$keep" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A private copy: the binary may be rebuilt while this runs.
cp "$bin_arg" "$work/portcullis"
BIN="$work/portcullis"

failures=()
timings=()
t_all=$(date +%s.%N)
now() { date +%s.%N; }
elapsed() { "$PY" -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }
stage() { printf '\n==== %s ====\n' "$*"; }

# run_stage NAME CMD...: runs, records the time, and a failure without stopping the run.
run_stage() {
  local name="$1"; shift
  local t0; t0=$(now)
  if "$@"; then
    timings+=("$(printf '%-34s %6ss  ok' "$name" "$(elapsed "$t0")")")
  else
    timings+=("$(printf '%-34s %6ss  FAILED' "$name" "$(elapsed "$t0")")")
    failures+=("$name")
  fi
}

# must NAME CMD...: a step the rest depends on (fixtures); stops the run on failure.
must() {
  local name="$1"; shift
  local t0; t0=$(now)
  if ! "$@"; then
    echo "FAIL: $name"
    exit 1
  fi
  timings+=("$(printf '%-34s %6ss  ok' "$name" "$(elapsed "$t0")")")
}

check() { "$PY" "$here/check_import.py" "$@" --bin "$BIN" $([ "$keep" = 1 ] && echo --keep); }

# ---------------------------------------------------------------------------------------------
stage "python requirements"
requirements_satisfied() {
  "$PY" - "$here/requirements.txt" <<'EOF'
import re, sys
from importlib.metadata import PackageNotFoundError, version
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    m = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==(\S+)", line)
    if not m:
        sys.exit(1)
    try:
        if version(m.group(1)) != m.group(3):
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
EOF
}
pip_install() {
  if requirements_satisfied; then
    echo "requirements.txt already satisfied"
  else
    "$PY" -m pip install -q --disable-pip-version-check -r "$here/requirements.txt" 2>&1 \
      | grep -v "Running pip as the 'root' user" || true
    requirements_satisfied || { echo "FAIL: pip could not satisfy $here/requirements.txt"; return 1; }
    echo "requirements.txt installed"
  fi
}
must "pip requirements" pip_install
"$PY" -c 'import django, rest_framework, sys; print(f"Django {django.get_version()}, DRF {rest_framework.VERSION}, Python {sys.version.split()[0]}")'

stage "fixtures (built by Django)"
pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || { echo "FAIL: PostgreSQL is not answering on 127.0.0.1:5432"; exit 1; }
must "fixture: sqlite" "$PY" "$here/make_fixture.py" --out "$work/sqlite"
must "fixture: postgres" "$PY" "$here/make_fixture.py" --out "$work/postgres" --database postgres --pg-url "$PG_URL" --dumpdata none
must "fixture: bad (sqlite)" "$PY" "$here/make_fixture.py" --out "$work/bad" --bad --dumpdata none

# ---------------------------------------------------------------------------------------------
stage "1. SQLite Django database, --sessions"
run_stage "1. sqlite --sessions" check good --label sqlite --manifest "$work/sqlite/manifest.json" \
  --from "sqlite://$work/sqlite/django.sqlite3" --sessions --secret-via env

stage "2. dumpdata files"
run_stage "2a. dumpdata: plain refused" check refuse --label dump-plain --manifest "$work/sqlite/manifest.json" \
  --plain-dump "$work/sqlite/dumpdata.json" --dump "$work/sqlite/dumpdata.contenttypes.json"
run_stage "2b. dumpdata + contenttypes" check good --label dump-contenttypes --manifest "$work/sqlite/manifest.json" \
  --from "$work/sqlite/dumpdata.contenttypes.json"
run_stage "2c. dumpdata --natural-*" check good --label dump-natural --manifest "$work/sqlite/manifest.json" \
  --from "$work/sqlite/dumpdata.natural.json" --natural

stage "3. PostgreSQL Django database, --sessions"
run_stage "3. postgres --sessions" check good --label postgres --manifest "$work/postgres/manifest.json" \
  --from "$PG_URL" --sessions --secret-via file

stage "4. bad rows"
run_stage "4. bad --sessions" check bad --label bad --manifest "$work/bad/manifest.json" \
  --from "sqlite://$work/bad/django.sqlite3"

if [ "$with_100k" = 1 ]; then
  stage "5. 100,000 users"
  must "fixture: 100k users (sqlite)" "$PY" "$here/make_fixture.py" --out "$work/big" --users 100000 --dumpdata none
  run_stage "5. import 100k users" check bulk --label 100k --manifest "$work/big/manifest.json" \
    --from "sqlite://$work/big/django.sqlite3" --timing-file "$work/big/timing.json"
  rm -f "$work/big/django.sqlite3"
else
  echo; echo "(100,000-user timing left out: --no-100k / PORTCULLIS_DJANGO_100K=0)"
fi

# ---------------------------------------------------------------------------------------------
stage "summary"
printf '%s\n' "${timings[@]}"
if [ -f "$work/big/timing.json" ]; then
  "$PY" -c 'import json, sys; print("100k import: {users:,} users + {tokens:,} tokens in {seconds:.2f} s = {users_per_second:,} users/s".format(**json.load(open(sys.argv[1]))))' "$work/big/timing.json"
fi
echo "total: $(elapsed "$t_all") s"
if [ ${#failures[@]} -gt 0 ]; then
  echo "FAIL: ${failures[*]}"
  exit 1
fi
echo "PASS: import-django end to end (SQLite, dumpdata, PostgreSQL, bad rows$([ "$with_100k" = 1 ] && echo ', 100k timing'))"
