#!/usr/bin/env bash
# The second factor end to end against the real binary on loopback, with codes from Debian's
# oathtool (an implementation that is not ours):
#
#   bash tests/mfa/run.sh <path-to-portcullis-binary>
#
# Installs oathtool with apt when missing, then runs e2e.py (standard library only): the key
# file made at first start (0600), enrolment and the otpauth:// URL field by field, each
# credential endpoint's second step, neighbouring steps (-N), replays, a recovery code, an
# ephemeral token used twice, the throttle, Basic refused, a restart reading the same key, and
# the log (no key, no secret, no 5xx). Bounded: stopped after 150 s (the run waits up to 30 s
# for a fresh time step before the restart check). Exits non-zero on any failure.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
[ $# -ge 1 ] || { echo "usage: bash tests/mfa/run.sh <path-to-portcullis-binary>" >&2; exit 2; }
[ -x "$1" ] || { echo "not an executable: $1" >&2; exit 2; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v oathtool >/dev/null 2>&1; then
  echo "installing oathtool (apt)..."
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq oathtool >/dev/null
fi

work="$(mktemp -d /tmp/pc-mfa-run.XXXXXX)"
trap 'rm -rf "$work"' EXIT
# A private copy: the binary may be rebuilt while this runs.
cp "$1" "$work/portcullis"

started=$(date +%s)
timeout --kill-after=10 150 python3 -u "$here/e2e.py" --bin "$work/portcullis"
echo "tests/mfa: $(( $(date +%s) - started )) s"
