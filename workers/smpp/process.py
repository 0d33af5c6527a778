"""``smsdispatch smpp``: the supervised process that holds the SMPP binds.

It runs a :class:`~workers.smpp.holder.ConnectionHolder` for every ``type = "smpp"`` connection
of the connections file, commits deliver_sm to the carrier callback inbox and wakes the dlr
lane, serves ``/metrics`` on ``SMSDISPATCH_SMPP_METRICS_PORT`` (default 9106, 0: none; loopback
unless ``SMSDISPATCH_SMPP_METRICS_HOST`` says otherwise), holds bind leases of
``SMSDISPATCH_SMPP_LEASE_S`` seconds (default 10, renewed every fifth of that), and on
SIGTERM / SIGINT stops taking
requests, lets the outstanding submits finish, unbinds and gives its bind slots back. Run as
many as you like, on as many hosts: the bind leases keep the total within each connection's
``binds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections import deque
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
import structlog
from prometheus_client import start_http_server

from dispatcher.config import Settings
from dispatcher.contract import CALLBACK_TASKS, CallbackKind, Lane, queue_name
from dispatcher.redis_clients import async_client, is_sentinel
from dispatcher.routing import ConnectionConfig, current_table
from dispatcher.store import callback_inbox
from dispatcher.store.db import make_engine, transaction
from workers.runtime import new_loop
from workers.smpp import handoff as h
from workers.smpp import metrics as m
from workers.smpp.deliveries import Deliveries
from workers.smpp.holder import ConnectionHolder, HolderOptions

log = structlog.get_logger(component="smpp")

MAX_ITEMS_PER_ROW = 500
WAKE_EVERY_S = 0.2
WAKE_MAX_ROWS = 100  # rows per wake-up task, as the scheduler publishes them
REDIS_CONNECTIONS = 32


def smpp_connections(settings: Settings) -> list[ConnectionConfig]:
    """The configured ``smpp`` connections (none without a connections file)."""
    return [c for c in current_table(settings).config.connections if c.smpp is not None]


def holder_redis(url: str) -> aioredis.Redis:
    """The holder's client: a bounded pool that waits for a free connection, so a burst of
    deliver_sm or replies queues for a connection instead of failing. Through Sentinel: its
    pool, with room for such bursts."""
    if is_sentinel(url):
        return async_client(url, max_connections=1000)
    return async_client(url, wait_for_connection_s=10, max_connections=REDIS_CONNECTIONS)


class Committer:
    """Stores deliver_sm items in the callback inbox, then wakes the dlr lane (sync).

    Receipts are woken ``settle_s`` after their commit, many rows in one task, by
    :meth:`wake_due` (called every :data:`WAKE_EVERY_S`): an SMSC sends a receipt milliseconds
    after its submit_sm_resp, before the send lane has recorded the submit (it records a
    sub-batch at once), and a report applied that early is only postponed and tried again:
    measured in benchmark G, nearly every receipt was (docs/benchmarks.md). The rows are
    committed before the deliver_sm is answered either way; a wake-up lost with this process
    is made up by the scheduler when the row's lease ends. Inbound parts are woken at once.
    """

    def __init__(self, settings: Settings) -> None:
        self.engine = make_engine(settings.database_url, pool_size=2)
        self.lease_s = settings.callback_lease_s
        self.settle_s = settings.smpp_receipt_settle_s
        # (wake at, monotonic; row ids): appended by commit threads, taken by wake_due.
        self._held: deque[tuple[float, list[int]]] = deque()

    def __call__(self, kind: str, connection: str, items: list[dict[str, Any]]) -> None:
        groups = [items[i : i + MAX_ITEMS_PER_ROW] for i in range(0, len(items), MAX_ITEMS_PER_ROW)]
        with transaction(self.engine) as conn:
            ids = callback_inbox.add(conn, kind, connection, groups, time.time(), self.lease_s)
        if kind == CallbackKind.REPORT and self.settle_s > 0:
            self._held.append((time.monotonic() + self.settle_s, ids))
            return
        self._wake(kind, ids)

    @property
    def holding(self) -> bool:
        """Whether receipt rows wait for their wake-up."""
        return bool(self._held)

    def wake_due(self, everything: bool = False) -> int:
        """Wake the dlr lane for the receipt rows whose settling time passed (``everything``:
        all of them, on the way out); the number of rows."""
        now = time.monotonic()
        ids: list[int] = []
        while self._held and (everything or self._held[0][0] <= now):
            ids += self._held.popleft()[1]
        # Rows taken along must have settled too (their own wake-up is still held).
        fresh_before = time.time() - self.settle_s
        for i in range(0, len(ids), WAKE_MAX_ROWS):
            self._wake(CallbackKind.REPORT, ids[i : i + WAKE_MAX_ROWS], fresh_before)
        return len(ids)

    def _wake(self, kind: str, ids: list[int], fresh_before: float | None = None) -> None:
        payload: dict[str, Any] = {"ids": ids}
        if fresh_before is not None:
            payload["fresh_before"] = fresh_before
        try:
            from workers.app import app

            app.send_task(
                CALLBACK_TASKS[CallbackKind(kind)],
                args=[payload],
                queue=queue_name(Lane.DLR),
            )
        except Exception as exc:  # committed: the scheduler publishes it when the lease ends
            log.warning("smpp.wake_deferred", kind=kind, rows=len(ids), error=type(exc).__name__)

    def close(self) -> None:
        """Release the database pool."""
        self.engine.dispose()


async def wake_receipts(committer: Committer, stop: asyncio.Event) -> None:
    """Wake the dlr lane for settled receipt rows until ``stop`` (the holder's way out wakes
    the rest at once)."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), WAKE_EVERY_S)
        if committer.holding:
            try:
                await asyncio.to_thread(committer.wake_due)
            except Exception as exc:  # the rows are stored: their leases cover a lost wake-up
                log.error("smpp.wake_failed", error=type(exc).__name__)


