"""devstack/supervise.py with real processes: what a killed supervisor leaves is stopped by
each layer (parent-death signal, watchdog, the next start), and a live one is not disturbed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from devstack.supervise import ID_VAR, StackRunning, Supervisor, read_state, stack_pids

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc")

# A child that starts a grandchild (in its group, like a prefork pool) and, like Celery, stops
# both on SIGTERM; and a child that ignores SIGTERM (a hung process) with a grandchild that does
# too. The supervisor prints their pids, then waits to be killed.
SUPERVISOR = textwrap.dedent(
    """
    import json, os, sys, time
    from devstack.supervise import Supervisor, read_state

    POLITE = '''
    import os, signal, sys, time
    kid = os.fork()
    if kid == 0:
        time.sleep(120)
        sys.exit(0)
    def stop(*_):
        os.kill(kid, signal.SIGTERM)
        os.waitpid(kid, 0)
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    print(kid, flush=True)
    time.sleep(120)
    '''
    STUBBORN = '''
    import os, signal, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    kid = os.fork()
    if kid:  # the parent only: the child's 0, printed first, was read as a pid
        print(kid, flush=True)
    time.sleep(120)
    '''
    run_dir, grace = sys.argv[1], float(sys.argv[2])
    sup = Supervisor(run_dir, grace_s=grace)
    sup.start()
    pids = {}
    for name, code in (("polite", POLITE), ("stubborn", STUBBORN)):
        log = os.path.join(run_dir, name + ".out")
        proc = sup.spawn(name, [sys.executable, "-c", code], dict(os.environ), log)
        pids[name] = proc.pid
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            text = open(log).read().split()
            if text:
                pids[name + "-child"] = int(text[0])
                break
            time.sleep(0.02)
    pids["watchdog"] = read_state(sup.state_path)["watchdog"]
    print(json.dumps(pids), flush=True)
    time.sleep(120)
    """
)


def _start_supervisor(
    run_dir: Path, grace: float
) -> tuple[subprocess.Popen[str], dict[str, psutil.Process]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR, str(run_dir), str(grace)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, "the supervisor printed nothing"
    return proc, {name: psutil.Process(pid) for name, pid in json.loads(line).items()}


def _wait_gone(procs: list[psutil.Process], timeout: float) -> tuple[list[int], float]:
    started = time.monotonic()
    while True:
        alive = [p.pid for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not alive or time.monotonic() - started > timeout:
            return alive, time.monotonic() - started
        time.sleep(0.05)


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait(5)


def test_the_watchdog_stops_the_whole_tree_of_a_killed_supervisor(tmp_path: Path) -> None:
    sup, procs = _start_supervisor(tmp_path, grace=1.0)
    token = read_state(str(tmp_path / "stack.json"))["token"]
    stack = [p for name, p in procs.items() if name != "watchdog"]
    assert stack_pids(token) == {p.pid for p in stack}
    _kill(sup)
    # The stubborn pair ignores SIGTERM: killed after the 1 s grace period.
    alive, took = _wait_gone([*stack, procs["watchdog"]], timeout=10)
    assert not alive, f"still running {took:.1f} s after the supervisor was killed: {alive}"
    assert not stack_pids(token)
    event = json.loads((tmp_path / "watchdog.log").read_text().splitlines()[-1])
    assert event["event"] == "devstack.supervisor_gone"
    # The polite pair may have stopped on its parent-death signal before the watchdog looked.
    assert 2 <= event["stopped"] <= 4, event


def test_the_parent_death_signal_stops_children_without_the_watchdog(tmp_path: Path) -> None:
    sup, procs = _start_supervisor(tmp_path, grace=1.0)
    procs["watchdog"].kill()
    _kill(sup)
    alive, _ = _wait_gone([procs["polite"], procs["polite-child"]], timeout=10)
    assert not alive, "the polite child did not stop on its parent-death SIGTERM"
    # SIGTERM is all the kernel sends: a child ignoring it survives, for the next start to stop.
    alive, _ = _wait_gone([procs["stubborn"]], timeout=0.5)
    assert alive == [procs["stubborn"].pid]
    again = Supervisor(str(tmp_path), grace_s=1.0)
    try:
        assert again.start() == 2  # the stubborn child and its child
        alive, _ = _wait_gone([procs["stubborn"], procs["stubborn-child"]], timeout=5)
        assert not alive
    finally:
        again.stop()


def test_a_second_supervisor_refuses_to_start_beside_a_live_one(tmp_path: Path) -> None:
    first = Supervisor(str(tmp_path), info={"api": "http://127.0.0.1:8080"})
    first.start()
    try:
        child = first.spawn(
            "sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], {}, os.devnull
        )
        with pytest.raises(StackRunning) as refused:
            Supervisor(str(tmp_path)).start()
        assert f"pid {os.getpid()}" in str(refused.value)
        assert "http://127.0.0.1:8080" in str(refused.value)
        assert child.poll() is None, "the refused start touched the live stack"
    finally:
        first.stop()
    assert child.returncode is not None
    assert not (tmp_path / "stack.json").exists()
    second = Supervisor(str(tmp_path))
    assert second.start() == 0
    second.stop()


def test_stop_ends_children_and_the_watchdog(tmp_path: Path) -> None:
    sup = Supervisor(str(tmp_path), grace_s=1.0)
    sup.start()
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ignoring', flush=True); time.sleep(60)"
    )
    out = tmp_path / "stubborn.out"
    stubborn = sup.spawn("stubborn", [sys.executable, "-c", code], {}, str(out))
    deadline = time.monotonic() + 20
    while "ignoring" not in out.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    watchdog = psutil.Process(read_state(sup.state_path)["watchdog"])
    env = psutil.Process(stubborn.pid).environ()
    assert env[ID_VAR] == sup.token
    started = time.monotonic()
    sup.stop()
    assert stubborn.returncode == -signal.SIGKILL  # after the grace period
    assert time.monotonic() - started < 5
    assert not watchdog.is_running()  # stop() closed its pipe and waited for it
    assert not stack_pids(sup.token)
