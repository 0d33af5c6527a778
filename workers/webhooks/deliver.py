"""Delivering webhooks, in plain Python (no Celery, no aiohttp: the poster and the store are
passed in).

For each id of a task: claim the delivery (compare-and-set, with a lease), sign its stored body
with the account's secret(s), POST it to the main URL and, when that fails with a timeout, a
connection error, 5xx, 429 or 410, to the secondary URL in the same attempt; record every try;
then move the delivery to ``delivered``, ``pending`` (backoff, ``Retry-After``), ``failed`` or
``disabled``. Endpoints disabled (410) or suspended (failing too long) are not called: their
deliveries go to the secondary URL, or end at once with the reason recorded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from dispatcher.config import Settings
from dispatcher.store.webhooks import DeliveryState, EndpointState
from dispatcher.webhooks.records import AttemptRecord, Claimed, Outcome
from dispatcher.webhooks.sign import webhook_headers
from dispatcher.webhooks.urls import safe_host
from workers.webhooks.backoff import WebhookBackoff
from workers.webhooks.classify import (
    Classified,
    HttpAnswer,
    Verdict,
    classify_answer,
    classify_error,
)
from workers.webhooks.errors import WebhookError

log = structlog.get_logger(component="webhooks")


class Poster(Protocol):
    """Sends one POST (see :class:`workers.webhooks.http.AiohttpPoster`)."""

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        """The answer, or a :class:`~workers.webhooks.errors.WebhookError`."""
        ...


class DeliveryStore(Protocol):
    """Claims and results in the log (see :class:`workers.webhooks.store.SqlDeliveryStore`)."""

    def claim(self, ids: Sequence[str], now: float, lease_s: float) -> list[Claimed]:
        """Claim what is still to be sent among ``ids``."""
        ...

    def record(self, outcomes: Sequence[Outcome], now: float) -> int:
        """Store attempts and move deliveries."""
        ...


@dataclass(frozen=True)
class DeliverOptions:
    """Tunables of the webhooks lane."""

    timeout_s: float = 5.0
    max_in_flight: int = 64  # deliveries claimed and posted at a time per process

    @property
    def claim_lease_s(self) -> float:
        """How long a claim is ours: two URLs at the full timeout, plus a margin."""
        return 2 * self.timeout_s + 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliverOptions:
        """Options from the ``webhook_*`` settings."""
        return cls(timeout_s=settings.webhook_timeout_s)


@dataclass
class DeliverReport:
    """What one task did."""

    claimed: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    disabled: int = 0


class WebhookDeliverer:
    """Delivers the webhooks named by a task."""

    def __init__(
        self,
        store: DeliveryStore,
        poster: Poster,
        backoff: WebhookBackoff,
        options: DeliverOptions,
        clock: Callable[[], float] = time.time,
        observe: Callable[[Sequence[Outcome]], None] | None = None,
    ) -> None:
        self.store = store
        self.observe = observe  # e.g. metrics, after each slice is recorded
        self.poster = poster
        self.backoff = backoff
        self.options = options
        self.clock = clock

    async def run(self, ids: Sequence[str]) -> DeliverReport:
        """Deliver ``ids`` (any not claimable any more are skipped), a slice at a time."""
        report = DeliverReport()
        unique = list(dict.fromkeys(ids))
        step = max(1, self.options.max_in_flight)
        for i in range(0, len(unique), step):
            claimed = self.store.claim(
                unique[i : i + step], self.clock(), self.options.claim_lease_s
            )
            if not claimed:
                continue
            outcomes = await asyncio.gather(*(self.deliver(c) for c in claimed))
            self.store.record(outcomes, self.clock())
            if self.observe is not None:
                self.observe(outcomes)
            report.claimed += len(claimed)
            for o in outcomes:
                self._count(report, o)
                self._log(o)
        return report

    async def deliver(self, c: Claimed) -> Outcome:
        """One attempt of a claimed delivery: main URL, then the fallback if needed."""
        body = c.payload.encode("utf-8")
        tries: list[AttemptRecord] = []
        retry_after: float | None = None
        for url in c.urls():
            state, reason = c.endpoints.get(url, (EndpointState.ACTIVE, None))
            if state != EndpointState.ACTIVE:
                verdict = Verdict.GONE if state == EndpointState.DISABLED else Verdict.REFUSED
                tries.append(
                    AttemptRecord(
                        url,
                        self.clock(),
                        verdict,
                        error=f"endpoint_{state}",
                        body=reason or f"endpoint {state}",
                        called=False,
                    )
                )
                continue
            attempt = await self._post(c, url, body)
            tries.append(attempt.record)
            if attempt.classified.retry_after is not None:
                retry_after = max(retry_after or 0.0, attempt.classified.retry_after)
            if attempt.classified.verdict in (Verdict.DELIVERED, Verdict.REJECTED):
                break
        return self._decide(c, tries, retry_after)

    async def _post(self, c: Claimed, url: str, body: bytes) -> _Attempt:
        at = self.clock()
        headers = webhook_headers(c.id, body, c.secrets, at)
        started = time.perf_counter()
        try:
            answer = await self.poster.post(url, body, headers)
        except WebhookError as exc:
            cl = classify_error(exc)
            latency = (time.perf_counter() - started) * 1000
            rec = AttemptRecord(
                url,
                at,
                cl.verdict,
                latency_ms=None if cl.verdict == Verdict.REFUSED else latency,
                error=cl.error,
                body=exc.reason,
                called=cl.verdict != Verdict.REFUSED,
            )
            return _Attempt(rec, cl)
        cl = classify_answer(answer.status, answer.retry_after, self.clock())
        rec = AttemptRecord(
            url, at, cl.verdict, answer.status, answer.latency_ms, cl.error, answer.body
        )
        return _Attempt(rec, cl)

    def _decide(self, c: Claimed, tries: list[AttemptRecord], retry_after: float | None) -> Outcome:
        now = self.clock()
        verdicts = {t.verdict for t in tries}
        last_code = next((t.status_code for t in reversed(tries) if t.status_code), None)
        out = Outcome(c, DeliveryState.FAILED, tries, last_status_code=last_code)
        if Verdict.DELIVERED in verdicts:
            out.state, out.delivered_at = DeliveryState.DELIVERED, now
        elif Verdict.RETRY in verdicts:
            nxt = self.backoff.next_attempt(c.attempts, c.created_at, now, retry_after)
            if nxt is not None:
                out.state, out.next_attempt_at = DeliveryState.PENDING, nxt
        elif verdicts == {Verdict.GONE}:
            out.state = DeliveryState.DISABLED
        return out

    @staticmethod
    def _count(report: DeliverReport, o: Outcome) -> None:
        if o.state == DeliveryState.DELIVERED:
            report.delivered += 1
        elif o.state == DeliveryState.PENDING:
            report.retrying += 1
        elif o.state == DeliveryState.DISABLED:
            report.disabled += 1
        else:
            report.failed += 1

    @staticmethod
    def _log(o: Outcome) -> None:
        c = o.claimed
        last = o.attempts[-1] if o.attempts else None
        fields = {
            "delivery": c.id,
            "account": c.account_id,
            "webhook_event": c.event,
            "attempt": c.attempts,
            "state": o.state,
            "host": safe_host(last.url) if last else None,
            "status_code": last.status_code if last else None,
            "error": last.error if last else None,
            "tries": len(o.attempts),
        }
        if o.state == DeliveryState.PENDING:
            log.info("webhook.retry", next_attempt_at=o.next_attempt_at, **fields)
        elif o.state == DeliveryState.DELIVERED:
            log.info("webhook.delivered", **fields)
        else:
            log.warning("webhook.not_delivered", **fields)


@dataclass(frozen=True, slots=True)
class _Attempt:
    record: AttemptRecord
    classified: Classified
