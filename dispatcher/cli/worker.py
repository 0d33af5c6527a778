"""The command line that starts one lane's Celery worker pool.

``smsdispatch worker`` replaces itself with it; ``smsdispatch run`` starts it directly, which
spares each of its four pools an interpreter that imports the whole command-line tool only to
replace itself.
"""

from __future__ import annotations

import sys

from dispatcher.contract import Lane, queue_name


def worker_command(lane: Lane, concurrency: int) -> tuple[list[str], dict[str, str]]:
    """The argv of the pool of ``lane``, and the environment variables it adds when unset."""
    argv = [
        sys.executable,
        "-m",
        "celery",
        "--app=workers.app",
        "worker",
        f"--queues={queue_name(lane)}",
        f"--hostname={lane}@%h",
        f"--concurrency={concurrency}",
        "--pool=prefork",
        "--prefetch-multiplier=1",
        "--without-gossip",
        "--without-mingle",
        "--loglevel=INFO",
    ]
    if lane == Lane.PRIORITY:
        argv.append("--disable-prefetch")
    # libpq names the pool's database sessions after the lane: pg_stat_activity then tells an
    # operator (or a profile) which lane a slow statement or a lock wait belongs to.
    return argv, {"PGAPPNAME": f"smsdispatch-{lane}"}