async def run_holders(
    settings: Settings,
    connections: Sequence[ConnectionConfig],
    options: HolderOptions,
    stop: asyncio.Event,
) -> None:
    """Hold the binds of ``connections`` until ``stop`` is set, then stop gracefully."""
    redis = holder_redis(settings.redis_url)
    committer = Committer(settings)
    holder_id = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    holders: list[ConnectionHolder] = []
    waking = asyncio.get_running_loop().create_task(wake_receipts(committer, stop))
    try:
        for cfg in connections:

            async def first_parts(message_ids: list[str], name: str = cfg.name) -> dict[str, str]:
                raws = await redis.mget([h.part_key(name, i) for i in message_ids])
                return {
                    i: raw.decode() if isinstance(raw, bytes) else str(raw)
                    for i, raw in zip(message_ids, raws, strict=True)
                    if raw is not None
                }

            def counted(kind: str, name: str = cfg.name) -> None:
                m.DELIVERIES.labels(name, kind).inc()

            deliveries = Deliveries(cfg.name, committer, first_parts, counted)
            holder = ConnectionHolder(cfg, redis, holder_id, deliveries.handle, options)
            holder.start()
            holders.append(holder)
            log.info("smpp.holder_started", connection=cfg.name, binds=cfg.smpp and cfg.smpp.binds)
        await stop.wait()
    finally:
        log.info("smpp.holder_stopping", connections=len(holders))
        await asyncio.gather(*(x.stop() for x in holders), return_exceptions=True)
        stop.set()
        await asyncio.gather(waking, return_exceptions=True)
        await asyncio.to_thread(committer.wake_due, True)  # the receipts of the last second
        await redis.aclose()
        committer.close()
        log.info("smpp.holder_stopped")


def main(max_binds: int | None = None) -> int:
    """Run until SIGTERM / SIGINT (idle without smpp connections); 0 after a graceful stop."""
    settings = Settings.from_env()
    connections = smpp_connections(settings)
    if settings.smpp_metrics_port:
        start_http_server(settings.smpp_metrics_port, settings.smpp_metrics_host)
    lease_s = settings.smpp_lease_s
    options = HolderOptions(lease_ttl_s=lease_s, renew_s=lease_s / 5, max_binds=max_binds)
    loop = new_loop()  # uvloop: the holder is a loop of small socket reads and writes
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        if connections:
            loop.run_until_complete(run_holders(settings, connections, options, stop))
        else:
            # Supervisors (Procfile, compose, Kubernetes) run it everywhere: idle, not exit.
            log.info("smpp.no_connections", hint='no type = "smpp" connection: idle')
            loop.run_until_complete(stop.wait())
    finally:
        loop.close()
    return 0
