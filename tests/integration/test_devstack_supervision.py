"""`make run`'s stack never outlives `smsdispatch run`: SIGKILL it and none of its processes
(API, four worker pools and their prefork children, scheduler, simulator, webhook inbox, private
Redis) is left; the next `make run` of the checkout starts cleanly, refuses to start beside a
live one, and stops what a killed one left behind when even its watchdog is gone."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest

from devstack.supervise import read_state, stack_pids, stop_stack
from tests.support.make_run import STOPPED, MakeRun, checkout, user_env
from tests.support.services import backend, free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(backend() == "postgres", reason="make run uses its own SQLite and Redis"),
]


def _ready(run: MakeRun) -> None:
    line = run.wait_for("ready in", 600)
    assert line and run.wait_for("Ctrl-C stops everything", 10), run.tail()


def _stack(run: MakeRun, tokens: list[str]) -> tuple[psutil.Process, list[psutil.Process], str]:
    """The supervisor, every process under it, and the stack's id (added to ``tokens``)."""
    supervisor = run.supervisor()
    state = read_state(os.path.join(run.cwd, "var", "run", "stack.json"))
    assert state["pid"] == supervisor.pid
    tokens.append(str(state["token"]))
    return supervisor, supervisor.children(recursive=True), str(state["token"])


def _running(procs: list[psutil.Process]) -> list[str]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(f"{p.pid} {' '.join(p.cmdline())[:100]}")
        except psutil.NoSuchProcess:
            continue
    return out


def _gone_within(procs: list[psutil.Process], token: str, timeout: float) -> float:
    started = time.monotonic()
    while _running(procs) or stack_pids(token):
        if time.monotonic() - started > timeout:
            left = _running(procs) + [str(p) for p in stack_pids(token)]
            raise AssertionError(f"still running after {timeout} s: {left}")
        time.sleep(0.1)
    return time.monotonic() - started


@pytest.fixture
def tokens() -> Iterator[list[str]]:
    """The ids of the stacks a test started: whatever a failed test left is stopped."""
    seen: list[str] = []
    yield seen
    for token in seen:
        stop_stack(token, (), grace_s=5)


@pytest.mark.timeout(900)
def test_a_killed_supervisor_leaves_nothing_and_the_next_run_starts(
    tmp_path: str, tokens: list[str]
) -> None:
    clone = os.path.join(str(tmp_path), "smsdispatch")
    checkout(clone)
    port = free_port()
    env = user_env(port)
    api = f"http://127.0.0.1:{port}/readyz"

    first = MakeRun(clone, env)
    try:
        _ready(first)
        supervisor, procs, token = _stack(first, tokens)
        names = " ".join(" ".join(p.cmdline()) for p in procs)
        for part in ("redis-server", "simulator", "webhook_inbox", "cli api", "scheduler"):
            assert part in names, names
        for lane in ("priority", "bulk", "dlr", "webhooks"):
            assert f"--hostname={lane}@" in names, names
        assert len(procs) >= 14, names  # with 5 prefork children and the watchdog

        # A second `make run` beside the live one refuses, and leaves it alone.
        beside = MakeRun(clone, env)
        refused = beside.wait_for("already running", 120)
        assert refused and f"pid {supervisor.pid}" in refused, beside.tail()
        assert beside.proc.wait(30) != 0
        assert httpx.get(api, timeout=5).status_code == 200

        supervisor.send_signal(signal.SIGKILL)
        took = _gone_within(procs, token, timeout=20)
        print(f"\nall {len(procs)} processes gone {took:.1f} s after SIGKILL of smsdispatch run")
        assert first.proc.wait(10) != 0  # make reports its command's death
    finally:
        first.interrupt()

    # The next `make run` starts cleanly: nothing was left for it to stop.
    second = MakeRun(clone, env)
    try:
        _ready(second)
        assert not any("left running" in line for line in second.output), second.tail()
        assert httpx.get(api, timeout=5).status_code == 200
        supervisor, procs, token = _stack(second, tokens)
        # Worst case: a hung API (stopped) and the watchdog killed with the supervisor. The
        # parent-death SIGTERM waits, pending, and the API keeps the port.
        api_proc = next(p for p in supervisor.children() if "api" in p.cmdline())
        watchdog = next(p for p in supervisor.children() if "devstack.supervise" in p.cmdline())
        api_proc.send_signal(signal.SIGSTOP)
        watchdog.send_signal(signal.SIGKILL)
        supervisor.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 20
        while stack_pids(token) != {api_proc.pid} and time.monotonic() < deadline:
            time.sleep(0.1)
        assert stack_pids(token) == {api_proc.pid}
        second.proc.wait(10)
    finally:
        second.interrupt()

    third = MakeRun(clone, env)
    try:
        _ready(third)
        assert any("stopped 1 process(es) left running" in line for line in third.output), (
            third.tail()
        )
        assert not _running([api_proc])
        assert httpx.get(api, timeout=5).status_code == 200
        _, procs, token = _stack(third, tokens)
    finally:
        assert third.interrupt() in STOPPED, third.tail()
    _gone_within(procs, token, timeout=20)  # and Ctrl-C stops everything too
