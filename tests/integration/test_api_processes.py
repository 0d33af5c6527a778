"""Several API processes (``SMSDISPATCH_API_WORKERS`` > 1): real processes, real sockets.

Each process owns a ``SO_REUSEPORT`` socket, so the kernel spreads connections across them
(uvicorn's shared socket let one process accept nearly all of them); the parent restarts a
process that dies, stops them all on SIGTERM, and refuses a port already in use.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from tests.support.stack import ROOT, Stack, running_stack, wait_until

pytestmark = pytest.mark.integration

PROCESSES = 2
CLIENTS = 24  # all on one process by chance: 2 × 2^-24


def _api_processes(stack: Stack) -> list[psutil.Process]:
    """The serving children of the API's parent (not multiprocessing's resource tracker)."""
    parent = psutil.Process(stack.procs["api"].pid)
    return [c for c in parent.children() if "resource_tracker" not in " ".join(c.cmdline())]


def _established(proc: psutil.Process, port: int) -> int:
    return sum(
        1
        for c in proc.net_connections(kind="tcp")
        if c.laddr and c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


def test_connections_spread_over_every_process_and_a_dead_one_is_replaced() -> None:
    with running_stack(workers={}, scheduler=False, api_workers=PROCESSES) as stack:
        port = int(stack.api_url.rsplit(":", 1)[1])
        wait_until(lambda: len(_api_processes(stack)) == PROCESSES, 20, what="api processes")
        clients = [httpx.Client(base_url=stack.api_url, timeout=5) for _ in range(CLIENTS)]
        try:
            # Each client keeps its connection open after its answer (keep-alive).
            assert all(c.get("/readyz").status_code == 200 for c in clients)
            per_process = [_established(p, port) for p in _api_processes(stack)]
            assert sum(per_process) >= CLIENTS  # the stack's own readiness client may add one
            assert all(n > 0 for n in per_process), per_process
        finally:
            for c in clients:
                c.close()

        victim = _api_processes(stack)[0]
        victim.kill()
        victim.wait(5)

        def replaced() -> bool:
            pids = [p.pid for p in _api_processes(stack)]
            return len(pids) == PROCESSES and victim.pid not in pids

        wait_until(replaced, 30, what="a new api process")
        ready = stack.api_url + "/readyz"
        wait_until(lambda: httpx.get(ready).status_code == 200, 30, what="ready")
        assert "api.process_died" in stack.log("api")

        # Every process logs as the parent does (structured), the replacement included.
        def started() -> int:
            lines = [json.loads(line) for line in stack.log("api").splitlines() if line.strip()]
            return sum(1 for e in lines if e["event"] == "api.started")

        wait_until(lambda: started() == PROCESSES + 1, 30, what="the new process started")

        # SIGTERM to the parent only (as an orchestrator sends it): every process stops.
        children = _api_processes(stack)
        parent = stack.procs["api"]
        os.kill(parent.pid, signal.SIGTERM)
        assert parent.wait(40) == 0
        _gone, alive = psutil.wait_procs(children, timeout=5)
        assert alive == []


def test_a_port_in_use_stops_the_api_at_once() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMSDISPATCH_")}
        env.update({"PYTHONPATH": ROOT, "SMSDISPATCH_API_WORKERS": str(PROCESSES)})
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "dispatcher.cli", "api", "--port", str(port)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 3, done.stdout + done.stderr
    assert "api.bind_failed" in done.stdout + done.stderr
    assert time.monotonic() - started < 30
