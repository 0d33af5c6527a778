"""Child processes that never outlive the process that started them (``smsdispatch run``).

Each child runs in a session of its own, so Ctrl-C in the terminal reaches only the supervisor,
which stops the children in order. That also means nothing stops them when the supervisor is
killed outright (SIGKILL, the OOM killer, a CI timeout), so three layers do, each covering what
the one before cannot:

1. **Parent-death signal.** Each child asks the kernel (Linux ``PR_SET_PDEATHSIG``) for SIGTERM
   when the supervisor dies, and shuts down as it would on Ctrl-C, taking its own children (a
   Celery pool's prefork processes, the API's processes) with it. The signal reaches only the
   direct children, and only those that act on SIGTERM.
2. **Watchdog.** A small process in a session of its own holds the read end of a pipe whose
   write end only the supervisor holds. When the supervisor dies, by any means, the pipe reads
   end-of-file and the watchdog stops every process of the stack, grandchildren included:
   SIGTERM, then SIGKILL after a grace period.
3. **State file.** ``<run dir>/stack.json`` names the stack, and the supervisor holds a lock on
   ``<run dir>/stack.lock`` while it lives (the kernel drops it when the process dies). The next
   ``smsdispatch run`` of the same checkout refuses to start beside a live supervisor, and stops
   whatever a dead one left behind (if its watchdog died too) before it starts.

Every process of a stack carries ``SMSDISPATCH_DEVSTACK_ID`` in its environment, inherited by
its children: that is how the watchdog and the next run find all of them (``/proc``), and never
anything else. Without ``/proc`` the recorded process groups are used instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import functools
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import structlog

ID_VAR = "SMSDISPATCH_DEVSTACK_ID"
GRACE_S = 10.0  # SIGTERM → SIGKILL, for a process that does not stop by itself
_PR_SET_PDEATHSIG = 1


class StackRunning(Exception):
    """Another supervisor of the same checkout is alive."""

    def __init__(self, state: Mapping[str, Any]) -> None:
        self.state = dict(state)
        pid = self.state.get("pid", "?")
        where = f", API {self.state['api']}" if self.state.get("api") else ""
        super().__init__(
            f"smsdispatch run is already running for this checkout (pid {pid}{where}); "
            f"stop it first: Ctrl-C in its terminal, or kill {pid}"
        )


@dataclass
class Child:
    """One started process and the log it writes to."""

    name: str
    proc: subprocess.Popen[bytes]
    log: IO[bytes]


@dataclass
class Supervisor:
    """Starts the stack's processes so that none outlives it (see the module docstring)."""

    run_dir: str
    grace_s: float = GRACE_S
    watchdog_log: str = ""  # default: watchdog.log in run_dir
    info: dict[str, Any] = field(default_factory=dict)  # shown by a second run (e.g. the API)
    children: list[Child] = field(default_factory=list)
    token: str = field(default_factory=lambda: secrets.token_hex(8))
    _lock: IO[str] | None = None
    _watchdog: subprocess.Popen[bytes] | None = None
    _pipe: int | None = None

    @property
    def state_path(self) -> str:
        """The state file of this checkout's stack."""
        return os.path.join(self.run_dir, "stack.json")

    def start(self) -> int:
        """Take the checkout's lock, stop a dead stack's leftovers, start the watchdog.

        Returns how many leftover processes were stopped. Raises :class:`StackRunning` when
        another supervisor holds the lock.
        """
        os.makedirs(self.run_dir, exist_ok=True)
        lock = open(os.path.join(self.run_dir, "stack.lock"), "a+")  # noqa: SIM115 - held open
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise StackRunning(read_state(self.state_path)) from None
        self._lock = lock
        leftovers = 0
        old = read_state(self.state_path)
        if old.get("token"):
            leftovers = stop_stack(old["token"], old.get("groups", {}).values(), self.grace_s)
        self._start_watchdog()
        self._save()
        return leftovers

    def spawn(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], log_path: str
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in a session of its own, tied to this process's life."""
        log = open(log_path, "ab")  # noqa: SIM115 - lives with the child
        proc = subprocess.Popen(
            list(argv),
            env={**env, ID_VAR: self.token},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(os.getpid()),
        )
        self.children.append(Child(name, proc, log))
        if self._pipe is not None:
            with contextlib.suppress(OSError):
                os.write(self._pipe, f"{proc.pid}\n".encode())
        self._save()
        return proc

    def exited(self) -> list[Child]:
        """The children that have exited."""
        return [c for c in self.children if c.proc.poll() is not None]

    def stop(self) -> None:
        """Stop every child, last started first, then the watchdog; release the checkout."""
        for child in reversed(self.children):
            if child.proc.poll() is None:
                _signal_group(child.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        for child in reversed(self.children):
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(child.proc.pid, signal.SIGKILL)
                child.proc.wait()
            child.log.close()
        # Whatever left its group (or outlived its group's leader) carries the stack's id.
        stop_stack(self.token, (), self.grace_s)
        if self._pipe is not None:
            os.close(self._pipe)  # end-of-file: the watchdog finds nothing left and exits
            self._pipe = None
        if self._watchdog is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._watchdog.wait(5)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.state_path)
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _start_watchdog(self) -> None:
        read, write = os.pipe()  # both ends non-inheritable: no other child holds the write end
        path = self.watchdog_log or os.path.join(self.run_dir, "watchdog.log")
        log = open(path, "ab")  # noqa: SIM115 - closed below: the child has its own copy
        try:
            self._watchdog = subprocess.Popen(
                [sys.executable, "-m", __name__, self.token, str(self.grace_s)],
                stdin=read,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # not in the group a terminal or a CI job signals
            )
        finally:
            os.close(read)
            log.close()
        self._pipe = write

    def _save(self) -> None:
        state = {
            "pid": os.getpid(),
            "token": self.token,
            "watchdog": self._watchdog.pid if self._watchdog else None,
            "groups": {c.name: c.proc.pid for c in self.children},
            **self.info,
        }
        tmp = self.state_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(state, fh)
        os.replace(tmp, self.state_path)


