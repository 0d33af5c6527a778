"""Compile bytecode once per install (``scripts/install-venv.sh``), so no process compiles it.

Without it every process of ``make run`` compiles every module it imports from source, and
they all start at once: with ``PYTHONDONTWRITEBYTECODE`` set (as on some CI machines) on every
start, otherwise on the first. pip compiles all of site-packages at install; uv does not, and
compiling all of it takes about twice as long as compiling what the stack imports.

    python scripts/precompile.py           # the project's own packages
    python scripts/precompile.py --stack   # and every module the dev stack's processes import
"""

from __future__ import annotations

import argparse
import compileall
import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("dispatcher", "workers", "simulator", "celeryconfig.py")
# The entry points of the processes `smsdispatch run` starts (and of the command itself); what
# they import at start follows. A module missing here is compiled by the process that needs it.
STACK = (
    "dispatcher.cli",
    "dispatcher.devstack",
    "dispatcher.store.migrate",
    "dispatcher.api.app",
    "dispatcher.api.serve",
    "uvicorn.loops.uvloop",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.lifespan.on",
    "celery.bin.celery",
    "celery.apps.worker",
    "celery.concurrency.prefork",
    "workers.app",
    "workers.runtime",
    "dispatcher.scheduler",
    "dispatcher.webhook_inbox",
    "simulator.cli",
)


def compile_project() -> bool:
    """Write the bytecode of the project's own modules (unchanged files are skipped)."""
    ok = True
    for name in PROJECT:
        path = ROOT / name
        if path.is_dir():
            ok &= bool(compileall.compile_dir(path, quiet=1))
        else:
            ok &= bool(compileall.compile_file(path, quiet=1))
    return ok


def compile_stack() -> None:
    """Import the stack's entry modules with bytecode writing on: what they import is written.

    The checkout is put first on the path: the editable install may still be being built.
    """
    sys.dont_write_bytecode = False
    sys.path.insert(0, str(ROOT))
    for name in STACK:
        importlib.import_module(name)


def main(argv: list[str] | None = None) -> int:
    """Compile; exit 1 when one of the project's files does not compile."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stack", action="store_true", help="also what the dev stack imports")
    args = p.parse_args(argv)
    ok = compile_project()
    if args.stack:
        compile_stack()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
