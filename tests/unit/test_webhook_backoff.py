"""Classification of webhook answers and the retry schedule (at least the retry window)."""

from __future__ import annotations

import email.utils
import itertools
import random

import pytest

from workers.sending.retry import RetryPolicy
from workers.webhooks.backoff import WebhookBackoff
from workers.webhooks.classify import Verdict, classify_answer, classify_error, parse_retry_after
from workers.webhooks.errors import WebhookConnectError, WebhookRefused, WebhookTimeout

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("status", "verdict", "error"),
    [
        (200, Verdict.DELIVERED, None),
        (202, Verdict.DELIVERED, None),
        (204, Verdict.DELIVERED, None),
        (400, Verdict.REJECTED, "http_400"),
        (401, Verdict.REJECTED, "http_401"),
        (404, Verdict.REJECTED, "http_404"),
        (422, Verdict.REJECTED, "http_422"),
        (410, Verdict.GONE, "http_410"),
        (429, Verdict.RETRY, "http_429"),
        (500, Verdict.RETRY, "http_500"),
        (502, Verdict.RETRY, "http_502"),
        (503, Verdict.RETRY, "http_503"),
        (301, Verdict.REJECTED, "redirect_not_followed"),
        (307, Verdict.REJECTED, "redirect_not_followed"),
    ],
)
def test_classify_answers(status: int, verdict: Verdict, error: str | None) -> None:
    c = classify_answer(status, None, NOW)
    assert (c.verdict, c.error, c.retry_after) == (verdict, error, None)


def test_retry_after_is_read_on_429_and_5xx() -> None:
    assert classify_answer(429, "120", NOW).retry_after == 120
    date = email.utils.formatdate(NOW + 90, usegmt=True)
    assert classify_answer(503, date, NOW).retry_after == pytest.approx(90)
    assert classify_answer(400, "120", NOW).retry_after is None  # not retried at all
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after(None, NOW) is None
    assert parse_retry_after(email.utils.formatdate(NOW - 50, usegmt=True), NOW) == 0


def test_classify_errors() -> None:
    assert classify_error(WebhookTimeout("t")).verdict == Verdict.RETRY
    assert classify_error(WebhookTimeout("t")).error == "timeout"
    assert classify_error(WebhookConnectError("c")).error == "connect_error"
    assert classify_error(WebhookConnectError("c")).verdict == Verdict.RETRY
    assert classify_error(WebhookRefused("r")).verdict == Verdict.REFUSED
    assert classify_error(WebhookRefused("r")).error == "url_refused"


class Extreme(random.Random):
    """``uniform`` always at one end: the fastest or the slowest schedule jitter allows."""

    def __init__(self, high: bool) -> None:
        super().__init__(0)
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


def schedule(backoff: WebhookBackoff) -> list[float]:
    """Times (from creation) of every attempt of a delivery that always fails."""
    t, attempt, times = 0.0, 1, [0.0]
    while True:
        nxt = backoff.next_attempt(attempt, 0.0, t)
        if nxt is None:
            return times
        t, attempt = nxt, attempt + 1
        times.append(t)


@pytest.mark.parametrize("high", [False, True])
@pytest.mark.parametrize("window_h", [24.0, 26.0])
def test_schedule_covers_the_window(high: bool, window_h: float) -> None:
    policy = RetryPolicy(max_attempts=1_000, base_s=5.0, cap_s=3600.0, rng=Extreme(high))
    times = schedule(WebhookBackoff(window_s=window_h * 3600, policy=policy))
    assert times[-1] >= window_h * 3600  # retried for at least the whole window
    assert times[-1] <= window_h * 3600 + 3600  # and not much longer
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert 2.5 <= gaps[0] <= 5.0  # a blip is retried within seconds
    assert all(b >= a for a, b in itertools.pairwise(gaps[:10]))  # growing
    assert max(gaps) <= 3600.0  # about hourly at most
    assert 20 <= len(times) <= 70


def test_default_backoff_has_jitter_within_bounds() -> None:
    b = WebhookBackoff()
    for attempt in range(1, 30):
        raw = min(3600.0, 5.0 * 2 ** (attempt - 1))
        assert raw / 2 <= b.delay(attempt) <= raw


def test_retry_after_is_honoured_and_capped() -> None:
    b = WebhookBackoff()
    assert b.delay(1, retry_after=600) >= 600
    assert b.delay(1, retry_after=10 * 86400) == 6 * 3600
    assert b.delay(1, retry_after=-5) <= 5


def test_window_ends_retries() -> None:
    b = WebhookBackoff(window_s=3600)
    assert b.next_attempt(3, created_at=NOW, now=NOW + 3599) is not None
    assert b.next_attempt(3, created_at=NOW, now=NOW + 3600) is None