def read_state(path: str) -> dict[str, Any]:
    """The state file's content; empty when there is none or it is unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            state = json.load(fh)
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def die_with_parent(parent: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking the kernel for SIGTERM when ``parent`` dies (Linux only).

    The signal fires when the parent *thread* that forked the child exits: spawn from the
    main thread. The C library is loaded here, in the parent; the child only calls it.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = _libc().prctl

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: no signal would come
            os._exit(1)

    return preexec


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def stack_pids(token: str) -> set[int]:
    """Live processes carrying the stack id ``token`` (empty where ``/proc`` is missing)."""
    needle = f"{ID_VAR}={token}".encode()
    me = os.getpid()
    found: set[int] = set()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                env = fh.read()
        except OSError:  # gone, or another user's
            continue
        # A zombie's environment reads empty: exited processes are not counted.
        if needle in env.split(b"\0"):
            found.add(int(entry))
    return found


def stop_stack(token: str, groups: Iterable[int], grace_s: float = GRACE_S) -> int:
    """Stop every process of stack ``token``: SIGTERM, then SIGKILL after ``grace_s``.

    ``groups`` (the children's process groups) are used only where ``/proc`` cannot tell the
    stack's processes. Returns how many processes (or groups) were found alive.
    """
    use_proc = os.path.isdir("/proc")
    recorded = [g for g in groups if g > 1]
    send: Callable[[int, int], None] = _signal if use_proc else _signal_group

    def alive() -> set[int]:
        if use_proc:
            return stack_pids(token)
        return {g for g in recorded if _group_alive(g)}

    found = alive()
    if not found:
        return 0
    for sig in (signal.SIGTERM, signal.SIGCONT):  # a stopped process handles SIGTERM once woken
        for pid in found:
            send(pid, sig)
    deadline = time.monotonic() + grace_s
    while (left := alive()) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in left:
        send(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    return len(found)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def watch(token: str, grace_s: float, pipe: IO[bytes]) -> int:
    """The watchdog: read process groups from ``pipe`` until end-of-file, then stop the stack."""
    from dispatcher.ops.logs import configure

    groups = [int(line) for line in pipe if line.strip().isdigit()]
    started = time.monotonic()
    found = stop_stack(token, groups, grace_s)
    if found:  # the supervisor died without stopping its children
        configure("INFO", "json")
        log = structlog.get_logger(component="devstack")
        log.warning(
            "devstack.supervisor_gone", stopped=found, seconds=round(time.monotonic() - started, 2)
        )
    return 0


if __name__ == "__main__":
    for _sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(_sig, signal.SIG_IGN)
    sys.exit(watch(sys.argv[1], float(sys.argv[2]), sys.stdin.buffer))
