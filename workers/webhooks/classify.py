"""What a webhook answer means: delivered, retry later, refused for good, or endpoint gone.

- 2xx: delivered.
- 429 and 5xx, timeouts and connection errors: retried with backoff (``Retry-After`` honoured).
- 410 Gone: the endpoint is disabled (later deliveries to it fail at once).
- any other 4xx, and 3xx (redirects are not followed): failed, not retried.
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass

from dispatcher.webhooks.records import Verdict
from workers.webhooks.errors import WebhookError

MAX_BODY_CHARS = 512  # what is kept of the receiver's answer (webhook_attempts.body)


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """A receiver's answer, reduced to what we keep."""

    status: int
    retry_after: str | None
    body: str  # at most MAX_BODY_CHARS
    latency_ms: float


@dataclass(frozen=True, slots=True)
class Classified:
    """A verdict, the short error code for the log (``None`` on success) and the receiver's
    wish for the next attempt, in seconds."""

    verdict: Verdict
    error: str | None = None
    retry_after: float | None = None


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from ``now`` (delta-seconds or an HTTP date); ``None`` if
    absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now)


def classify_answer(status: int, retry_after: str | None, now: float) -> Classified:
    """The verdict on an HTTP answer."""
    if 200 <= status < 300:
        return Classified(Verdict.DELIVERED)
    if status == 429 or status >= 500:
        return Classified(Verdict.RETRY, f"http_{status}", parse_retry_after(retry_after, now))
    if status == 410:
        return Classified(Verdict.GONE, "http_410")
    if 300 <= status < 400:
        return Classified(Verdict.REJECTED, "redirect_not_followed")
    return Classified(Verdict.REJECTED, f"http_{status}")


def classify_error(exc: WebhookError) -> Classified:
    """The verdict on a request that got no answer."""
    return Classified(Verdict.RETRY if exc.retryable else Verdict.REFUSED, exc.code)
