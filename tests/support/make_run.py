"""`make run` as a new user runs it: in a fresh checkout, its output read line by line.

``SMSD_HELLO_FROM_WORKTREE=1`` copies the working tree (tracked and untracked files, minus the
ignored ones) instead of cloning HEAD, to try uncommitted changes the same way.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time

import psutil

from tests.support.stack import ROOT

# The line `smsdispatch run` prints once everything is up (devstack/run.py).
READY = re.compile(
    r"ready in (?P<total>[\d.]+) s: Redis and simulator (?P<redis>[\d.]+) s, "
    r"migrations and demo account (?P<migrations>[\d.]+) s, processes up (?P<processes>[\d.]+) s"
)
# make's exit status after Ctrl-C: make itself is interrupted too (killed by SIGINT, or 2).
STOPPED = (0, -signal.SIGINT, 2, 130)
# scripts/install-venv.sh's last line.
INSTALLED = re.compile(r"installed \S+ in (?P<seconds>[\d.]+) s \((?P<parts>[^)]*)\)")


def checkout(dest: str) -> None:
    """A fresh clone of the repository (or a copy of the working tree, see the docstring)."""
    if os.environ.get("SMSD_HELLO_FROM_WORKTREE"):
        _copy_worktree(dest)
    else:
        subprocess.run(["git", "clone", "--quiet", ROOT, dest], check=True)


def user_env(port: int) -> dict[str, str]:
    """This environment without the test suite's own settings, with the API on ``port``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REDIS_URL", "DATABASE_URL", "VIRTUAL_ENV", "PYTHONPATH")
        and not k.startswith("SMSDISPATCH_")
    }
    env["SMSDISPATCH_API_PORT"] = str(port)
    return env


class MakeRun:
    """One ``make run`` in ``cwd``, in a session of its own; its output kept in ``output``."""

    def __init__(self, cwd: str, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            ["make", "run"],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.output: list[str] = []
        self.seen: dict[str, float] = {}  # first line matching a `wait_for` marker → when
        # A reader thread: select() on the pipe would miss lines already in Python's buffer.
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            self._lines.put(raw.decode(errors="replace"))
        self._lines.put(None)

    def wait_for(self, marker: str, timeout: float) -> str | None:
        """The first line (from here on) containing ``marker``; None if make exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                self._lines.put(None)  # stays at end-of-file for later calls
                return None
            self.output.append(line)
            if marker in line:
                self.seen.setdefault(marker, time.monotonic())
                return line
        raise AssertionError(f"make run printed no {marker!r}:\n{self.tail()}")

    def tail(self, n: int = 60) -> str:
        """The last lines of the output, for an assertion's message."""
        return "".join(self.output[-n:])

    def supervisor(self) -> psutil.Process:
        """The ``smsdispatch run`` process make started."""
        for child in psutil.Process(self.proc.pid).children():
            if "run" in child.cmdline() and any("smsdispatch" in a for a in child.cmdline()):
                return child
        raise AssertionError(f"no `smsdispatch run` under make:\n{self.tail()}")

    def cpu_profile(self) -> str:
        """CPU seconds each part of the stack has used so far, largest first (a profile of its
        start when called once it is ready)."""
        supervisor = self.supervisor()
        parts: dict[str, float] = {}
        for proc in [supervisor, *supervisor.children(recursive=True)]:
            try:
                cmd = " ".join(proc.cmdline())
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            part = next((name for key, name in _PARTS if key in cmd), "supervisor")
            if part == "worker pools" and proc.ppid() != supervisor.pid:
                part = "prefork children"
            parts[part] = parts.get(part, 0.0) + times.user + times.system
        ranked = sorted(parts.items(), key=lambda kv: -kv[1])
        total = sum(parts.values())
        return f"{total:.1f} s: " + ", ".join(f"{name} {cpu:.2f}" for name, cpu in ranked)

    def interrupt(self, timeout: float = 30) -> int:
        """Ctrl-C, as in a terminal (the whole foreground group); make's exit status."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
            raise


# Which part of the stack a command line belongs to (the first key found in it).
_PARTS = (
    ("celery", "worker pools"),
    ("cli api", "API"),
    ("cli scheduler", "scheduler"),
    ("cli exporter", "exporter"),
    ("-m simulator", "simulator"),
    ("webhook_inbox", "webhook inbox"),
    ("redis-server", "Redis"),
    ("devstack.supervise", "watchdog"),
)


def _copy_worktree(dest: str) -> None:
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for rel in filter(None, (f.decode() for f in files)):
        src = os.path.join(ROOT, rel)
        if os.path.isfile(src):
            os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
            shutil.copy2(src, os.path.join(dest, rel))
