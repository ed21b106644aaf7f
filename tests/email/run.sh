#!/usr/bin/env bash
# Account recovery by email against a real SMTP server on loopback (aiosmtpd), end to end:
#
#   bash tests/email/run.sh <path-to-portcullis-binary>
#
# Installs aiosmtpd (tests/email/requirements.txt) into a virtualenv of its own outside the
# clone (kept between runs), then runs e2e.py: sendtestemail, mandatory verification, the
# reset link followed from the parsed mail, an unknown address (same answer, no mail, timed
# against a known one), the mail server stopped and hanging mid-run, the audit trail.
# Bounded: the whole script is stopped after 180 s. Exits non-zero on any failure.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
[ $# -ge 1 ] || { echo "usage: bash tests/email/run.sh <path-to-portcullis-binary>" >&2; exit 2; }
[ -x "$1" ] || { echo "not an executable: $1" >&2; exit 2; }
work="$(mktemp -d /tmp/pc-email-run.XXXXXX)"
trap 'rm -rf "$work"' EXIT
# A private copy: the binary may be rebuilt while this runs.
cp "$1" "$work/portcullis"

VENV=${PORTCULLIS_EMAIL_VENV:-$HOME/.cache/portcullis-email-venv}
if ! "$VENV/bin/python" -c 'import aiosmtpd' 2>/dev/null \
   || ! "$VENV/bin/python" -m pip freeze --disable-pip-version-check 2>/dev/null | grep -qxF -f "$here/requirements.txt"; then
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$here/requirements.txt"
fi

started=$(date +%s)
timeout --kill-after=10 180 "$VENV/bin/python" -u "$here/e2e.py" --bin "$work/portcullis"
echo "tests/email: $(( $(date +%s) - started )) s"
