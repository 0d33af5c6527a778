"""Per-connection limiter facade: key naming, and waiting that never counts as a retry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from .backend import AsyncRateLimitBackend, RateLimitBackend
from .gcra import Decision, Rate

__all__ = ["DEFAULT_KEY_PREFIX", "AsyncLimiter", "Limiter", "WaitHook"]

DEFAULT_KEY_PREFIX = "smsd:rl:"

WaitHook = Callable[[str, float], None]
"""Called as ``hook(connection, seconds)`` each time a caller is throttled and sleeps."""


class _LimiterBase:
    def __init__(self, key_prefix: str, on_wait: WaitHook | None) -> None:
        self.key_prefix = key_prefix
        self.on_wait = on_wait

    def key(self, connection: str) -> str:
        """Redis key (or memory key) holding ``connection``'s limiter state."""
        return f"{self.key_prefix}{connection}"

    def _pause(self, connection: str, decision: Decision, deadline: float) -> float | None:
        """Seconds to sleep before asking again, or ``None`` to give up (deadline too close)."""
        if decision.retry_after > deadline - time.monotonic():
            return None
        if self.on_wait is not None:
            self.on_wait(connection, decision.retry_after)
        return decision.retry_after


class Limiter(_LimiterBase):
    """Shared per-connection limiter over a blocking backend.

    Args:
        backend: e.g. :class:`~.redis_backend.RedisRateLimitBackend` or the memory backend.
        key_prefix: prepended to the connection name to form the state key.
        on_wait: optional hook counting throttles (metrics).
    """

    def __init__(
        self,
        backend: RateLimitBackend,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        on_wait: WaitHook | None = None,
    ) -> None:
        super().__init__(key_prefix, on_wait)
        self.backend = backend

    def acquire_prefix(self, connection: str, rate: Rate, costs: Sequence[int]) -> Decision:
        """One atomic decision: how many leading ``costs`` (SMS parts each) may go now."""
        return self.backend.acquire(self.key(connection), rate, costs)

    def wait(self, connection: str, rate: Rate, costs: Sequence[int], max_wait: float) -> int:
        """Blocking :meth:`AsyncLimiter.wait_for`: returns how many leading items may go."""
        if not costs:
            return 0
        deadline = time.monotonic() + max_wait
        while True:
            decision = self.acquire_prefix(connection, rate, costs)
            if decision.granted:
                return decision.granted
            pause = self._pause(connection, decision, deadline)
            if pause is None:
                return 0
            time.sleep(pause)

    async def wait_for(
        self, connection: str, rate: Rate, costs: Sequence[int], max_wait: float
    ) -> int:
        """Async wait over the *blocking* backend (fine for memory; for Redis prefer
        :class:`AsyncLimiter`, which does not block the event loop for the round trip)."""
        if not costs:
            return 0
        deadline = time.monotonic() + max_wait
        while True:
            decision = self.acquire_prefix(connection, rate, costs)
            if decision.granted:
                return decision.granted
            pause = self._pause(connection, decision, deadline)
            if pause is None:
                return 0
            await asyncio.sleep(pause)


class AsyncLimiter(_LimiterBase):
    """Shared per-connection limiter over an asyncio backend (one round trip per acquire)."""

    def __init__(
        self,
        backend: AsyncRateLimitBackend,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        on_wait: WaitHook | None = None,
    ) -> None:
        super().__init__(key_prefix, on_wait)
        self.backend = backend

    async def acquire_prefix(self, connection: str, rate: Rate, costs: Sequence[int]) -> Decision:
        """One atomic decision: how many leading ``costs`` (SMS parts each) may go now."""
        return await self.backend.acquire(self.key(connection), rate, costs)

    async def wait_for(
        self, connection: str, rate: Rate, costs: Sequence[int], max_wait: float
    ) -> int:
        """Wait until a prefix of ``costs`` may be sent; return its length (0 = gave up).

        Sleeps exactly the returned ``retry_after`` between attempts (no polling). Gives up,
        returning 0, as soon as the next chance lies beyond ``max_wait`` seconds from the
        call; the caller then parks the messages without counting a delivery attempt.
        Throttling is a result, never an exception; only
        :class:`~.errors.RateLimitUnavailable` / :class:`~.errors.InvalidRequest` raise.
        """
        if not costs:
            return 0
        deadline = time.monotonic() + max_wait
        while True:
            decision = await self.acquire_prefix(connection, rate, costs)
            if decision.granted:
                return decision.granted
            pause = self._pause(connection, decision, deadline)
            if pause is None:
                return 0
            await asyncio.sleep(pause)
