"""In-flight window per connection: at most ``max_in_flight`` requests at once over every
worker process, as a Redis semaphore whose slots are leases.

Why shared rather than a per-process share of the limit: pools scale up and down (KEDA) and
the number of processes is not known to any of them, so a static share would either overshoot
the carrier's window when pools grow or waste it when they shrink. A slot is a sorted-set
member scored by its lease expiry, so a process killed mid-request frees its slots after the
lease (the request timeout plus a margin) without any cleanup.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from redis.exceptions import RedisError

log = structlog.get_logger(component="window")

KEY_PREFIX = "smsd:inflight:"

# KEYS[1] zset of slots. ARGV: limit, lease_s, member. Returns 1 when the slot was taken.
ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])) + 1)
return 1
"""


class WindowFull(Exception):
    """No slot became free before the caller's deadline."""


class InFlightWindow:
    """Slots of one connection's window."""

    def __init__(
        self,
        redis: Any,
        connection: str,
        limit: int,
        lease_s: float,
        key_prefix: str = KEY_PREFIX,
    ) -> None:
        self.redis = redis
        self.key = f"{key_prefix}{connection}"
        self.limit = limit
        self.lease_s = lease_s
        self._acquire = redis.register_script(ACQUIRE_LUA)
        self._ids = itertools.count()
        self._me = f"{os.getpid()}:{uuid.uuid4().hex[:8]}"

    async def _take(self, member: str) -> bool:
        try:
            return bool(
                await self._acquire(keys=[self.key], args=[self.limit, self.lease_s, member])
            )
        except RedisError as exc:  # never let the window's store stop sending
            log.warning("window.unavailable", error=type(exc).__name__)
            return True

    @asynccontextmanager
    async def slot(self, deadline: float) -> AsyncIterator[None]:
        """Hold one slot for the ``with`` block; :class:`WindowFull` after ``deadline``
        (``time.monotonic()``) passed without one."""
        member = f"{self._me}:{next(self._ids)}"
        pause = 0.002
        while not await self._take(member):
            if time.monotonic() + pause > deadline:
                raise WindowFull(self.key)
            await asyncio.sleep(pause)
            pause = min(0.05, pause * 2)
        try:
            yield
        finally:
            try:
                await self.redis.zrem(self.key, member)
            except RedisError as exc:  # the lease frees it
                log.warning("window.unavailable", error=type(exc).__name__)
