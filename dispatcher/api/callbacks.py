"""Carrier callbacks (delivery reports, inbound messages): committed, answered, then applied.

A carrier may post thousands of reports a second, one per request, and never posts one again
after a 2xx. So each request waits until its items are committed to the callback inbox in the
database (:mod:`dispatcher.store.callback_inbox`), not merely handed to Redis: a Redis crash or a
lost task cannot lose them. Requests arriving together share one transaction and one row: the
writer takes whatever has accumulated while the previous commit was running. After the commit a
task carrying the row ids wakes the dlr lane; if that publish fails the scheduler publishes the
rows when their lease ends (``SMSDISPATCH_CALLBACK_LEASE_S``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import Engine

from dispatcher.contract import CALLBACK_TASKS, CallbackKind, Lane
from dispatcher.intake.broker import Broker, BrokerUnavailable
from dispatcher.store import callback_inbox
from dispatcher.store.db import StoreUnavailable, transaction

log = structlog.get_logger(component="callbacks")

MAX_ITEMS_PER_ROW = 500


@dataclass
class _Group:
    items: list[dict[str, Any]] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)


class CallbackInbox:
    """Stores callbacks durably, batching concurrent calls, then wakes the dlr lane."""

    def __init__(self, engine: Engine, broker: Broker, lease_s: float) -> None:
        self.engine = engine
        self.broker = broker
        self.lease_s = lease_s
        self._pending: dict[tuple[str, str], _Group] = {}
        self._running: set[tuple[str, str]] = set()

    async def accept(self, kind: str, connection: str, items: list[dict[str, Any]]) -> None:
        """Return once ``items`` are committed; :class:`StoreUnavailable` if they were not."""
        key = (kind, connection)
        group = self._pending.setdefault(key, _Group())
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        group.items.extend(items)
        group.waiters.append(fut)
        if key not in self._running:
            self._running.add(key)
            asyncio.get_running_loop().create_task(self._drain(key))
        await fut

    async def _drain(self, key: tuple[str, str]) -> None:
        try:
            while self._pending.get(key) and self._pending[key].waiters:
                group = self._pending.pop(key)
                error: BaseException | None = None
                try:
                    await asyncio.to_thread(self._store_and_wake, key, group.items)
                except StoreUnavailable as exc:
                    error = exc
                except Exception as exc:  # never leave a request waiting forever
                    log.exception("callbacks.store_failed")
                    error = exc
                for w in group.waiters:
                    if not w.done():
                        if error is None:
                            w.set_result(None)
                        else:
                            w.set_exception(error)
        finally:
            self._running.discard(key)

    def _store_and_wake(self, key: tuple[str, str], items: list[dict[str, Any]]) -> None:
        kind, connection = key
        groups = [items[i : i + MAX_ITEMS_PER_ROW] for i in range(0, len(items), MAX_ITEMS_PER_ROW)]
        with transaction(self.engine) as conn:
            ids = callback_inbox.add(conn, kind, connection, groups, time.time(), self.lease_s)
        try:
            self.broker.publish_task(CALLBACK_TASKS[CallbackKind(kind)], {"ids": ids}, Lane.DLR)
        except BrokerUnavailable as exc:
            # Committed: the scheduler publishes the rows when their lease ends.
            log.warning("callbacks.wake_deferred", kind=kind, rows=len(ids), error=str(exc))
