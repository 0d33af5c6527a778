"""Sending a chunk of messages: plain Python, no Celery, tested without a broker.

Order of work per sub-batch, and why:
1. take rate-limit tokens (charged per SMS part) — waiting here is not an attempt;
2. claim the messages (queued → sending, compare-and-set) — a redelivered chunk claims nothing
   it already sent, so it cannot send twice;
3. call the carrier with our message id as client reference;
4. record the outcome (sent / retrying / rejected / failed / expired) in the log.
Claims are taken only after the tokens, so a message is in "sending" only for the length of a
carrier call, and a crash leaves few claims for the reconciler to check.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import structlog

from dispatcher.contract import Status
from dispatcher.store.progress import Failure, Sent
from workers import metrics
from workers.connectors.base import Connector, Outbound, SubmitResult
from workers.errors import CarrierError, ClaimExpired, PermanentCarrierError, ThrottledError
from workers.retry import RetryPolicy

T = TypeVar("T")
log = structlog.get_logger(component="sender")
R = TypeVar("R")


class ProgressStore(Protocol):
    """The message-log operations the sender needs (sync; run off the event loop)."""

    def claim(self, ids: Sequence[str], connection: str, now: float) -> dict[str, float]: ...
    def expire_overdue(self, ids: Sequence[str], now: float) -> list[str]: ...
    def record_sent(self, sent: Sequence[Sent], now: float) -> int: ...
    def record_failures(
        self, failures: Sequence[Failure], now: float, expected: str = Status.SENDING
    ) -> int: ...
    def defer(self, ids: Sequence[str], until: float, now: float, reason: str) -> int: ...
    def release(self, ids: Sequence[str], until: float, now: float, reason: str) -> int: ...


class TokenSource(Protocol):
    """The rate limiter as the sender sees it."""

    async def wait_for(self, costs: Sequence[int], max_wait: float) -> tuple[int, float]:
        """Grant a prefix of ``costs``; ``(0, _)`` when ``max_wait`` ran out."""
        ...


@dataclass
class ChunkReport:
    """What happened to a chunk (for logs, metrics and tests)."""

    total: int = 0
    skipped: int = 0  # already claimed or done (redelivery)
    sent: int = 0
    retrying: int = 0
    rejected: int = 0
    failed: int = 0
    expired: int = 0
    deferred: int = 0
    reconciled: int = 0
    abandoned: int = 0  # claim aged past the send deadline (a stalled process): reconciler's
    errors: dict[str, int] = field(default_factory=dict)


@dataclass
class SenderOptions:
    """Knobs of one sender (per lane)."""

    sub_batch: int = 200
    max_in_flight: int = 64
    rate_wait_max_s: float = 20.0
    defer_s: float = 1.0
    # No carrier call starts later than this after its claim. The reconciler looks at claims
    # only after ``sending_stale_s`` ≥ this + the carrier timeout, so it never races a request
    # that is still on its way (a process stalled between claim and send cannot send late).
    send_deadline_s: float = 60.0
    lane: str = "bulk"  # the lane it sends for (metrics labels)


async def run_pool(items: Sequence[T], fn: Callable[[T], Awaitable[R]], width: int) -> list[R]:
    """Apply ``fn`` to ``items`` with at most ``width`` running at once; results in order."""
    results: list[Any] = [None] * len(items)
    it = iter(range(len(items)))

    async def worker() -> None:
        for i in it:
            results[i] = await fn(items[i])

    await asyncio.gather(*(worker() for _ in range(min(width, len(items)))))
    return results


class ChunkSender:
    """Sends the messages of one chunk through one connector."""

    def __init__(
        self,
        store: ProgressStore,
        connector: Connector,
        tokens: TokenSource,
        policy: RetryPolicy,
        options: SenderOptions | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.connector = connector
        self.tokens = tokens
        self.policy = policy
        self.options = options or SenderOptions()
        self.clock = clock

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        # The log is sync (SQLAlchemy); keep the event loop free for in-flight carrier calls.
        return await asyncio.to_thread(fn, *args)

    async def run(self, messages: Sequence[dict[str, Any]]) -> ChunkReport:
        """Send ``messages`` (task payload dicts); every one ends recorded in some state."""
        report = ChunkReport(total=len(messages))
        todo = list(messages)
        wait_limit = time.monotonic() + self.options.rate_wait_max_s
        pos = 0
        recording: list[asyncio.Task[None]] = []
        while pos < len(todo):
            window = todo[pos : pos + self.options.sub_batch]
            pos += len(window)
            now = self.clock()
            claimed = await self._db(
                self.store.claim, [m["id"] for m in window], self.connector.name, now
            )
            send_by = time.monotonic() + self.options.send_deadline_s
            if len(claimed) < len(window):
                # Not claimable: past validity (expire it, never send), or already taken or
                # done by an earlier delivery of this chunk (skip it).
                rest = [m["id"] for m in window if m["id"] not in claimed]
                expired = await self._db(self.store.expire_overdue, rest, now)
                report.expired += len(expired)
                metrics.record_expired(self.options.lane, self.connector.name, len(expired))
                report.skipped += len(rest) - len(expired)
            # The log's validity, not the payload's, bounds retries.
            take = [{**m, "valid_until": claimed[m["id"]]} for m in window if m["id"] in claimed]
            # Tokens are taken right before each send, so what the carrier sees follows the
            # limiter's schedule; sends of granted messages run while we wait for more tokens.
            sends: list[asyncio.Future[dict[str, SubmitResult]]] = []
            granted_total = 0
            while granted_total < len(take):
                budget = min(wait_limit, send_by) - time.monotonic()
                rest = take[granted_total:]
                granted, _ = await self.tokens.wait_for([m["parts"] for m in rest], max(0, budget))
                if granted == 0:
                    break
                part = rest[:granted]
                sends.append(asyncio.ensure_future(self._send(part, report, send_by)))
                granted_total += granted
            results: dict[str, SubmitResult] = {}
            for done in await asyncio.gather(*sends):
                results.update(done)
            sent_msgs = take[:granted_total]
            if sent_msgs:
                recording.append(asyncio.ensure_future(self._record(sent_msgs, results, report)))
            if granted_total < len(take):
                # The limiter is saturated: hand back what we claimed but could not send, and
                # park the rest of the chunk, without spending attempts on either.
                now = self.clock()
                until = now + self.options.defer_s
                unsent = [m["id"] for m in take[granted_total:]]
                report.deferred += await self._db(
                    self.store.release, unsent, until, now, "rate_limited"
                )
                later = [m["id"] for m in todo[pos:]]
                report.deferred += await self._db(
                    self.store.defer, later, until, now, "rate_limited"
                )
                metrics.record_deferred(
                    self.options.lane, self.connector.name, len(unsent) + len(later)
                )
                break
        if recording:
            await asyncio.gather(*recording)
        return report

    async def _send(
        self, msgs: Sequence[dict[str, Any]], report: ChunkReport, deadline: float
    ) -> dict[str, SubmitResult]:
        out: dict[str, SubmitResult] = {}
        # A retried message may have reached the carrier before a timeout: ask before resending.
        retried = [m["id"] for m in msgs if m.get("attempt", 0) > 0]
        if retried:
            try:
                found = await self.connector.lookup(retried)
            except CarrierError:
                found = None
            for ref, cid in (found or {}).items():
                out[ref] = SubmitResult(ref, cid, 200, 0.0)
                report.reconciled += 1
        pending = [_outbound(m) for m in msgs if m["id"] not in out]
        if self.connector.max_batch > 1:
            groups: dict[tuple[str, str, bool], list[Outbound]] = {}
            for o in pending:
                groups.setdefault((o.sender, o.text, o.flash), []).append(o)
            singles = [g[0] for g in groups.values() if len(g) == 1]
            batches = [
                g[i : i + self.connector.max_batch]
                for g in groups.values()
                if len(g) > 1
                for i in range(0, len(g), self.connector.max_batch)
            ]

            async def one_batch(batch: list[Outbound]) -> list[SubmitResult]:
                if time.monotonic() > deadline:
                    return [SubmitResult(o.ref, None, None, 0.0, ClaimExpired()) for o in batch]
                rs = await self.connector.submit_batch(batch)
                metrics.record_carrier_call(self.connector.name, "batch", rs)
                return rs

            batch_results = await run_pool(
                batches, one_batch, max(1, self.options.max_in_flight // 8)
            )
            for rs in batch_results:
                out.update((r.ref, r) for r in rs)
        else:
            singles = pending

        async def one(o: Outbound) -> SubmitResult:
            if time.monotonic() > deadline:
                return SubmitResult(o.ref, None, None, 0.0, ClaimExpired())
            r = await self.connector.submit(o)
            metrics.record_carrier_call(self.connector.name, "single", [r])
            return r

        single_results = await run_pool(singles, one, self.options.max_in_flight)
        out.update((r.ref, r) for r in single_results)
        return out

    async def _record(
        self, msgs: Sequence[dict[str, Any]], results: dict[str, SubmitResult], report: ChunkReport
    ) -> None:
        now = self.clock()
        sent: list[Sent] = []
        failures: list[Failure] = []
        by_id = {m["id"]: m for m in msgs}
        for m in msgs:
            r = results[m["id"]]
            if r.ok:
                assert r.carrier_id is not None
                sent.append(Sent(m["id"], r.carrier_id, r.http_status or 200, r.latency_ms))
                continue
            err = r.error
            assert err is not None
            if isinstance(err, ClaimExpired):
                report.abandoned += 1  # left in "sending": the reconciler asks the carrier
                continue
            report.errors[err.code] = report.errors.get(err.code, 0) + 1
            failures.append(self._failure(m, r, err, now))
        if sent:
            report.sent += await self._db(self.store.record_sent, sent, now)
            metrics.record_sent(
                self.options.lane, self.connector.name, [by_id[s.id] for s in sent], now
            )
        if failures:
            await self._db(self.store.record_failures, failures, now)
            metrics.record_failures(self.options.lane, self.connector.name, failures)
            for f, m in zip(failures, (by_id[f.id] for f in failures), strict=True):
                log.info(
                    "message.attempt_failed",
                    message_id=f.id,
                    account=m["account"],
                    connection=self.connector.name,
                    code=f.code,
                    next_status=f.status,
                    http_status=f.http_status,
                )
            for f in failures:
                if f.status == Status.RETRYING:
                    report.retrying += 1
                elif f.status == Status.REJECTED:
                    report.rejected += 1
                elif f.status == Status.EXPIRED:
                    report.expired += 1
                else:
                    report.failed += 1

    def _failure(
        self, m: dict[str, Any], r: SubmitResult, err: CarrierError, now: float
    ) -> Failure:
        def failure(status: str, permanent: bool, next_at: float | None = None) -> Failure:
            return Failure(
                m["id"],
                status,
                err.code,
                err.description,
                permanent,
                r.http_status,
                r.latency_ms,
                next_at,
            )

        if isinstance(err, PermanentCarrierError) or not err.retryable:
            return failure(Status.REJECTED, True)
        attempt = int(m.get("attempt", 0)) + 1
        if self.policy.exhausted(attempt):
            return failure(Status.FAILED, False)
        retry_after = err.retry_after if isinstance(err, ThrottledError) else None
        next_at = now + self.policy.delay(attempt, retry_after)
        if next_at >= m["valid_until"]:
            return failure(Status.EXPIRED, True)
        return failure(Status.RETRYING, False, next_at)


def _outbound(m: dict[str, Any]) -> Outbound:
    return Outbound(m["id"], m["to"], m["sender"], m["text"], m["parts"], m.get("flash", False))
