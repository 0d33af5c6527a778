"""When to try a request again, and after how long."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry: ``attempts`` in all, delays ``base * 2**n`` (±50 %
    jitter) capped at ``max_delay``; a ``Retry-After`` up to ``max_retry_after`` wins."""

    attempts: int = 4
    base: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1``."""
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.0), self.max_retry_after)
            except ValueError:
                pass  # an HTTP date: fall back to our own backoff
        backoff = min(self.base * 2**attempt, self.max_delay)
        return backoff * random.uniform(0.5, 1.5)
