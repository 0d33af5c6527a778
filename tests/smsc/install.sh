#!/usr/bin/env bash
# Install the test SMSC (tests/smsc/smsc.js): Debian's nodejs and npm when missing, then the
# locked npm packages (`npm ci`, the npm registry). Safe to run again: does nothing when the
# installed packages match the lock. Called by scripts/ensure-services.sh smsc (make test, CI).
set -euo pipefail
cd "$(dirname "$0")"
SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
missing=()
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [[ ${#missing[@]} -gt 0 ]]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# npm ci rewrites node_modules: skip it when the lock is the one installed last time.
stamp=node_modules/.smsdispatch-lock.sha256
if ! sha256sum -c --status "$stamp" 2>/dev/null; then
  npm ci --no-audit --no-fund --loglevel=error
  sha256sum package-lock.json > "$stamp"
fi
node -e 'require("smpp")' || { echo "tests/smsc: the smpp package did not install" >&2; exit 1; }
