"""Compile bytecode once per install (``scripts/install-venv.sh``), so no process compiles it.

Without it every process of ``make run`` compiles every module it imports from source, and
they all start at once: with ``PYTHONDONTWRITEBYTECODE`` set (as on some CI machines) on every
start, otherwise on the first. pip compiles all of site-packages at install; uv does not, and
compiling all of it takes about twice as long as compiling what the stack imports.

The third-party part is the same for every checkout installed from the same lock file, so it is
compiled once per lock and Python version into the user's cache (beside uv's, which holds the
wheels) and copied into each new venv. Those files are checked against the source's hash when
imported (PEP 552), so a copy that does not match its source is never used, only recompiled.

    python scripts/precompile.py                 # the project's own packages
    python scripts/precompile.py --stack LOCK    # and everything the dev stack imports
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import importlib
import importlib.util
import os
import py_compile
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("dispatcher", "workers", "devstack", "simulator", "celeryconfig.py")
# The entry points of the processes `smsdispatch run` starts (and of the command itself); what
# they import at start follows. A module missing here is compiled by the process that needs it.
STACK = (
    "dispatcher.cli.main",
    "devstack.run",
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
    "dispatcher.scheduler.loop",
    "devstack.webhook_inbox",
    "simulator.cli",
)
KEEP = 3  # cached compilations (locks) kept; older ones are removed
DONE = ".complete"


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


def compile_stack(lock: Path) -> bool:
    """Put the bytecode of every third-party module the stack imports into site-packages,
    compiling it only when this lock's compilation is not cached yet; whether it was."""
    site = Path(sysconfig.get_paths()["purelib"])
    cache = _cache_dir() / _key(lock)
    cached = (cache / DONE).exists()
    if cached:
        os.utime(cache)  # recently used: kept by _prune
    else:
        _fill(cache, site, _imported_sources(site))
        _prune(cache.parent)
    shutil.copytree(cache, site, dirs_exist_ok=True, ignore=shutil.ignore_patterns(DONE))
    return cached


def _imported_sources(site: Path) -> list[Path]:
    """The source files under ``site`` of what the stack's entry modules import."""
    # The editable installs of the project and its client may still be being built.
    sys.path[:0] = [str(ROOT), str(ROOT / "client" / "src")]
    for name in STACK:
        importlib.import_module(name)
    files = (getattr(m, "__file__", None) for m in list(sys.modules.values()))
    return sorted(
        {Path(f) for f in files if f and f.endswith(".py") and Path(f).is_relative_to(site)}
    )


def _fill(cache: Path, site: Path, sources: list[Path]) -> None:
    """Compile ``sources`` into ``cache`` (laid out as site-packages), then mark it complete."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=cache.name + ".", dir=cache.parent))
    try:
        for src in sources:
            pyc = Path(importlib.util.cache_from_source(str(src)))
            target = tmp / pyc.relative_to(site)
            target.parent.mkdir(parents=True, exist_ok=True)
            py_compile.compile(
                str(src),
                cfile=str(target),
                invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
                quiet=2,  # a file that does not compile is left out, for Python to compile
            )
        (tmp / DONE).touch()
        if cache.exists() and not (cache / DONE).exists():  # left by a killed run
            shutil.rmtree(cache, ignore_errors=True)
        tmp.rename(cache)
    except OSError:
        if not (cache / DONE).exists():  # not filled by a concurrent install either
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _key(lock: Path) -> str:
    """One compilation per lock file content, interpreter and entry-module list."""
    h = hashlib.sha256(lock.read_bytes())
    h.update(f"{sys.version}|{sys.implementation.cache_tag}|{','.join(STACK)}".encode())
    return h.hexdigest()[:24]


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "smsdispatch" / "bytecode"


def _prune(root: Path) -> None:
    entries = sorted(
        (p for p in root.iterdir() if (p / DONE).exists()), key=lambda p: p.stat().st_mtime
    )
    for old in entries[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Compile; exit 1 when one of the project's files does not compile."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stack", type=Path, metavar="LOCK", help="also what the dev stack imports")
    args = p.parse_args(argv)
    ok = compile_project()
    if args.stack:
        cached = compile_stack(args.stack)
        print(f"stack bytecode {'from the cache' if cached else 'compiled and cached'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
