"""A private ``redis-server`` on a free loopback port, with its append-only file in a temp dir.

Tests and the chaos run stop, kill and restart it; the shared server on 6379 is never touched.

Persistence is ``appendonly yes`` with ``appendfsync everysec``: what production should run
(``always`` costs an fsync per publish). A SIGKILL may lose the last second of writes, which is
exactly the case the scheduler's orphan audit exists for (queued messages whose task vanished are
re-published), so the chaos run kills it rather than shutting it down cleanly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from types import TracebackType

import redis

from devstack.ports import free_port


class PrivateRedis:
    """``with PrivateRedis() as r:``; ``r.url`` is ``redis://127.0.0.1:<port>/0``."""

    def __init__(
        self, fsync: str = "everysec", password: str | None = None, args: Sequence[str] = ()
    ) -> None:
        """``password``: ``requirepass`` (and ``masterauth``, for a replica); ``args``: more
        ``redis-server`` options (``--replicaof`` …)."""
        self.port = free_port()
        self.fsync = fsync
        self.password = password
        self.args = list(args)
        self._dir = tempfile.TemporaryDirectory(prefix="smsd-redis-")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL of logical database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> PrivateRedis:
        self.start()
        return self

    def __exit__(
        self,
        _t: type[BaseException] | None,
        _e: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Kill the server and remove its files."""
        self.kill()
        self._dir.cleanup()

    def start(self, timeout: float = 20.0) -> float:
        """Start the server (on the same port and files as before); seconds until it answers."""
        started = time.monotonic()
        log = open(os.path.join(self._dir.name, "redis.log"), "ab")  # noqa: SIM115
        self._proc = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                self._dir.name,
                "--appendonly",
                "yes",
                "--appendfsync",
                self.fsync,
                "--save",
                "",
                "--protected-mode",
                "yes",
                *(
                    ["--requirepass", self.password, "--masterauth", self.password]
                    if self.password
                    else []
                ),
                *self.args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        client = redis.Redis(
            host="127.0.0.1", port=self.port, password=self.password, socket_timeout=1
        )
        try:
            while time.monotonic() - started < timeout:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self._proc.returncode}")
                try:
                    if client.ping():
                        return time.monotonic() - started
                except redis.RedisError:
                    time.sleep(0.05)
        finally:
            client.close()
        raise RuntimeError("redis-server did not answer in time")

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    def kill(self) -> None:
        """SIGKILL (a crash: writes of the last fsync interval may be lost)."""
        self._stop(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM (a clean shutdown: the append-only file is flushed)."""
        self._stop(signal.SIGTERM)

    def _stop(self, sig: int) -> None:
        p, self._proc = self._proc, None
        if p is None or p.poll() is not None:
            return
        p.send_signal(sig)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.poll() is None
