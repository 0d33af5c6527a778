"""Processes of one benchmark scenario: simulator, API, worker pools, scheduler, baseline.

Everything runs on this machine as real processes, like ``tests/support/stack.py`` does, but on
fixed benchmark resources: Redis logical database 14 (flushed per scenario) and the PostgreSQL
database ``smsd_bench`` (dropped, created and migrated per scenario). Each process logs to
``<logdir>/<name>.log``.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import psutil

from devstack.ports import free_port

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
PG_SERVER = os.environ.get("SMSD_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
BENCH_DB = os.environ.get("SMSD_BENCH_DB", "smsd_bench")
REDIS_URL = os.environ.get("SMSD_BENCH_REDIS", "redis://127.0.0.1:6379/14")
DATABASE_URL = f"{PG_SERVER}/{BENCH_DB}"
# The same database through PgBouncer in transaction mode (`scripts/ensure-services.sh
# pgbouncer`), for the processes of a scenario run with `--pgbouncer`; the harness's own
# set-up and queries stay direct.
PGBOUNCER_SERVER = os.environ.get("SMSD_BENCH_PGBOUNCER", "postgresql://postgres@127.0.0.1:6432")
PGBOUNCER_URL = f"{PGBOUNCER_SERVER}/{BENCH_DB}?pooler=pgbouncer"


def wait_until(pred: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll ``pred`` until it returns something truthy; ``TimeoutError`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


# One client for every loopback call: httpx.get() builds a client, and with it a TLS context,
# per call, which turned each polling loop into a busy core (docs/benchmarks.md).
LOCAL = httpx.Client(timeout=30)


def http_ok(url: str) -> bool:
    """Whether ``url`` answers 200 right now."""
    try:
        return LOCAL.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def reset_redis(url: str = REDIS_URL) -> None:
    """Flush the benchmark's Redis logical database."""
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


_template_ready = False


