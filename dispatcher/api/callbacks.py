"""Carrier callbacks (delivery reports, inbound messages) grouped into few tasks.

A carrier may post thousands of reports a second, one per request. Each request waits until its
items are published (so a 200 means the report is safely in Redis), but all requests arriving
together share one task: the publisher takes whatever has accumulated while the previous
publish was running.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from dispatcher.broker import Broker, BrokerUnavailable
from dispatcher.contract import Lane

MAX_ITEMS_PER_TASK = 500


@dataclass
class _Group:
    items: list[dict[str, Any]] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)


class CallbackPublisher:
    """Publishes ``{"connection", "items", "received_at"}`` tasks, batching concurrent calls."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._pending: dict[tuple[str, str], _Group] = {}
        self._running: set[tuple[str, str]] = set()

    async def publish(self, task: str, connection: str, items: list[dict[str, Any]]) -> None:
        """Return once ``items`` are published; :class:`BrokerUnavailable` if they were not."""
        key = (task, connection)
        group = self._pending.setdefault(key, _Group())
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        group.items.extend(items)
        group.waiters.append(fut)
        if key not in self._running:
            self._running.add(key)
            asyncio.get_running_loop().create_task(self._drain(key))
        await fut

    async def _drain(self, key: tuple[str, str]) -> None:
        task, connection = key
        try:
            while self._pending.get(key) and self._pending[key].waiters:
                group = self._pending.pop(key)
                error: BaseException | None = None
                try:
                    for i in range(0, len(group.items), MAX_ITEMS_PER_TASK):
                        payload = {
                            "connection": connection,
                            "received_at": time.time(),
                            "items": group.items[i : i + MAX_ITEMS_PER_TASK],
                        }
                        await asyncio.to_thread(self.broker.publish_task, task, payload, Lane.DLR)
                except BrokerUnavailable as exc:
                    error = exc
                for w in group.waiters:
                    if not w.done():
                        if error is None:
                            w.set_result(None)
                        else:
                            w.set_exception(error)
        finally:
            self._running.discard(key)
