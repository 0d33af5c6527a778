"""A Redis primary, its replica and three Sentinels on free loopback ports (Debian's binaries).

The failover test (tests/integration/test_sentinel_failover.py) and ``make chaos`` SIGKILL the
primary and measure how long the Sentinels take to promote the replica. Every server and every
Sentinel has a password (the data servers and the Sentinels different ones), so the whole
``redis+sentinel://…?sentinel_password=…`` path is exercised.

Sentinel timings are shorter than production's (``down-after-milliseconds`` 30 s by default) so
a run does not wait half a minute; the time to recover is that setting plus an election, which
is why every figure reported with it names the setting.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

import redis

from chaos.redis_server import PrivateRedis
from devstack.ports import free_port

T = TypeVar("T")
MASTER = "smsd"
PASSWORD = "data-secret"
SENTINEL_PASSWORD = "sentinel-secret"


class SentinelCluster:
    """``with SentinelCluster() as c:``; ``c.url`` is the ``redis+sentinel://`` URL to use."""

    def __init__(
        self, down_after_ms: int = 1000, failover_timeout_ms: int = 5000, fsync: str = "everysec"
    ) -> None:
        """``fsync``: the data servers' ``appendfsync`` (see :class:`PrivateRedis`)."""
        self.fsync = fsync
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.servers: list[PrivateRedis] = []
        self.sentinel_ports = [free_port() for _ in range(3)]
        self._sentinels: list[subprocess.Popen[bytes]] = []
        self._dir = tempfile.TemporaryDirectory(prefix="smsd-sentinel-")

    @property
    def url(self) -> str:
        """What ``REDIS_URL`` is set to: the three Sentinels, the master name, database 0."""
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return (
            f"redis+sentinel://:{PASSWORD}@{hosts}/{MASTER}/0?sentinel_password={SENTINEL_PASSWORD}"
        )

    def __enter__(self) -> SentinelCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        _t: type[BaseException] | None,
        _e: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self, timeout: float = 30.0) -> None:
        """Start the primary, the replica (in sync) and the Sentinels (agreeing on both)."""
        primary = PrivateRedis(self.fsync, password=PASSWORD)
        primary.start()
        self.servers.append(primary)
        replica = PrivateRedis(
            self.fsync, password=PASSWORD, args=["--replicaof", "127.0.0.1", str(primary.port)]
        )
        replica.start()
        self.servers.append(replica)
        self._wait(
            lambda: self._info(replica, "master_link_status") == "up", timeout, "replica in sync"
        )
        for port in self.sentinel_ports:
            self._sentinels.append(self._start_sentinel(port, primary.port))
        self._wait(lambda: self._settled(primary.port), timeout, "Sentinels agree")

    def _start_sentinel(self, port: int, primary_port: int) -> subprocess.Popen[bytes]:
        conf = os.path.join(self._dir.name, f"sentinel-{port}.conf")
        with open(conf, "w", encoding="utf-8") as fh:
            fh.write(
                f"port {port}\nbind 127.0.0.1\ndir {self._dir.name}\n"
                f"requirepass {SENTINEL_PASSWORD}\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {primary_port} 2\n"
                f"sentinel auth-pass {MASTER} {PASSWORD}\n"
                f"sentinel sentinel-pass {SENTINEL_PASSWORD}\n"
                f"sentinel down-after-milliseconds {MASTER} {self.down_after_ms}\n"
                f"sentinel failover-timeout {MASTER} {self.failover_timeout_ms}\n"
                f"sentinel parallel-syncs {MASTER} 1\n"
            )
        log = open(os.path.join(self._dir.name, f"sentinel-{port}.log"), "ab")  # noqa: SIM115
        p = subprocess.Popen(
            ["redis-sentinel", conf], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        return p

    # -- what the Sentinels say ---------------------------------------------------------------
    def _sentinel(self, port: int) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=port, password=SENTINEL_PASSWORD, socket_timeout=1,
            decode_responses=True,
        )  # fmt: skip

    def masters_seen(self) -> list[int | None]:
        """The primary's port according to each Sentinel (None: no answer)."""
        out: list[int | None] = []
        for port in self.sentinel_ports:
            client = self._sentinel(port)
            try:
                addr = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)
                out.append(int(addr[1]) if addr else None)
            except redis.RedisError:
                out.append(None)
            finally:
                client.close()
        return out

    def _settled(self, primary_port: int) -> bool:
        for port in self.sentinel_ports:
            client = self._sentinel(port)
            try:
                m = client.execute_command("SENTINEL", "MASTER", MASTER)
                info = dict(zip(m[::2], m[1::2], strict=False)) if isinstance(m, list) else m
                if int(info["port"]) != primary_port or "s_down" in info["flags"]:
                    return False
                if int(info["num-slaves"]) < 1 or int(info["num-other-sentinels"]) < 2:
                    return False
            except (redis.RedisError, KeyError, ValueError):
                return False
            finally:
                client.close()
        return True

    def _info(self, server: PrivateRedis, field: str) -> str | None:
        client = redis.Redis(
            host="127.0.0.1", port=server.port, password=PASSWORD, socket_timeout=1,
            decode_responses=True,
        )  # fmt: skip
        try:
            value = client.info("replication").get(field)
            return None if value is None else str(value)
        except redis.RedisError:
            return None
        finally:
            client.close()

    def server(self, port: int) -> PrivateRedis:
        """The data server listening on ``port``."""
        return next(s for s in self.servers if s.port == port)

    def primary(self) -> PrivateRedis:
        """The data server the Sentinels (the majority of them) call the primary."""
        seen = [p for p in self.masters_seen() if p is not None]
        port = max(set(seen), key=seen.count)
        return self.server(port)

    def client(self, server: PrivateRedis) -> redis.Redis:
        """A direct client of one data server (for checks on a given node)."""
        return redis.Redis(host="127.0.0.1", port=server.port, password=PASSWORD, socket_timeout=2)

    # -- faults --------------------------------------------------------------------------------
    def kill_primary(self) -> PrivateRedis:
        """SIGKILL the current primary; returns it (stopped, restartable)."""
        victim = self.primary()
        victim.kill()
        return victim

    def wait_failover(self, old: PrivateRedis, timeout: float = 60.0) -> tuple[PrivateRedis, float]:
        """Wait until every Sentinel names another primary and it accepts writes; returns it
        and the seconds waited."""
        started = time.monotonic()

        def promoted() -> PrivateRedis | None:
            seen = self.masters_seen()
            if None in seen or len(set(seen)) != 1 or seen[0] == old.port:
                return None
            new = self.server(int(seen[0] or 0))
            return new if self._info(new, "role") == "master" else None

        new = self._wait(promoted, timeout, "a new primary")
        return new, time.monotonic() - started

    def rejoin(self, server: PrivateRedis, timeout: float = 60.0) -> float:
        """Restart a killed server; the Sentinels turn it into a replica of the new primary.
        Returns seconds until it is a replica in sync."""
        started = time.monotonic()
        server.start()
        self._wait(
            lambda: (
                self._info(server, "role") == "slave"
                and self._info(server, "master_link_status") == "up"
            ),
            timeout,
            "the old primary back as a replica",
        )
        return time.monotonic() - started

    @staticmethod
    def _wait(pred: Callable[[], T | None], timeout: float, what: str) -> T:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = pred()
            if got:
                return got
            time.sleep(0.05)
        raise RuntimeError(f"Sentinel cluster: timed out waiting for {what}")

    def logs(self) -> str:
        """The Sentinels' logs (for failures)."""
        out = []
        for name in sorted(os.listdir(self._dir.name)):
            if name.endswith(".log"):
                with open(os.path.join(self._dir.name, name), errors="replace") as fh:
                    out.append(f"==== {name}\n{fh.read()[-4000:]}")
        return "\n".join(out)

    def close(self) -> None:
        """Stop every Sentinel and server (SIGKILL: nothing here needs to be kept)."""
        for p in self._sentinels:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)
        self._sentinels.clear()
        for s in self.servers:
            s.kill()
            s.close()
        self.servers.clear()
        self._dir.cleanup()