def reset_database(env: dict[str, str]) -> None:
    """Drop and re-create ``smsd_bench`` from a template migrated once per run.

    The template ``smsd_bench_template`` is created and migrated with ``python -m
    dispatcher.cli migrate`` on the first call; each scenario then gets a fresh copy
    (``CREATE DATABASE ... TEMPLATE``), which takes a fraction of a second.
    """
    import psycopg

    global _template_ready
    template = BENCH_DB + "_template"
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        if not _template_ready:
            conn.execute(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{template}"')
            subprocess.run(
                [PY, "-m", "dispatcher.cli", "migrate"],
                env={**env, "DATABASE_URL": f"{PG_SERVER}/{template}"},
                cwd=ROOT,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            _template_ready = True
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DB}" TEMPLATE "{template}"')
        # Start every scenario with nothing left to flush: without this the kernel writes the
        # previous scenario's and the copy's dirty pages ~30 s later (vm.dirty_expire_centisecs),
        # in the middle of the next measurement, and every commit waits behind them.
        conn.execute("CHECKPOINT")
    os.sync()


def db_query(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one query on the benchmark database (short-lived connection)."""
    import psycopg

    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return list(cur.fetchall()) if cur.description else []


# Server processes that serve every database (their share of the benchmark's work cannot be
# told apart from other sessions' on a shared machine, so they are a group of their own).
_PG_SHARED = "postgres (server)"


def postgres_pids(pg: Any = None) -> dict[str, list[int]]:
    """PostgreSQL processes by what they serve: ``postgres`` the backends of the benchmark
    database (sessions, autovacuum workers on it), ``postgres (server)`` the background
    processes (WAL writer, checkpointer, background writer, launchers). Backends of other
    databases (other users of the server) are in neither.

    ``pg``: an open psycopg connection to ask on (a sampler keeps one, connected to another
    database so as not to count itself); else a short-lived one to ``postgres``.
    """
    import psycopg

    sql = "SELECT pid, datname, backend_type FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
    try:
        if pg is not None:
            rows = pg.execute(sql).fetchall()
        else:
            with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
                rows = conn.execute(sql).fetchall()
    except psycopg.Error:
        return {}
    out: dict[str, list[int]] = {}
    for pid, datname, backend_type in rows:
        if datname == BENCH_DB:
            out.setdefault("postgres", []).append(int(pid))
        elif datname is None and backend_type != "client backend":
            out.setdefault(_PG_SHARED, []).append(int(pid))
    # The postmaster is not in pg_stat_activity: the parent of any server process.
    with contextlib.suppress(psutil.Error, StopIteration):
        first = next(iter(out.get(_PG_SHARED) or out.get("postgres") or []))
        out.setdefault(_PG_SHARED, []).append(psutil.Process(first).ppid())
    return out


class WalCounter:
    """WAL written for the benchmark database from construction on.

    ``pg_walinspect`` lists the records between two positions; those with a block of the
    benchmark database count (their full-page images apart: a page's first change after a
    checkpoint logs the whole page, and on a shared server any session's ``CHECKPOINT``
    causes them). Commit records name no database and are left out (a few dozen bytes per
    transaction, and transactions here carry hundreds of messages). A temporary physical
    replication slot holds the WAL from the start, so the records are read once, at
    :meth:`stop`, after the measurement: reading them every half second during it would
    take CPU from the processes measured. Without a slot (none free, ``wal_level = minimal``)
    call :meth:`step` often, as :class:`CpuMeter` does: other sessions' checkpoints recycle
    the files behind it, and a step that finds them gone marks the figure incomplete. The
    queries run from a database of their own, ``<bench db>_meter``, so their backend is not
    counted as the benchmark's.
    """

    def __init__(self) -> None:
        import psycopg

        meter_db = BENCH_DB + "_meter"
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
            if not conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (meter_db,)
            ).fetchall():
                conn.execute(f'CREATE DATABASE "{meter_db}"')
        self._conn = psycopg.connect(f"{PG_SERVER}/{meter_db}", autocommit=True)
        self._conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        oid = self._conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (BENCH_DB,))
        self._pattern = f"%/{oid.fetchall()[0][0]}/%"
        # Temporary: dropped with this connection, so a benchmark that dies keeps no WAL.
        try:
            self._conn.execute(
                "SELECT pg_create_physical_replication_slot(%s, true, true)",
                (f"smsd_bench_wal_{os.getpid()}",),
            )
            self.reserved = True
        except psycopg.Error:
            self.reserved = False
        self.start = self._pos = self._lsn("pg_current_wal_flush_lsn()")
        self.bench = 0
        self.fpi = 0
        self.complete = True
        self.error: str | None = None

    def _lsn(self, expr: str) -> int:
        return int(self._conn.execute(f"SELECT {expr} - '0/0'::pg_lsn").fetchall()[0][0])

    def step(self) -> None:
        """Count the records flushed since the last step (only flushed WAL can be read)."""
        import psycopg

        if not self.complete:
            return
        end = self._lsn("pg_current_wal_flush_lsn()")
        if end <= self._pos:
            return
        try:
            row = self._conn.execute(
                "SELECT coalesce(sum(record_length), 0), coalesce(sum(fpi_length), 0) "
                "FROM pg_get_wal_records_info(%s::pg_lsn, %s::pg_lsn) WHERE block_ref LIKE %s",
                (_lsn_text(self._pos), _lsn_text(end), self._pattern),
            ).fetchall()[0]
        except psycopg.Error as exc:
            self.complete = False
            self.error = str(exc).strip()[:200]
            return
        self.bench += int(row[0])
        self.fpi += int(row[1])
        self._pos = end

    def stop(self) -> dict[str, int | None]:
        """A last step; ``server`` (every database's WAL), ``bench`` and ``bench_fpi``
        (``None`` when some of the files were gone before they were read)."""
        self.step()
        server = self._lsn("pg_current_wal_flush_lsn()") - self.start
        self._conn.close()
        if not self.complete:
            return {"server": server, "bench": None, "bench_fpi": None}
        return {"server": server, "bench": self.bench, "bench_fpi": self.fpi}


def _lsn_text(n: int) -> str:
    return f"{n >> 32:X}/{n & 0xFFFFFFFF:X}"


def base_env() -> dict[str, str]:
    """The environment every process of a scenario inherits (no stray SMSDISPATCH_* settings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSDISPATCH_")}
    env.update(
        {
            "DATABASE_URL": DATABASE_URL,
            "REDIS_URL": REDIS_URL,
            "PYTHONPATH": str(ROOT),
            "SMSDISPATCH_CARRIER_TPS": "1000000",
        }
    )
    return env


@dataclass
class Proc:
    """A started process and the group it is accounted in (api, bulk, simulator, ...)."""

    name: str
    group: str
    popen: subprocess.Popen[bytes]
    log: Path

    def pids(self) -> list[int]:
        """The process and all its descendants (prefork children, uvicorn workers)."""
        try:
            p = psutil.Process(self.popen.pid)
            return [p.pid, *(c.pid for c in p.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []


@dataclass
class BenchStack:
    """The processes of one scenario; use as a context manager (everything stops on exit).

    ``pooler``: "pgbouncer" to have every process reach the database through PgBouncer.
    """

    name: str
    logdir: Path
    settings: dict[str, Any] = field(default_factory=dict)
    pooler: str = ""
    env: dict[str, str] = field(init=False)
    procs: dict[str, Proc] = field(default_factory=dict)
    sim_url: str = ""
    api_url: str = ""

    def __post_init__(self) -> None:
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.env = base_env()
        if self.pooler == "pgbouncer":
            self.env["DATABASE_URL"] = PGBOUNCER_URL
        self.env.update({"SMSDISPATCH_" + k.upper(): str(v) for k, v in self.settings.items()})

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> BenchStack:
        reset_redis()
        reset_database(self.env)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def spawn(
        self,
        name: str,
        argv: list[str],
        group: str,
        nice: int = 0,
        env: dict[str, str] | None = None,
    ) -> Proc:
        """Start ``argv`` with the scenario's environment, logging to ``logdir/name.log``."""
        if nice:
            argv = ["nice", "-n", str(nice), *argv]
        path = self.logdir / f"{self.name}-{name}.log"
        log = open(path, "ab")  # noqa: SIM115 - the child owns it
        p = subprocess.Popen(
            argv,
            env=env or self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
        log.close()
        proc = Proc(name, group, p, path)
        self.procs[name] = proc
        return proc

    def log_text(self, name: str) -> str:
        """What a process printed so far."""
        return self.procs[name].log.read_text(encoding="utf-8", errors="replace")

    def stop(self, name: str, timeout: float = 15.0) -> None:
        """SIGTERM the process (a Celery pool does a warm shutdown), SIGKILL its group after."""
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        p = proc.popen
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(5)

    def stop_all(self, grace: float = 5.0) -> None:
        """SIGTERM every process at once, then SIGKILL the groups still there after ``grace``."""
        for proc in self.procs.values():
            if proc.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for name in list(self.procs):
            self.stop(name, timeout=max(0.1, deadline - time.monotonic()))

    # -- components ------------------------------------------------------------------------------
    def start_simulator(self, *flags: str) -> str:
        """The carrier simulator on a free port; returns its URL (readiness checked later)."""
        port = free_port()
        self.spawn(
            "simulator",
            [PY, "-m", "simulator", "--host", "127.0.0.1", "--port", str(port), *flags],
            "simulator",
        )
        self.sim_url = f"http://127.0.0.1:{port}"
        self.env["SMSDISPATCH_CARRIER_URL"] = self.sim_url
        return self.sim_url

    def start_api(self, workers: int = 1) -> str:
        """The REST API (uvicorn, ``workers`` processes)."""
        port = free_port()
        self.env["SMSDISPATCH_API_PORT"] = str(port)
        self.env["SMSDISPATCH_API_WORKERS"] = str(workers)
        self.spawn("api", [PY, "-m", "dispatcher.cli", "api"], "api")
        self.api_url = f"http://127.0.0.1:{port}"
        return self.api_url

    def start_worker(
        self, lane: str, concurrency: int, nice: int = 0, name: str | None = None
    ) -> Proc:
        """A worker pool of one lane (bulk under ``nice -n 10`` as in the Procfile)."""
        return self.spawn(
            name or f"worker-{lane}",
            [
                PY,
                "-m",
                "dispatcher.cli",
                "worker",
                "--lane",
                lane,
                "--concurrency",
                str(concurrency),
            ],
            lane,
            nice,
        )

    def start_scheduler(self) -> Proc:
        """The scheduler (releases retrying/deferred messages)."""
        return self.spawn("scheduler", [PY, "-m", "dispatcher.cli", "scheduler"], "scheduler")

    def start_baseline_worker(self, name: str, concurrency: int, rate_limit: str) -> Proc:
        """One instance of the naive Celery worker (``bench.baseline.app``)."""
        env = dict(self.env)
        env["BASELINE_RATE_LIMIT"] = rate_limit
        env["BASELINE_CARRIER_URL"] = self.sim_url
        argv = [
            PY,
            "-m",
            "celery",
            "-A",
            "bench.baseline.app",
            "worker",
            "-Q",
            "baseline",
            "-c",
            str(concurrency),
            "--pool",
            "prefork",
            "-n",
            f"{name}@%h",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "WARNING",
        ]
        return self.spawn(name, argv, "baseline", env=env)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait for the simulator, the API and every worker pool to be ready."""
        if self.sim_url:
            wait_until(lambda: http_ok(self.sim_url + "/healthz"), timeout, "simulator")
        if self.api_url:
            wait_until(lambda: http_ok(self.api_url + "/readyz"), timeout, "api ready")
        for name, proc in list(self.procs.items()):
            if proc.group in ("bulk", "priority", "baseline"):
                wait_until(partial(self._worker_ready, name), timeout, f"{name} ready")

    def _worker_ready(self, name: str) -> bool:
        proc = self.procs[name]
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{name} exited: {self.log_text(name)[-2000:]}")
        # Celery prints "ready." at INFO; the baseline (at WARNING) prints its own line.
        return "ready." in self.log_text(name)

    def create_account(self, name: str = "bench", priority: bool = True) -> dict[str, str]:
        """Create an account (what ``dispatcher.cli accounts create`` does); its auth headers."""
        from dispatcher.accounts.account import create_account
        from dispatcher.store.db import make_engine

        engine = make_engine(DATABASE_URL, pool_size=1)
        # Open: benchmarks measure sending, not sender-name approval.
        _account, pair = create_account(engine, name, priority=priority, sender_policy="open")
        engine.dispose()
        return {"Application-Key": pair.application_key, "Authorization": pair.authorization}

    # -- simulator -------------------------------------------------------------------------------
    def sim_stats(self) -> dict[str, Any]:
        """``GET /_sim/stats``."""
        return dict(LOCAL.get(self.sim_url + "/_sim/stats").json())

    def sim_config(self, **config: Any) -> None:
        """``POST /_sim/config``."""
        LOCAL.post(self.sim_url + "/_sim/config", json=config).raise_for_status()

    def sim_reset(self) -> None:
        """``POST /_sim/reset`` (records and counters)."""
        LOCAL.post(self.sim_url + "/_sim/reset", json={}).raise_for_status()

    def sim_submits(self) -> list[dict[str, Any]]:
        """Every accepted submit (``ref``, ``at``, ...), in arrival order."""
        out: list[dict[str, Any]] = []
        offset, limit = 0, 200_000
        while True:
            r = LOCAL.get(
                self.sim_url + "/_sim/submits",
                params={"offset": offset, "limit": limit},
                timeout=120,
            )
            r.raise_for_status()
            page = [orjson.loads(line) for line in r.content.splitlines() if line.strip()]
            out.extend(page)
            if len(page) < limit:
                return out
            offset += limit

    def wait_sim_count(self, n: int, timeout: float, stall_s: float = 60.0) -> dict[str, Any]:
        """Wait for ``n`` unique refs at the carrier; fails after ``stall_s`` without progress."""
        deadline = time.monotonic() + timeout
        last_n, last_change = -1, time.monotonic()
        while True:
            stats = self.sim_stats()
            if stats["unique_refs"] >= n:
                return stats
            now = time.monotonic()
            if stats["unique_refs"] != last_n:
                last_n, last_change = stats["unique_refs"], now
            if now > deadline or now - last_change > stall_s:
                raise TimeoutError(f"carrier received {stats['unique_refs']} of {n} messages")
            time.sleep(0.1)

    # -- measurement helpers ---------------------------------------------------------------------
    def groups(self, pg: Any = None) -> dict[str, list[int]]:
        """PIDs per accounting group, plus PostgreSQL (:func:`postgres_pids`, asked on ``pg``,
        an open psycopg connection, or a short-lived one), the Redis server and PgBouncer."""
        out: dict[str, list[int]] = {}
        for proc in self.procs.values():
            out.setdefault(proc.group, []).extend(proc.pids())
        # This process and its other descendants: helpers (producers, OTP client), wrk.
        known = {pid for pids in out.values() for pid in pids}
        me = psutil.Process()
        out["bench (load generators)"] = [me.pid] + [
            c.pid for c in me.children(recursive=True) if c.pid not in known
        ]
        for p in psutil.process_iter(["name"]):
            if (p.info["name"] or "").startswith("redis-server"):
                out.setdefault("redis", []).append(p.pid)
            elif p.info["name"] == "pgbouncer":  # --pgbouncer: its CPU is part of the path
                out.setdefault("pgbouncer", []).append(p.pid)
        for group, pids in postgres_pids(pg).items():
            out.setdefault(group, []).extend(pids)
        return out

    def wait_db_sent(self, n: int, timeout: float = 120.0) -> tuple[int, float]:
        """Wait until ``n`` messages are recorded ``sent``; returns (count, max(sent_at))."""

        def check() -> tuple[int, float] | None:
            count, last = db_query(
                "SELECT count(*), max(sent_at) FROM messages WHERE status = 'sent'"
            )[0]
            return (int(count), float(last)) if count >= n else None

        found = wait_until(check, timeout, f"{n} messages recorded sent", interval=0.2)
        assert found is not None
        return found

    def status_counts(self) -> dict[str, int]:
        """Messages per status (for the report, and to explain a stall)."""
        return {
            s: int(c) for s, c in db_query("SELECT status, count(*) FROM messages GROUP BY status")
        }


class CpuMeter:
    """CPU seconds used per process group between :meth:`start` and :meth:`stop`, and the WAL
    PostgreSQL wrote meanwhile.

    A thread re-reads every process of every group each ``interval`` seconds, so processes
    that exit before :meth:`stop` (PostgreSQL backends of a pool that shrank, autovacuum
    workers) still count, up to their last reading; a process that started after
    :meth:`start` counts from zero.
    """

    def __init__(self, stack: BenchStack, interval: float = 0.5) -> None:
        self.stack = stack
        self.interval = interval
        self._start: dict[int, float] = {}
        self._seen: dict[int, tuple[str, float]] = {}
        self._children0 = 0.0
        self._t0 = 0.0
        self._sys0: Any = None
        self._wal: WalCounter | None = None
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _cpu(pid: int) -> float | None:
        try:
            t = psutil.Process(pid).cpu_times()
            return float(t.user + t.system)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None

    def _read(self, pg: Any) -> None:
        for group, pids in self.stack.groups(pg).items():
            for pid in pids:
                cpu = self._cpu(pid)
                if cpu is not None:
                    self._seen[pid] = (group, cpu)

    def _poll(self) -> None:
        import psycopg

        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as pg:
            while not self._halt.wait(self.interval):
                self._read(pg)
                if self._wal is not None and not self._wal.reserved:
                    self._wal.step()

    def start(self) -> None:
        """Snapshot every process of every group and the WAL position; start re-reading."""
        self._t0 = time.monotonic()
        self._sys0 = psutil.cpu_times()
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        self._children0 = ru.ru_utime + ru.ru_stime
        self._seen = {}
        self._read(None)
        self._start = {pid: cpu for pid, (_group, cpu) in self._seen.items()}
        self._wal = WalCounter()
        self._halt.clear()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def stop(self, extra_cpu_s: dict[str, float] | None = None) -> dict[str, Any]:
        """Per group: CPU seconds and share of one core over the interval; machine busy %;
        ``pg_wal_bytes`` written meanwhile for the benchmark database (:class:`WalCounter`;
        server-wide when that cannot be told), ``pg_wal_fpi_bytes`` of it, and
        ``pg_wal_bytes_server``.

        ``extra_cpu_s`` adds groups measured elsewhere (a helper that reported its own usage);
        ``other`` is what the machine spent outside every group (other users of the box).
        """
        wall = max(1e-9, time.monotonic() - self._t0)
        self._halt.set()
        if self._thread is not None:
            self._thread.join(10)
        self._read(None)
        out: dict[str, Any] = {}
        for group, cpu_s in (extra_cpu_s or {}).items():
            out[group] = {"cpu_s": round(cpu_s, 2), "core_pct": round(100 * cpu_s / wall, 1)}
        used: dict[str, float] = {}
        for pid, (group, cpu) in self._seen.items():
            used[group] = used.get(group, 0.0) + cpu - self._start.get(pid, 0.0)
        for group, cpu_s in sorted(used.items()):
            out[group] = {"cpu_s": round(cpu_s, 2), "core_pct": round(100 * cpu_s / wall, 1)}
        sys1 = psutil.cpu_times()
        busy = sum(
            getattr(sys1, f) - getattr(self._sys0, f)
            for f in ("user", "system", "nice", "irq", "softirq")
        )
        total = busy + (sys1.idle - self._sys0.idle) + (sys1.iowait - self._sys0.iowait)
        # Children that exited meanwhile (wrk, producers) are only in RUSAGE_CHILDREN; the
        # helpers whose own usage was passed in ``extra_cpu_s`` are not counted twice.
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        reaped = ru.ru_utime + ru.ru_stime - self._children0 - sum((extra_cpu_s or {}).values())
        if reaped > 0.05:
            g = out.setdefault("bench (load generators)", {"cpu_s": 0.0, "core_pct": 0.0})
            g["cpu_s"] = round(g["cpu_s"] + reaped, 2)
            g["core_pct"] = round(100 * g["cpu_s"] / wall, 1)
        accounted = sum(v["cpu_s"] for v in out.values())
        busy_s = busy / max(1e-9, total) * wall * (psutil.cpu_count() or 1)
        other = max(0.0, busy_s - accounted)
        out["other"] = {"cpu_s": round(other, 2), "core_pct": round(100 * other / wall, 1)}
        out["machine_busy_pct"] = round(100 * busy / max(1e-9, total), 1)
        out["wall_s"] = round(wall, 2)
        assert self._wal is not None
        wal = self._wal.stop()  # after the CPU readings: it costs some
        out["pg_wal_bytes"] = wal["bench"] if wal["bench"] is not None else wal["server"]
        out["pg_wal_bytes_scope"] = "server" if wal["bench"] is None else "bench database"
        out["pg_wal_bytes_server"] = wal["server"]
        out["pg_wal_fpi_bytes"] = wal["bench_fpi"]
        if self._wal.error:
            out["pg_wal_error"] = self._wal.error
        return out


def per_message(cpu: dict[str, Any], n: int) -> dict[str, Any]:
    """``cpu_us_per_msg`` (``all``: every group of the benchmark's processes, PostgreSQL's
    included; ``postgres``: the backends of the benchmark database; ``postgres_server``: the
    server's background processes) and ``pg_wal_bytes_per_msg`` of :meth:`CpuMeter.stop`'s
    result over ``n`` messages."""
    groups = {k: v["cpu_s"] for k, v in cpu.items() if isinstance(v, dict) and k != "other"}
    n = max(1, n)
    return {
        "cpu_us_per_msg": {
            "all": round(sum(groups.values()) / n * 1e6, 1),
            "postgres": round(groups.get("postgres", 0.0) / n * 1e6, 1),
            "postgres_server": round(groups.get(_PG_SHARED, 0.0) / n * 1e6, 1),
        },
        "pg_wal_bytes_per_msg": round(cpu.get("pg_wal_bytes", 0) / n, 1),
        # Without full-page images, which depend on when checkpoints happen (docs/benchmarks.md).
        "pg_wal_bytes_per_msg_no_fpi": round(
            (cpu.get("pg_wal_bytes", 0) - (cpu.get("pg_wal_fpi_bytes") or 0)) / n, 1
        ),
    }


class RssSampler:
    """Samples the RSS of every process of some groups in a thread; keeps the max per process."""

    def __init__(self, stack: BenchStack, groups: tuple[str, ...], interval: float = 0.5) -> None:
        self.stack = stack
        self.groups = groups
        self.interval = interval
        self.max_rss: dict[int, float] = {}
        self.names: dict[int, str] = {}
        self.series: list[tuple[float, int, float]] = []  # (t, pid, rss MB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            for proc in list(self.stack.procs.values()):
                if proc.group not in self.groups:
                    continue
                root = proc.popen.pid
                for pid in proc.pids():
                    try:
                        rss = psutil.Process(pid).memory_info().rss / 2**20
                    except psutil.NoSuchProcess:
                        continue
                    self.names[pid] = f"{proc.name}:{'main' if pid == root else 'child'}"
                    self.max_rss[pid] = max(self.max_rss.get(pid, 0.0), rss)
                    self.series.append((now, pid, rss))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
