"""Prometheus multiprocess directories, one per process tree (an API with several uvicorn
workers, a Celery prefork pool), shared by the API and the worker pools.

Each tree gets ``$SMSDISPATCH_METRICS_DIR/<name>-<pid>`` (default root: ``smsdispatch-metrics``
in the temporary directory); directories left by trees whose process is gone are removed.
This module does not import ``prometheus_client``: the variable it exports must be set before
that library is first imported, or values stay in one process.
"""

from __future__ import annotations

import os
import shutil
import tempfile


def metrics_root() -> str:
    """Where process trees keep their per-process metric files."""
    from dispatcher.config import Settings

    return Settings.from_env().metrics_dir or os.path.join(
        tempfile.gettempdir(), "smsdispatch-metrics"
    )


def use_multiprocess_dir(name: str, base: str | None = None) -> str:
    """Give this process tree an empty metrics directory and export it to the children
    (``PROMETHEUS_MULTIPROC_DIR``); call it before any process that records metrics starts."""
    root = base or metrics_root()
    os.makedirs(root, exist_ok=True)
    remove_stale_dirs(root, name)
    path = os.path.join(root, f"{name}-{os.getpid()}")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def remove_stale_dirs(root: str, name: str) -> None:
    """Remove ``root/name-<pid>`` directories whose process is gone."""
    try:
        entries = os.listdir(root)
    except FileNotFoundError:
        return
    for entry in entries:
        prefix, _, pid = entry.rpartition("-")
        if prefix == name and pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(os.path.join(root, entry), ignore_errors=True)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (someone else's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
