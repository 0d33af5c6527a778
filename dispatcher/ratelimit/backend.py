"""The small interface every rate limit backend implements (sync and async flavours)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from .gcra import Decision, Rate

__all__ = ["AsyncRateLimitBackend", "RateLimitBackend"]


@runtime_checkable
class RateLimitBackend(Protocol):
    """Blocking backend: one atomic GCRA decision per call."""

    def acquire(self, key: str, rate: Rate, costs: Sequence[int]) -> Decision:
        """Atomically grant the longest conforming prefix of ``costs`` for ``key``.

        Never raises for throttling (``granted == 0`` instead); raises
        :class:`~.errors.RateLimitUnavailable` when no decision could be made and
        :class:`~.errors.InvalidRequest` for malformed costs.
        """
        ...


@runtime_checkable
class AsyncRateLimitBackend(Protocol):
    """Asyncio backend with the same contract as :class:`RateLimitBackend`."""

    async def acquire(self, key: str, rate: Rate, costs: Sequence[int]) -> Decision:
        """Atomically grant the longest conforming prefix of ``costs`` for ``key``."""
        ...
