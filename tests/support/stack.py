"""The whole pipeline as real processes: simulator, API, worker pools, scheduler."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import httpx
import psutil

from dispatcher.accounts.account import create_account
from dispatcher.store.db import make_engine
from tests.support.services import free_port, fresh_database, fresh_redis

T = TypeVar("T")
# One client for every loopback call: httpx.get() builds a client, and with it a TLS context,
# per call (~45 ms of CPU here), which turned each polling loop into a busy core.
LOCAL = httpx.Client(timeout=30)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def wait_until(
    pred: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, what: str = "condition"
) -> T:
    """Poll ``pred`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


ACTIVE: list[Stack] = []  # running stacks, so a failing test can print their logs


@dataclass
class ApiClient:
    """An account's view of the API."""

    base: str
    keys: dict[str, str]
    account_id: int
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.base, headers=self.keys, timeout=30)

    def send(self, body: dict[str, Any], **headers: str) -> httpx.Response:
        """POST /v2.1/sms."""
        return self.http.post("/v2.1/sms", json=body, headers=headers)

    def get(self, message_id: str) -> dict[str, Any]:
        """GET /v2.1/sms/{id} → the message view."""
        r = self.http.get(f"/v2.1/sms/{message_id}")
        assert r.status_code == 200, r.text
        return dict(r.json()["data"][0])

    def status(self, message_id: str) -> str:
        """The message's status name."""
        return str(self.get(message_id)["statusName"])


@dataclass
class Stack:
    """Handles on the running processes; :func:`running_stack` builds it."""

    env: dict[str, str]
    database_url: str
    api_url: str
    sim_url: str
    logdir: str
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    # -- processes -------------------------------------------------------------------------------
    def spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        """Start a process with the stack's environment, logging to ``logdir/name.log``."""
        log = open(os.path.join(self.logdir, f"{name}.log"), "ab")  # noqa: SIM115
        p = subprocess.Popen(
            argv,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
        self.procs[name] = p
        return p

    def start_worker(
        self, lane: str, concurrency: int = 2, name: str | None = None, wait: bool = True
    ) -> None:
        """Start a worker pool for ``lane``; unless ``wait`` is False, wait until it consumes."""
        name = name or f"worker-{lane}"
        # The log is appended to across restarts: wait for one more "ready." than it had.
        before = _ready_count(self, name)
        self.spawn(
            name,
            [
                sys.executable,
                "-m",
                "dispatcher.cli",
                "worker",
                "--lane",
                lane,
                "--concurrency",
                str(concurrency),
            ],
        )
        if wait:
            wait_until(partial(_ready_after, self, name, before), 30, what=f"{name} ready")

    def start_workers(self, lanes: Iterable[str], concurrency: int = 1) -> None:
        """Start a pool per lane side by side (one after another takes as long as all of them)."""
        with ThreadPoolExecutor(4) as pool:
            for done in [pool.submit(self.start_worker, lane, concurrency) for lane in lanes]:
                done.result()

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        """Stop one process (its whole group)."""
        p = self.procs.pop(name)
        if p.poll() is None:
            try:
                # SIGTERM goes to the main process only (as an orchestrator sends it), so a
                # Celery pool does its warm shutdown; SIGKILL takes the whole group.
                if sig == signal.SIGKILL:
                    os.killpg(p.pid, sig)
                else:
                    os.kill(p.pid, sig)
                p.wait(timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)

    def stop_all(self, timeout: float = 20) -> None:
        """Stop every process: SIGTERM to each main process at once, then wait for them all
        (stopping them one by one made each test's teardown wait for every warm shutdown in
        turn)."""
        procs = dict(self.procs)
        self.procs.clear()
        for p in procs.values():
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in procs.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
            # A warm shutdown may leave prefork children behind for a moment; take the group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)

    def worker_children(self, name: str) -> list[int]:
        """PIDs of a worker's prefork children."""
        return [c.pid for c in psutil.Process(self.procs[name].pid).children(recursive=True)]

    def log(self, name: str) -> str:
        """The process's output so far."""
        path = os.path.join(self.logdir, f"{name}.log")
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()

    def logs(self) -> str:
        """All logs (for failures and for the no-secrets check)."""
        out = []
        for f in sorted(os.listdir(self.logdir)):
            with open(os.path.join(self.logdir, f), encoding="utf-8", errors="replace") as fh:
                out.append(f"==== {f}\n{fh.read()}")
        return "\n".join(out)

    def redis_summary(self) -> str:
        """Keys of the stack's Redis database with their types and sizes (for failures)."""
        from dispatcher.redis_clients import sync_client

        client = sync_client(self.env["REDIS_URL"])  # a redis+sentinel:// URL too
        out = []
        for key in sorted(client.keys("*")):
            raw_kind = client.type(key)
            kind = raw_kind.decode() if isinstance(raw_kind, bytes) else str(raw_kind)
            size = {
                "list": client.llen,
                "set": client.scard,
                "hash": client.hlen,
                "zset": client.zcard,
            }.get(kind)
            out.append(f"{key!r} {kind} {size(key) if size else ''}")
        client.close()
        engine = self.db()
        from sqlalchemy import text

        with engine.connect() as conn:
            for q in (
                "SELECT status, lane, count(*) FROM messages GROUP BY status, lane",
                "SELECT lane, size, created_at, enqueued_at FROM dispatch_batches "
                "ORDER BY created_at DESC LIMIT 5",
            ):
                out.extend(str(tuple(r)) for r in conn.execute(text(q)))
        engine.dispose()
        return "\n".join(out)

    # -- accounts -------------------------------------------------------------------------------
    def account(
        self, name: str | None = None, priority: bool = True, sender_policy: str = "open"
    ) -> ApiClient:
        """A new account and a client holding its keys; ``open`` to any sender name unless
        asked (the tests of sender names ask for ``registered``, the product's default)."""
        engine = make_engine(self.database_url, pool_size=1)
        account, pair = create_account(
            engine, name or f"acct-{time.monotonic_ns()}", priority, sender_policy
        )
        engine.dispose()
        keys = {"Application-Key": pair.application_key, "Authorization": pair.authorization}
        return ApiClient(self.api_url, keys, account.id)

    # -- simulator ------------------------------------------------------------------------------
    def sim(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """Call the simulator's control API."""
        return LOCAL.request(method, self.sim_url + path, **kw)

    def sim_config(self, **config: Any) -> dict[str, Any]:
        """Change the simulator's behaviour now."""
        r = self.sim("POST", "/_sim/config", json=config)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def sim_stats(self) -> dict[str, Any]:
        """The simulator's counters."""
        return dict(self.sim("GET", "/_sim/stats").json())

    def sim_submits(self) -> list[dict[str, Any]]:
        """Every submit the simulator recorded."""
        text = self.sim("GET", "/_sim/submits").text
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def db(self) -> Any:
        """A short-lived engine on the stack's database."""
        return make_engine(self.database_url, pool_size=1)


@contextmanager
def running_stack(  # type: ignore[no-untyped-def]
    workers: dict[str, int] | None = None,
    scheduler: bool = True,
    reports: bool = True,
    redis_url: str | None = None,
    database_url: str | None = None,
    **settings: Any,
):
    """Start simulator, API, workers (lane → concurrency) and scheduler on fresh data.

    ``redis_url``: a Redis of the caller's (e.g. a private server a test stops and restarts)
    instead of a leased database of the shared one. ``database_url``: a migrated database of
    the caller's (e.g. a fresh one reached through PgBouncer) instead of a fresh one.
    """
    workers = {"priority": 1, "bulk": 2} if workers is None else workers
    with (
        nullcontext(database_url) if database_url else fresh_database() as db_url,
        nullcontext(redis_url) if redis_url else fresh_redis() as redis_url,
        tempfile.TemporaryDirectory(prefix="smsd-stack-") as logdir,
    ):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMSDISPATCH_")}
        api_port = free_port()
        sim_port = free_port()
        env.update(
            {
                "DATABASE_URL": db_url,
                "REDIS_URL": redis_url,
                "PYTHONPATH": ROOT,
                "SMSDISPATCH_API_PORT": str(api_port),
                "SMSDISPATCH_CARRIER_URL": f"http://127.0.0.1:{sim_port}",
                "SMSDISPATCH_SCHEDULER_INTERVAL_S": "0.1",
                "SMSDISPATCH_CARRIER_TIMEOUT_S": "1",
                "SMSDISPATCH_LOG_LEVEL": "INFO",
            }
        )
        env.update({"SMSDISPATCH_" + k.upper(): str(v) for k, v in settings.items()})
        stack = Stack(
            env, db_url, f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{sim_port}", logdir
        )
        ACTIVE.append(stack)
        try:
            sim_args = ["--host", "127.0.0.1", "--port", str(sim_port)]
            token = env.get("SMSDISPATCH_CARRIER_CALLBACK_TOKEN")
            if token and reports:
                callbacks = f"http://127.0.0.1:{api_port}/carrier/default"
                sim_args += [
                    "--dlr-url",
                    f"{callbacks}/reports",
                    "--mo-url",
                    f"{callbacks}/inbound",
                ]
                # From the environment: a command line is visible to every user of the machine.
                env.update(SIMULATOR_DLR_TOKEN=token, SIMULATOR_MO_TOKEN=token)
                sim_args += ["--dlr-delay-ms", "50"]
            stack.spawn("simulator", [sys.executable, "-m", "simulator", *sim_args])
            stack.spawn("api", [sys.executable, "-m", "dispatcher.cli", "api"])
            if scheduler:
                stack.spawn("scheduler", [sys.executable, "-m", "dispatcher.cli", "scheduler"])
            # Start the pools together and wait for them together: each takes seconds to boot.
            ready = {lane: _ready_count(stack, f"worker-{lane}") for lane in workers}
            for lane, n in workers.items():
                stack.start_worker(lane, n, wait=False)
            for lane, before in ready.items():
                name = f"worker-{lane}"
                wait_until(partial(_ready_after, stack, name, before), 30, what=f"{name} ready")
            wait_until(lambda: _ok(stack.sim_url + "/healthz"), 20, what="simulator")
            # Several API processes start one after another on a shared machine: wait longer.
            ready_s = max(30, 12 * int(settings.get("api_workers", 1)))
            wait_until(lambda: _ok(stack.api_url + "/readyz"), ready_s, what="api ready")
            yield stack
        except BaseException:
            print(stack.logs()[-20000:], file=sys.stderr)
            raise
        finally:
            ACTIVE.remove(stack)
            stack.stop_all()


def _ready_count(stack: Stack, name: str) -> int:
    path = os.path.join(stack.logdir, f"{name}.log")
    return stack.log(name).count("ready.") if os.path.exists(path) else 0


def _ready_after(stack: Stack, name: str, before: int) -> bool:
    return _ready_count(stack, name) > before


def _ok(url: str) -> bool:
    try:
        return LOCAL.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
