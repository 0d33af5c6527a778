"""When to try a webhook again: exponential backoff with equal jitter, for a time window.

Delays start at ``base_s`` and double up to ``cap_s`` (5 s, 10 s, 20 s … 1 h, then about
hourly), each between half and all of its value (:class:`workers.sending.retry.RetryPolicy`). A
delivery is retried until ``window_s`` (``webhook_retry_window_h``) has passed since it was
created, so its attempts span at least the window; the attempt that fails after that is its
last. ``Retry-After`` is honoured when longer than the backoff, up to ``retry_after_cap_s``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from workers.sending.retry import RetryPolicy

BASE_S = 5.0
CAP_S = 3600.0


@dataclass(frozen=True)
class WebhookBackoff:
    """The retry schedule of webhook deliveries."""

    window_s: float = 26 * 3600.0
    retry_after_cap_s: float = 6 * 3600.0
    policy: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(max_attempts=1_000, base_s=BASE_S, cap_s=CAP_S)
    )

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        wish = None if retry_after is None else min(max(0.0, retry_after), self.retry_after_cap_s)
        return self.policy.delay(attempt, wish)

    def next_attempt(
        self, attempt: int, created_at: float, now: float, retry_after: float | None = None
    ) -> float | None:
        """When to try again after failed attempt ``attempt``; ``None``: the window is spent."""
        if now - created_at >= self.window_s:
            return None
        return now + self.delay(attempt, retry_after)
