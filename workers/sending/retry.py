"""When to try again: exponential backoff with jitter, bounded by attempts and validity."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff ``base * 2**(attempt-1)`` capped at ``cap``, with "equal jitter" (½ fixed, ½ random).

    Equal jitter keeps a floor under each delay, so a flapping carrier is not hammered, while
    still spreading a burst of failures over time.
    """

    max_attempts: int = 6
    base_s: float = 1.0
    cap_s: float = 300.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        raw = min(self.cap_s, self.base_s * (2 ** max(0, attempt - 1)))
        d = raw / 2 + self.rng.uniform(0, raw / 2)
        if retry_after is not None:
            d = max(d, retry_after)
        return d

    def exhausted(self, attempt: int) -> bool:
        """Whether ``attempt`` attempts are all this message gets."""
        return attempt >= self.max_attempts
