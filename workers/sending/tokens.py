"""The sender's token source: the global limiter bound to one connection and its rate."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from redis.exceptions import RedisError

from dispatcher.ratelimit import AsyncLimiter, Rate
from workers import metrics
from workers.smpp.handoff import rate_key


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


class SmppTokens(ConnectionTokens):
    """An SMPP connection's tokens: the limiter grants ``rate`` times the share the session
    holder sets while the SMSC answers ESME_RTHROTTLED / ESME_RMSGQFUL (read at most every
    half second; no share set: all of it)."""

    REFRESH_S = 0.5

    def __init__(self, limiter: AsyncLimiter, connection: str, rate: Rate, redis: Any) -> None:
        super().__init__(limiter, connection, rate)
        self.full = rate
        self.redis = redis
        self._read_at = 0.0

    async def wait_for(self, costs: Sequence[int], max_wait: float) -> tuple[int, float]:
        """As :meth:`ConnectionTokens.wait_for`, at the current share of the rate."""
        now = time.monotonic()
        if now - self._read_at > self.REFRESH_S:
            self._read_at = now
            try:
                raw = await self.redis.get(rate_key(self.connection))
                share = min(1.0, max(0.01, float(raw))) if raw is not None else 1.0
            except (RedisError, OSError, ValueError):
                share = 1.0  # the limiter's own Redis trouble is reported by the limiter
            self.rate = self.full if share >= 1.0 else Rate(self.full.per_second * share)
        return await super().wait_for(costs, max_wait)
