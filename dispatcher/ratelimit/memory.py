"""In-process backend (thread-safe) running the pure algorithm; for tests and single processes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from .gcra import MICROS, Decision, Rate, decide_prefix, validate_costs

__all__ = ["AsyncMemoryRateLimitBackend", "MemoryRateLimitBackend", "system_clock_us"]

_SWEEP_EVERY_US = MICROS


def system_clock_us() -> int:
    """Wall-clock time in integer microseconds (the default clock)."""
    return time.time_ns() // 1000


class MemoryRateLimitBackend:
    """Keeps one TAT per key in a dict guarded by a lock.

    Args:
        clock: returns the current time in integer microseconds; inject a fake for tests.

    A key whose TAT is in the past is equivalent to a missing key, so such entries are dropped
    (the analogue of the Redis key TTL); :meth:`ttl` exposes the remaining lifetime.
    """

    def __init__(self, clock: Callable[[], int] = system_clock_us) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tats: dict[str, int] = {}
        self._next_sweep = 0

    def acquire(self, key: str, rate: Rate, costs: Sequence[int]) -> Decision:
        """Atomically grant the longest conforming prefix of ``costs`` for ``key``."""
        validate_costs(costs)
        with self._lock:
            now = self._clock()
            self._sweep(now)
            decision = decide_prefix(self._tats.get(key), now, rate, costs)
            if decision.granted:
                self._tats[key] = decision.new_tat
            return decision

    def ttl(self, key: str) -> float | None:
        """Seconds until ``key``'s state expires, or ``None`` if it holds no state."""
        with self._lock:
            now = self._clock()
            tat = self._tats.get(key)
            if tat is None or tat <= now:
                self._tats.pop(key, None)
                return None
            return (tat - now) / MICROS

    def _sweep(self, now: int) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + _SWEEP_EVERY_US
        for key in [k for k, tat in self._tats.items() if tat <= now]:
            del self._tats[key]


class AsyncMemoryRateLimitBackend:
    """Asyncio facade over a :class:`MemoryRateLimitBackend` (never blocks, shares its state)."""

    def __init__(self, inner: MemoryRateLimitBackend | None = None) -> None:
        self.inner = inner if inner is not None else MemoryRateLimitBackend()

    async def acquire(self, key: str, rate: Rate, costs: Sequence[int]) -> Decision:
        """Atomically grant the longest conforming prefix of ``costs`` for ``key``."""
        return self.inner.acquire(key, rate, costs)
