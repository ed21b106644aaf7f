#!/usr/bin/env bash
# Forward auth with real reverse proxies: Debian's nginx (auth_request) and Caddy
# (forward_auth) in front of a small upstream that echoes the headers it got, with portcullis
# deciding; then a browser (headless Chromium, Playwright) sent to the login page by Caddy
# and back to the app. See gateway.py for every check.
#
# Usage: tests/gateway/run.sh PATH/TO/portcullis [ARTIFACT_DIR]
# Installs nginx-light and caddy with apt when missing (Chromium and playwright-core as
# tests/browser/run.sh does). Everything listens on 127.0.0.1; the run is bounded (~1 min).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 PATH/TO/portcullis [ARTIFACT_DIR]" >&2; exit 2; }
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../.." && pwd)"
bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
artifacts="${2:-$repo_root/ci-artifacts}"
mkdir -p "$artifacts"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
command -v caddy >/dev/null 2>&1 || missing+=(caddy)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (apt)..."
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Debian starts its own nginx on port 80 when the package is installed with an init system;
# ours runs as a plain process with its own configuration and does not need it.
browser_dir="$repo_root/tests/browser"
wanted="$(node -p "require('$browser_dir/package-lock.json').packages['node_modules/playwright-core'].version")"
have="$(node -p "try { require('$browser_dir/node_modules/playwright-core/package.json').version } catch { '' }")"
if [ "$wanted" != "$have" ]; then
  echo "installing playwright-core $wanted (npm ci)..."
  (cd "$browser_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
exec timeout --kill-after=10 240 python3 "$here/gateway.py" "$bin" "$(cd "$artifacts" && pwd)"
