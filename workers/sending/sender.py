"""Sending a chunk of messages: plain Python, no Celery, tested without a broker.

Order of work per sub-batch, and why:
1. choose a connection per message (routing table, breakers; :mod:`workers.connectors.chooser`)
   — a message whose every route is down waits, without spending an attempt;
2. per connection: claim the messages (queued → sending, compare-and-set) — a redelivered
   chunk claims nothing it already sent, so it cannot send twice;
3. take that connection's rate-limit tokens (charged per SMS part) right before each send —
   waiting here is not an attempt;
4. call the carrier with our message id as client reference (inside the connection's in-flight
   window), and count the call's health in the connection's breaker;
5. record the outcome (sent / retrying / rejected / failed / expired) in the log.

Longer than 400 lines on purpose: the steps above are one algorithm over one sub-batch, and
splitting it would scatter the claim-to-record path a reader must see whole.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import structlog

from dispatcher.contract import AMBIGUOUS_CODES, MessagePayload, Status
from dispatcher.ratelimit import RateLimitUnavailable
from dispatcher.sms.quiet_hours import SendWindow, next_open, zones_for
from dispatcher.store.progress import Claim, Failure, Sent
from workers import metrics
from workers.connectors.base import Connector, Outbound, SubmitResult
from workers.connectors.chooser import Plan, RouteChooser
from workers.connectors.window import InFlightWindow, WindowFull
from workers.errors import (
    CarrierError,
    ClaimExpired,
    PermanentCarrierError,
    ThrottledError,
)
from workers.sending.breaker import is_health_failure
from workers.sending.retry import RetryPolicy

T = TypeVar("T")
log = structlog.get_logger(component="sender")
R = TypeVar("R")

# Outcomes that end a message's retries: after an ambiguous attempt, not recorded blindly.
FINAL_AFTER_RETRY = frozenset({Status.FAILED, Status.EXPIRED})


class ProgressStore(Protocol):
    """The message-log operations the sender needs (sync; run off the event loop)."""

    def claim(self, ids: Sequence[str], connection: str, now: float) -> dict[str, Claim]: ...
    def expire_overdue(self, ids: Sequence[str], now: float) -> list[str]: ...
    def record_sent(self, sent: Sequence[Sent], now: float) -> int: ...
    def record_failures(
        self,
        failures: Sequence[Failure],
        now: float,
        expected: str = Status.SENDING,
        connection: str | None = None,
    ) -> int: ...
    def defer(self, ids: Sequence[str], until: float, now: float, reason: str) -> int: ...
    def release(self, ids: Sequence[str], until: float, now: float, reason: str) -> int: ...
    def last_connections(self, ids: Sequence[str]) -> dict[str, str]: ...


class TokenSource(Protocol):
    """The rate limiter as the sender sees it."""

    async def wait_for(self, costs: Sequence[int], max_wait: float) -> tuple[int, float]:
        """Grant a prefix of ``costs``; ``(0, _)`` when ``max_wait`` ran out."""
        ...


@dataclass
class Route:
    """What the sender needs to send over one connection."""

    name: str
    connector: Connector
    tokens: TokenSource
    window: InFlightWindow | None = None  # None: only the per-process limit applies


class PreviousAttemptUnverified(CarrierError):
    """A message's previous attempt ended ambiguously (a timeout: it may have arrived) and its
    carrier cannot be asked now whether it has it. Resending could deliver it twice (carriers
    need not deduplicate by our reference), so the claim is handed back without spending the
    attempt until the carrier answers or the validity ends. One exception: a priority message
    whose carrier is down goes out over another connection at once, because a late or missing
    OTP costs the user more than a second copy."""

    def __init__(self) -> None:
        super().__init__("previous_unverified", "previous carrier cannot be asked yet")


class WindowFullError(CarrierError):
    """No in-flight slot of the connection came free in time: nothing was sent; the claim is
    handed back without spending the attempt."""

    def __init__(self) -> None:
        super().__init__("window_full", "connection's in-flight window stayed full")


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
    waiting: int = 0  # every route down: parked without an attempt
    unroutable: int = 0
    reconciled: int = 0
    abandoned: int = 0  # claim aged past the send deadline (a stalled process): reconciler's
    unverified: int = 0  # last attempt ended ambiguously: left "sending" for the reconciler
    errors: dict[str, int] = field(default_factory=dict)
    connections: dict[str, int] = field(default_factory=dict)  # messages handed to each


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
    route_wait_s: float = 2.0  # longest wait of a message whose every route is down
    # Quiet hours: the zone of a country's numbers where the operator set one (docs/campaigns.md).
    window_zones: Mapping[str, str] = field(default_factory=dict)


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
    """Sends the messages of one chunk over the connections their routes choose.

    With one route and no chooser every message goes to that route (the implicit ``default``
    connection, and the unit tests).
    """

    def __init__(
        self,
        store: ProgressStore,
        routes: Route | Sequence[Route],
        policy: RetryPolicy,
        options: SenderOptions | None = None,
        clock: Callable[[], float] = time.time,
        chooser: RouteChooser | None = None,
    ) -> None:
        self.store = store
        self.routes = {r.name: r for r in ([routes] if isinstance(routes, Route) else routes)}
        self.chooser = chooser
        self.policy = policy
        self.options = options or SenderOptions()
        self.clock = clock
        self._recording: list[asyncio.Future[None]] = []

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        # The log is sync (SQLAlchemy); keep the event loop free for in-flight carrier calls.
        return await asyncio.to_thread(fn, *args)

    async def _plan(self, window: Sequence[MessagePayload]) -> Plan:
        if self.chooser is None:
            (only,) = self.routes.values()
            return Plan(by_connection={only.name: list(window)})
        return await self.chooser.plan(window, self.options.lane)

    async def run(self, messages: Sequence[MessagePayload]) -> ChunkReport:
        """Send ``messages`` (task payload dicts); every one ends recorded in some state."""
        report = ChunkReport(total=len(messages))
        todo = list(messages)
        wait_limit = time.monotonic() + self.options.rate_wait_max_s
        try:
            await self._windows(todo, report, wait_limit)
        finally:
            # Recording runs behind the next window's sends; it must finish even when a
            # window raises (limiter down), or sent messages stay in "sending" until the
            # reconciler asks the carrier (found by CI: the record raced the raise).
            pending, self._recording = self._recording, []
            outcomes = await asyncio.gather(*pending, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return report

    async def _windows(
        self, todo: Sequence[MessagePayload], report: ChunkReport, wait_limit: float
    ) -> None:
        pos = 0
        saturated: set[str] = set()
        while pos < len(todo):
            window = todo[pos : pos + self.options.sub_batch]
            pos += len(window)
            plan = await self._plan(window)
            await self._unsendable(plan, report)
            parked = [m for n in saturated for m in plan.by_connection.pop(n, [])]
            if parked:
                await self._park(parked, "rate_limited", report, "+".join(sorted(saturated)))
            names = list(plan.by_connection)
            full = await asyncio.gather(
                *(
                    self._over(
                        self.routes[n],
                        plan.by_connection[n],
                        plan.probes.get(n, set()),
                        report,
                        wait_limit,
                    )
                    for n in names
                ),
                # Let every connection's window finish (and hand back what it claimed)
                # before one connection's failure ends the chunk.
                return_exceptions=True,
            )
            for f in full:
                if isinstance(f, BaseException):
                    raise f
            saturated.update(n for n, f in zip(names, full, strict=True) if f)
            if saturated and saturated >= set(self.routes):
                # Every connection's limiter is saturated: park the rest of the chunk at once,
                # without spending attempts.
                later = todo[pos:]
                if later:
                    await self._park(later, "rate_limited", report, "+".join(sorted(saturated)))
                break

    async def _park(
        self,
        msgs: Sequence[MessagePayload],
        reason: str,
        report: ChunkReport,
        label: str,
        wait_s: float | None = None,
    ) -> int:
        now = self.clock()
        until = now + (self.options.defer_s if wait_s is None else wait_s)
        n = await self._db(self.store.defer, [m["id"] for m in msgs], until, now, reason)
        report.deferred += n
        metrics.record_deferred(self.options.lane, label, len(msgs))
        return n

    async def _unsendable(self, plan: Plan, report: ChunkReport) -> None:
        if plan.waiting:
            # Every route is down: wait for the first breaker to allow a probe, within bounds.
            wait = max(self.options.defer_s, min(plan.wait_s, self.options.route_wait_s))
            waiting = await self._park(plan.waiting, "no_route_available", report, "none", wait)
            report.waiting += waiting
            log.warning(
                "route.all_down", lane=self.options.lane, messages=len(plan.waiting), wait_s=wait
            )
        if plan.unroutable:
            # Accepted while a route existed; the configuration no longer has one.
            now = self.clock()
            failures = [
                Failure(
                    m["id"],
                    Status.REJECTED,
                    "no_route",
                    "no carrier connection serves this destination",
                    True,
                )
                for m in plan.unroutable
            ]
            refused = await self._db(self.store.record_failures, failures, now, Status.QUEUED, None)
            report.unroutable += refused
            report.rejected += len(failures)
            metrics.record_failures(self.options.lane, "none", failures)
            log.warning("route.none", lane=self.options.lane, messages=len(failures))

    async def _over(
        self,
        route: Route,
        window: Sequence[MessagePayload],
        probes: set[str],
        report: ChunkReport,
        wait_limit: float,
    ) -> bool:
        """Claim, send and record ``window`` over ``route``; True when its limiter saturated."""
        previous: dict[str, str] = {}
        if len(self.routes) > 1:  # read before the claim, which overwrites it
            previous = await self._db(self.store.last_connections, [m["id"] for m in window])
        now = self.clock()
        claims = await self._db(self.store.claim, [m["id"] for m in window], route.name, now)
        # Which claimed messages ended their last attempt ambiguously, from the log, not from
        # the payload: a redelivered task carries the attempt count of its first delivery
        # (found by the chaos run: 8 resends without a look-up). See PreviousAttemptUnverified.
        unsure = {i for i, c in claims.items() if c.last_error in AMBIGUOUS_CODES}
        send_by = time.monotonic() + self.options.send_deadline_s
        report.connections[route.name] = report.connections.get(route.name, 0) + len(claims)
        if len(claims) < len(window):
            # Not claimable: past validity (expire it, never send), or already taken or
            # done by an earlier delivery of this chunk (skip it).
            rest = [m["id"] for m in window if m["id"] not in claims]
            expired = await self._db(self.store.expire_overdue, rest, now)
            report.expired += len(expired)
            metrics.record_expired(self.options.lane, route.name, len(expired))
            report.skipped += len(rest) - len(expired)
            await self._release_probes(route, [i for i in rest if i in probes])
        closed = await self._outside_window(window, claims, now, report)
        await self._release_probes(route, [i for i in closed if i in probes])
        # The log's validity, not the payload's, bounds retries.
        take: list[MessagePayload] = [
            {**m, "valid_until": claims[m["id"]].valid_until} for m in window if m["id"] in claims
        ]
        # Tokens are taken right before each send, so what the carrier sees follows the
        # limiter's schedule; sends of granted messages run while we wait for more tokens.
        sends: list[asyncio.Future[dict[str, SubmitResult]]] = []
        granted_total = 0
        limiter_down: RateLimitUnavailable | None = None
        while granted_total < len(take):
            budget = min(wait_limit, send_by) - time.monotonic()
            rest_msgs = take[granted_total:]
            try:
                granted, _ = await route.tokens.wait_for(
                    [m["parts"] for m in rest_msgs], max(0, budget)
                )
            except RateLimitUnavailable as exc:
                # Found by the chaos run: re-raising at once left the claimed messages in
                # "sending" until the reconciler (minutes for an OTP). Record what is in
                # flight, hand the rest back below, then let the task retry.
                limiter_down = exc
                break
            if granted == 0:
                break
            part = rest_msgs[:granted]
            sends.append(
                asyncio.ensure_future(
                    self._send(route, part, report, send_by, probes, previous, unsure)
                )
            )
            granted_total += granted
        results: dict[str, SubmitResult] = {}
        for done in await asyncio.gather(*sends):
            results.update(done)
        sent_msgs = take[:granted_total]
        if sent_msgs:
            self._recording.append(
                asyncio.ensure_future(self._record(route, sent_msgs, results, report))
            )
        if granted_total == len(take):
            return False
        # The limiter is saturated: hand back what we claimed but could not send, without
        # spending attempts.
        now = self.clock()
        unsent = [m["id"] for m in take[granted_total:]]
        reason = "rate_limited" if limiter_down is None else "rate_limiter_unavailable"
        handed_back = await self._db(
            self.store.release, unsent, now + self.options.defer_s, now, reason
        )
        report.deferred += handed_back
        metrics.record_deferred(self.options.lane, route.name, len(unsent))
        await self._release_probes(route, [i for i in unsent if i in probes])
        if limiter_down is not None:
            raise limiter_down
        return True

    async def _outside_window(
        self,
        msgs: Sequence[MessagePayload],
        claims: dict[str, Claim],
        now: float,
        report: ChunkReport,
    ) -> list[str]:
        """Hand back (attempt refunded) the claimed messages whose send window is closed now,
        until it opens: a backlog or a retry reached the end of their quiet-hours window.
        Removed from ``claims``; their validity still bounds the wait (the scheduler expires
        them)."""
        until: dict[float, list[str]] = {}
        for m in msgs:
            c = claims.get(m["id"])
            if c is None or c.window is None:
                continue
            zones = zones_for(m["to"], self.options.window_zones)
            opens = next_open(now, SendWindow(*c.window), zones)
            if opens > now:
                until.setdefault(opens, []).append(m["id"])
        for at, ids in until.items():
            report.deferred += await self._db(self.store.release, ids, at, now, "quiet_hours")
            for i in ids:
                del claims[i]
        return [i for ids in until.values() for i in ids]

    async def _release_probes(self, route: Route, ids: Sequence[str]) -> None:
        if self.chooser is not None and self.chooser.breakers is not None:
            for _ in ids:
                await self.chooser.breakers.release_probe(route.name)

    async def _health(self, route: Route, rs: Sequence[SubmitResult], probes: set[str]) -> None:
        """Count one carrier call in the connection's breaker."""
        breakers = self.chooser.breakers if self.chooser is not None else None
        if breakers is None or not rs or isinstance(rs[0].error, ClaimExpired | WindowFullError):
            return
        ok = not any(is_health_failure(r.error) for r in rs)
        n_probes = sum(1 for r in rs if r.ref in probes)
        for _ in range(max(1, n_probes)):
            await breakers.record(route.name, ok, probe=n_probes > 0)

    async def _lookup(
        self, route: Route, retried: Sequence[str], previous: dict[str, str]
    ) -> tuple[dict[str, str], set[str]]:
        """A retried message may have reached a carrier before a timeout: ask the connection
        of its previous attempt before resending. Returns what was found there, and the refs
        whose previous connection (another one than ``route``) could not be asked."""
        by_conn: dict[str, list[str]] = {}
        for ref in retried:
            by_conn.setdefault(previous.get(ref) or route.name, []).append(ref)
        found: dict[str, str] = {}
        unasked: set[str] = set()
        for name, refs in by_conn.items():
            connector = self.routes[name].connector if name in self.routes else route.connector
            try:
                answer = await connector.lookup(refs)
            except CarrierError:
                unasked.update(refs)
                continue
            if answer is None:  # the carrier cannot tell (an SMPP submit left unanswered)
                unasked.update(refs)
            else:
                found.update(answer)
        return found, unasked

    async def _send(
        self,
        route: Route,
        msgs: Sequence[MessagePayload],
        report: ChunkReport,
        deadline: float,
        probes: set[str],
        previous: dict[str, str],
        unsure: Collection[str] = (),
    ) -> dict[str, SubmitResult]:
        out: dict[str, SubmitResult] = {}
        connector = route.connector
        retried = [m["id"] for m in msgs if m.get("attempt", 0) > 0 or m["id"] in unsure]
        if retried:
            found, unasked = await self._lookup(route, retried, previous)
            for ref, cid in found.items():
                out[ref] = SubmitResult(ref, cid, 200, 0.0)
                report.reconciled += 1
            for ref in unasked.intersection(unsure):
                # Priority fails over to another connection at once; on the same one, or in
                # bulk, it waits until the carrier can say whether it has it.
                moved = previous.get(ref, route.name) != route.name
                if not (moved and self.options.lane == "priority"):
                    out[ref] = SubmitResult(ref, None, None, 0.0, PreviousAttemptUnverified())
            # A held or reconciled message calls no carrier: its probe slot goes back now, or
            # held messages would keep the probe slots and the breaker would never close
            # (found by the SMPP test of an SMSC killed mid-window).
            held = [r for r in out if r in probes]
            await self._release_probes(route, held)
        pending = [_outbound(m, self.options.lane) for m in msgs if m["id"] not in out]

        async def call(
            batch: Sequence[Outbound], fn: Callable[[], Awaitable[list[SubmitResult]]], kind: str
        ) -> list[SubmitResult]:
            if time.monotonic() > deadline:
                return [SubmitResult(o.ref, None, None, 0.0, ClaimExpired()) for o in batch]
            try:
                if route.window is None:
                    rs = await fn()
                else:
                    async with route.window.slot(deadline):
                        rs = await fn()
            except WindowFull:
                return [SubmitResult(o.ref, None, None, 0.0, WindowFullError()) for o in batch]
            metrics.record_carrier_call(route.name, kind, rs)
            await self._health(route, rs, probes)
            return rs

        if connector.max_batch > 1:
            groups: dict[tuple[str, str, bool], list[Outbound]] = {}
            for o in pending:
                groups.setdefault((o.sender, o.text, o.flash), []).append(o)
            singles = [g[0] for g in groups.values() if len(g) == 1]
            batches = [
                g[i : i + connector.max_batch]
                for g in groups.values()
                if len(g) > 1
                for i in range(0, len(g), connector.max_batch)
            ]

            async def one_batch(batch: list[Outbound]) -> list[SubmitResult]:
                return await call(batch, lambda: connector.submit_batch(batch), "batch")

            batch_results = await run_pool(
                batches, one_batch, max(1, self.options.max_in_flight // 8)
            )
            for rs in batch_results:
                out.update((r.ref, r) for r in rs)
        else:
            singles = pending

        async def one(o: Outbound) -> SubmitResult:
            async def submit() -> list[SubmitResult]:
                return [await connector.submit(o)]

            return (await call([o], submit, "single"))[0]

        single_results = await run_pool(singles, one, self.options.max_in_flight)
        out.update((r.ref, r) for r in single_results)
        return out

    async def _record(
        self,
        route: Route,
        msgs: Sequence[MessagePayload],
        results: dict[str, SubmitResult],
        report: ChunkReport,
    ) -> None:
        now = self.clock()
        sent: list[Sent] = []
        failures: list[Failure] = []
        unsent: dict[str, list[str]] = {}
        held: list[str] = []
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
            if isinstance(err, WindowFullError) or not err.spends_attempt:
                unsent.setdefault(err.code, []).append(m["id"])
                continue
            if isinstance(err, PreviousAttemptUnverified):
                held.append(m["id"])
                continue
            report.errors[err.code] = report.errors.get(err.code, 0) + 1
            failure = self._failure(m, r, err, now)
            if failure.status in FINAL_AFTER_RETRY and err.ambiguous:
                # The last attempt may have reached the carrier (it timed out, or the
                # connection dropped after the write): "failed" or "expired" could be false,
                # with a delivery report on its way. Leave the claim to the reconciler, which
                # asks the carrier and records sent or tries again (found by the long chaos
                # run: a timed-out last attempt the carrier had taken, recorded failed).
                report.unverified += 1
                log.info(
                    "message.last_attempt_unverified",
                    message_id=m["id"],
                    connection=route.name,
                    code=err.code,
                )
                continue
            failures.append(failure)
        for reason, ids in unsent.items():
            # Certainly not sent (no window slot, throttled until the deadline): back unspent.
            n = await self._db(self.store.release, ids, now + self.options.defer_s, now, reason)
            report.deferred += n
            metrics.record_deferred(self.options.lane, route.name, len(ids))
        if held:
            n = await self._db(
                self.store.release, held, now + self.options.defer_s, now, "previous_unverified"
            )
            report.deferred += n
            metrics.record_deferred(self.options.lane, route.name, len(held))
            log.warning("route.previous_unverified", connection=route.name, messages=len(held))
        if sent:
            # Await before adding: `report.sent += await ...` reads the old total first, and
            # two recorders running at once lost an update (found by a flaky unit test).
            n = await self._db(self.store.record_sent, sent, now)
            report.sent += n
            metrics.record_sent(self.options.lane, route.name, [by_id[s.id] for s in sent], now)
        if failures:
            await self._db(self.store.record_failures, failures, now, Status.SENDING, route.name)
            metrics.record_failures(self.options.lane, route.name, failures)
            for f, m in zip(failures, (by_id[f.id] for f in failures), strict=True):
                log.info(
                    "message.attempt_failed",
                    message_id=f.id,
                    account=m["account"],
                    connection=route.name,
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
        self, m: MessagePayload, r: SubmitResult, err: CarrierError, now: float
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


def _outbound(m: MessagePayload, lane: str) -> Outbound:
    return Outbound(
        m["id"],
        m["to"],
        m["sender"],
        m["text"],
        m["parts"],
        m.get("flash", False),
        lane,
        m.get("valid_until"),
    )
