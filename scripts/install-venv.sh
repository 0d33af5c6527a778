#!/usr/bin/env bash
# Installs .venv from the lock files, exactly: `make run` the runtime set (requirements.lock),
# `make install`/`make test` the runtime set and the development tools (requirements-dev.lock, a
# superset pinning the same versions). The project itself is added as an editable install
# without resolving its dependencies again, so what runs is what CI tested.
#
#   scripts/install-venv.sh run|dev
#
# uv (scripts/uv.sh) syncs the venv to the lock in a second or two from a warm cache; pip is the
# fallback when uv cannot be installed. Bytecode is compiled here, once per install, as pip does:
# otherwise each process of the stack compiles the same modules when it starts (on every start
# when PYTHONDONTWRITEBYTECODE is set, as on some CI machines).
set -euo pipefail
export LC_NUMERIC=C # EPOCHREALTIME with a dot, for awk
cd "$(dirname "$0")/.."
mode=${1:?usage: scripts/install-venv.sh run|dev}
VENV=${VENV:-.venv}
PY=${PY:-python3}
RUN_STAMP=$VENV/.installed
DEV_STAMP=$VENV/.installed-dev
case $mode in
  run) lock=requirements.lock ;;
  dev) lock=requirements-dev.lock ;;
  *) echo "usage: $0 run|dev" >&2; exit 2 ;;
esac

# A venv installed for development holds the runtime set too: `make run` keeps it as it is.
if [ "$mode" = run ] && [ -f "$DEV_STAMP" ] && [ "$DEV_STAMP" -nt requirements-dev.lock ] &&
  [ "$DEV_STAMP" -nt requirements.lock ] && [ "$DEV_STAMP" -nt pyproject.toml ]; then
  touch "$RUN_STAMP"
  exit 0
fi

command -v "$PY" >/dev/null || { echo "python3 is required" >&2; exit 1; }
started=$EPOCHREALTIME
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
editable=
timings=
if uv=$(scripts/uv.sh); then
  export UV_PYTHON_DOWNLOADS=never # the interpreter is $PY, never one uv would download
  if [ ! -x "$VENV/bin/python" ]; then
    "$uv" venv -q --python "$(command -v "$PY")" "$VENV"
  fi
  compile=()
  [ "$mode" = dev ] && compile=(--compile-bytecode)
  # Exactly the lock: what it does not name is removed.
  "$uv" pip sync -q "${compile[@]}" --python "$VENV/bin/python" "$lock"
  timings="sync $(since "$started") s"
  # The project, editable, its dependencies not resolved again; built while the stack's
  # bytecode compiles below (each takes a core for a few seconds).
  t=$EPOCHREALTIME
  { "$uv" pip install -q --no-deps --python "$VENV/bin/python" -e ./client -e . &&
    echo "$(since "$t")" >"$VENV/.editable-seconds"; } &
  editable=$!
else
  if [ ! -x "$VENV/bin/pip" ]; then
    "$PY" -m venv "$VENV" || { echo "install python3-venv" >&2; exit 1; }
  fi
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -r "$lock"
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -e ./client -e .
fi
# The project's own modules, and for `make run` what the stack's processes import, compiled once
# per lock into the user's cache (a dev install compiled all of site-packages above).
stack=()
[ "$mode" = run ] && stack=(--stack "$lock")
t=$EPOCHREALTIME
"$VENV/bin/python" scripts/precompile.py "${stack[@]}"
timings+="${timings:+, }bytecode $(since "$t") s"
if [ -n "$editable" ]; then
  wait "$editable"
  timings+=", project $(cat "$VENV/.editable-seconds") s"
fi
touch "$RUN_STAMP"
if [ "$mode" = dev ]; then
  touch "$DEV_STAMP"
else
  rm -f "$DEV_STAMP" # the sync removed the development tools
fi
echo "installed $lock in $(since "$started") s ($timings)"
