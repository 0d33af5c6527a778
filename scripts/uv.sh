#!/usr/bin/env bash
# Prints the path of a uv executable, installing the pinned one when there is none:
#   1. `uv` on PATH;
#   2. else uv $UV_VERSION in a bootstrap virtualenv under the user's cache, shared by every
#      checkout (created here on first use, with pip, from PyPI).
# Exits 1 (printing nothing) when uv cannot be had: the caller falls back to pip.
set -euo pipefail
UV_VERSION=0.13.9
PY=${PY:-python3}

if command -v uv >/dev/null 2>&1; then
  command -v uv
  exit 0
fi
boot="${XDG_CACHE_HOME:-$HOME/.cache}/smsdispatch/uv-$UV_VERSION"
if [ ! -x "$boot/bin/uv" ]; then
  echo "installing uv $UV_VERSION into $boot (once per machine)" >&2
  rm -rf "$boot"
  if ! { "$PY" -m venv "$boot" >&2 &&
    "$boot/bin/python" -m pip install -q --disable-pip-version-check "uv==$UV_VERSION" >&2; }; then
    rm -rf "$boot"
    echo "uv could not be installed: falling back to pip (slower)" >&2
    exit 1
  fi
fi
echo "$boot/bin/uv"
