"""The sender's token source: the global limiter bound to one connection and its rate."""

from __future__ import annotations

from collections.abc import Sequence

from dispatcher.ratelimit import AsyncLimiter, Rate
from workers import metrics


class ConnectionTokens:
    """Tokens of one carrier connection, charged per SMS part."""

    def __init__(self, limiter: AsyncLimiter, connection: str, rate: Rate) -> None:
        self.limiter = limiter
        self.connection = connection
        self.rate = rate

    async def wait_for(self, costs: Sequence[int], max_wait: float) -> tuple[int, float]:
        """Grant a prefix of ``costs``, waiting up to ``max_wait``; ``(0, 0.0)`` when it ran out."""
        granted = await self.limiter.wait_for(self.connection, self.rate, costs, max_wait)
        metrics.record_granted(self.connection, costs[:granted])
        return granted, 0.0
