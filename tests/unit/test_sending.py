"""The chunk sender's logic with an in-memory log, connector and limiter (no broker, no I/O)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from dispatcher.contract import AMBIGUOUS_CODES, Status
from dispatcher.ratelimit import (
    AsyncLimiter,
    AsyncMemoryRateLimitBackend,
    Rate,
    RateLimitUnavailable,
)
from dispatcher.store.progress import Claim, Failure, Sent
from workers.connectors.base import Outbound, SubmitResult
from workers.errors import (
    AmbiguousCarrierError,
    CarrierError,
    PermanentCarrierError,
    RetryableCarrierError,
    ThrottledError,
)
from workers.sending.breaker import Breakers, State
from workers.sending.retry import RetryPolicy
from workers.sending.sender import ChunkSender, Route, SenderOptions
from workers.sending.tokens import ConnectionTokens

NOW = 1_800_000_000.0


@dataclass
class Row:
    status: str = Status.QUEUED
    attempts: int = 0
    valid_until: float = NOW + 3600
    carrier_id: str | None = None
    error: str | None = None
    next_attempt_at: float | None = None
    connection: str | None = None


@dataclass
class MemoryLog:
    """The ProgressStore protocol over a dict, with the same compare-and-set rules."""

    rows: dict[str, Row] = field(default_factory=dict)

    def claim(self, ids: Sequence[str], connection: str, now: float) -> dict[str, Claim]:
        won = {}
        for i in ids:
            row = self.rows[i]
            if row.status == Status.QUEUED and row.valid_until > now:
                row.status = Status.SENDING
                row.attempts += 1
                row.connection = connection
                won[i] = Claim(row.valid_until, row.error)
        return won

    def expire_overdue(self, ids: Sequence[str], now: float) -> list[str]:
        out = []
        for i in ids:
            row = self.rows[i]
            if row.status == Status.QUEUED and row.valid_until <= now:
                row.status, row.error = Status.EXPIRED, "validity_expired"
                out.append(i)
        return out

    def record_sent(self, sent: Sequence[Sent], now: float) -> int:
        n = 0
        for s in sent:
            if self.rows[s.id].status == Status.SENDING:
                self.rows[s.id].status = Status.SENT
                self.rows[s.id].carrier_id = s.carrier_message_id
                n += 1
        return n

    def record_failures(
        self,
        failures: Sequence[Failure],
        now: float,
        expected: str = Status.SENDING,
        connection: str | None = None,
    ) -> int:
        n = 0
        for f in failures:
            if self.rows[f.id].status == expected:
                self.rows[f.id].status = f.status
                self.rows[f.id].error = f.code
                self.rows[f.id].next_attempt_at = f.next_attempt_at
                n += 1
        return n

    def defer(self, ids: Sequence[str], until: float, now: float, reason: str) -> int:
        return self._move(ids, Status.QUEUED, until, refund=False)

    def last_connections(self, ids: Sequence[str]) -> dict[str, str]:
        return {i: self.rows[i].connection for i in ids if self.rows[i].connection}

    def release(self, ids: Sequence[str], until: float, now: float, reason: str) -> int:
        return self._move(ids, Status.SENDING, until, refund=True)

    def _move(self, ids: Sequence[str], expected: str, until: float, refund: bool) -> int:
        n = 0
        for i in ids:
            if self.rows[i].status == expected:
                self.rows[i].status = Status.RETRYING
                self.rows[i].next_attempt_at = until
                self.rows[i].attempts -= int(refund)
                n += 1
        return n


@dataclass
class FakeCarrier:
    """Records submits; answers with the error planned for a ref, else accepts."""

    max_batch: int = 1
    name: str = "fake"
    plan: dict[str, CarrierError] = field(default_factory=dict)
    known: dict[str, str] = field(default_factory=dict)
    submits: list[str] = field(default_factory=list)
    batch_calls: int = 0
    lookup_error: CarrierError | None = None  # set: the carrier cannot be asked

    def _one(self, o: Outbound) -> SubmitResult:
        self.submits.append(o.ref)
        err = self.plan.get(o.ref)
        if err is not None:
            return SubmitResult(o.ref, None, err.http_status, 1.0, err)
        self.known[o.ref] = f"c-{o.ref}"
        return SubmitResult(o.ref, f"c-{o.ref}", 200, 1.0)

    async def submit(self, msg: Outbound) -> SubmitResult:
        await asyncio.sleep(0)
        return self._one(msg)

    async def submit_batch(self, msgs: Sequence[Outbound]) -> list[SubmitResult]:
        self.batch_calls += 1
        return [self._one(m) for m in msgs]

    async def lookup(self, refs: Sequence[str]) -> dict[str, str] | None:
        if self.lookup_error is not None:
            raise self.lookup_error
        return {r: self.known[r] for r in refs if r in self.known}

    async def close(self) -> None:
        return None


def payload(i: int, text: str = "hi", parts: int = 1, attempt: int = 0) -> dict[str, Any]:
    return {
        "id": f"m{i}",
        "account": 1,
        "to": f"+4811122{i:04d}",
        "sender": "ACME",
        "text": text,
        "parts": parts,
        "flash": False,
        "valid_until": NOW + 3600,
        "attempt": attempt,
    }


def make(
    log: MemoryLog, carrier: FakeCarrier, tps: float = 1e6, options: SenderOptions | None = None
) -> ChunkSender:
    tokens = ConnectionTokens(AsyncLimiter(AsyncMemoryRateLimitBackend()), "c", Rate(tps))
    policy = RetryPolicy(max_attempts=3, base_s=1.0, cap_s=60.0, rng=random.Random(1))
    route = Route("c", carrier, tokens)
    return ChunkSender(log, route, policy, options or SenderOptions(), clock=lambda: NOW)


def run(sender: ChunkSender, msgs: list[dict[str, Any]]) -> Any:
    return asyncio.run(sender.run(msgs))


def test_all_sent_once() -> None:
    log = MemoryLog({f"m{i}": Row() for i in range(50)})
    carrier = FakeCarrier()
    report = run(make(log, carrier), [payload(i) for i in range(50)])
    assert report.sent == 50 and sorted(carrier.submits) == sorted(log.rows)
    assert all(r.status == Status.SENT and r.attempts == 1 for r in log.rows.values())


def test_redelivered_chunk_sends_nothing_twice() -> None:
    log = MemoryLog({f"m{i}": Row() for i in range(10)})
    carrier = FakeCarrier()
    msgs = [payload(i) for i in range(10)]
    run(make(log, carrier), msgs)
    log.rows["m3"].status = Status.SENDING  # a claim left by a crash: the reconciler's, not ours
    report = run(make(log, carrier), msgs)
    assert report.skipped == 10 and report.sent == 0
    assert len(carrier.submits) == 10


def test_permanent_reject_and_retry_and_exhaustion() -> None:
    log = MemoryLog({"m0": Row(), "m1": Row(), "m2": Row(attempts=2)})
    carrier = FakeCarrier(
        plan={
            "m0": PermanentCarrierError("unknown_subscriber", "no such number", 400),
            "m1": RetryableCarrierError("carrier_http_500", "HTTP 500", 500),
            "m2": RetryableCarrierError("carrier_http_500", "HTTP 500", 500),
        }
    )
    report = run(make(log, carrier), [payload(0), payload(1), payload(2, attempt=2)])
    assert log.rows["m0"].status == Status.REJECTED
    assert log.rows["m1"].status == Status.RETRYING
    assert NOW + 0.5 <= log.rows["m1"].next_attempt_at <= NOW + 1.0  # attempt 1: 1 s, jittered
    assert log.rows["m2"].status == Status.FAILED  # third attempt of three
    assert (report.rejected, report.retrying, report.failed) == (1, 1, 1)


def test_throttle_honours_retry_after() -> None:
    log = MemoryLog({"m0": Row()})
    carrier = FakeCarrier(plan={"m0": ThrottledError(30.0)})
    run(make(log, carrier), [payload(0)])
    assert log.rows["m0"].status == Status.RETRYING
    assert log.rows["m0"].next_attempt_at >= NOW + 30.0


def test_retry_that_would_outlive_validity_expires() -> None:
    log = MemoryLog({"m0": Row(valid_until=NOW + 0.2)})
    carrier = FakeCarrier(plan={"m0": RetryableCarrierError("carrier_http_503", "x", 503)})
    run(make(log, carrier), [payload(0)])
    assert log.rows["m0"].status == Status.EXPIRED


def test_expired_before_sending_is_never_submitted() -> None:
    log = MemoryLog({"m0": Row(valid_until=NOW - 1), "m1": Row()})
    carrier = FakeCarrier()
    report = run(make(log, carrier), [payload(0), payload(1)])
    assert log.rows["m0"].status == Status.EXPIRED and log.rows["m0"].error == "validity_expired"
    assert carrier.submits == ["m1"] and report.expired == 1


def test_rate_limit_saturation_defers_without_spending_attempts() -> None:
    log = MemoryLog({f"m{i}": Row() for i in range(30)})
    carrier = FakeCarrier()
    opts = SenderOptions(sub_batch=10, rate_wait_max_s=0.0, defer_s=2.0)
    report = run(make(log, carrier, tps=5, options=opts), [payload(i) for i in range(30)])
    sent = [r for r in log.rows.values() if r.status == Status.SENT]
    parked = [r for r in log.rows.values() if r.status == Status.RETRYING]
    assert len(sent) + len(parked) == 30 and 1 <= len(sent) < 30
    assert report.deferred == len(parked)
    assert all(r.attempts == 0 and r.next_attempt_at == NOW + 2.0 for r in parked)


def test_parts_are_charged() -> None:
    log = MemoryLog({f"m{i}": Row() for i in range(4)})
    carrier = FakeCarrier()
    opts = SenderOptions(sub_batch=10, rate_wait_max_s=0.0)
    run(make(log, carrier, tps=100, options=opts), [payload(i, parts=3) for i in range(4)])
    # Burst of 2 units at 100/s: a 3-part message goes alone when the bucket is idle.
    assert len(carrier.submits) == 1


def test_same_text_goes_in_batches_personalised_alone() -> None:
    log = MemoryLog({f"m{i}": Row() for i in range(25)})
    carrier = FakeCarrier(max_batch=10)
    msgs = [payload(i) for i in range(20)] + [payload(i, text=f"t{i}") for i in range(20, 25)]
    run(make(log, carrier), msgs)
    assert carrier.batch_calls == 2 and len(carrier.submits) == 25


def test_ambiguous_retry_checks_the_carrier_first() -> None:
    log = MemoryLog({"m0": Row(attempts=1)})
    carrier = FakeCarrier(known={"m0": "c-earlier"})
    report = run(make(log, carrier), [payload(0, attempt=1)])
    assert carrier.submits == [] and log.rows["m0"].status == Status.SENT
    assert log.rows["m0"].carrier_id == "c-earlier" and report.reconciled == 1


def test_stale_claim_is_left_to_the_reconciler() -> None:
    log = MemoryLog({"m0": Row()})
    carrier = FakeCarrier()
    opts = SenderOptions(send_deadline_s=-1.0)  # as if the process stalled after claiming
    report = run(make(log, carrier, options=opts), [payload(0)])
    assert carrier.submits == [] and log.rows["m0"].status == Status.SENDING
    assert report.abandoned == 1


@pytest.mark.parametrize("err", [AmbiguousCarrierError("carrier_timeout", "t")])
def test_timeouts_are_retryable(err: CarrierError) -> None:
    log = MemoryLog({"m0": Row()})
    run(make(log, FakeCarrier(plan={"m0": err})), [payload(0)])
    assert log.rows["m0"].status == Status.RETRYING


# -- routing: several connections, breakers (fakeredis), in-flight windows ----------------------
ROUTES = {
    "connections": [
        {
            "name": "primary",
            "type": "simulator",
            "url": "http://127.0.0.1:1",
            "tps": 1000,
            "destinations": ["+48111"],
        },
        {
            "name": "backup",
            "type": "simulator",
            "url": "http://127.0.0.1:2",
            "tps": 1000,
            "destinations": ["+48111"],
            "preference": 2,
        },
    ],
    "breaker": {"failure_threshold": 2, "probes": 1, "wait_s": 3},
}


def routed(
    log: MemoryLog,
    carriers: dict[str, FakeCarrier],
    redis: Any = None,
    cooldown_s: float = 30.0,
    **options: Any,
) -> tuple[ChunkSender, Breakers]:
    import fakeredis

    from dispatcher.config import Settings
    from dispatcher.routing import RoutingTable
    from dispatcher.routing.loader import parse
    from workers.connectors.chooser import RouteChooser

    routes = {**ROUTES, "breaker": {**ROUTES["breaker"], "cooldown_s": cooldown_s}}
    config = parse(routes, "/x/connections.toml", Settings(), {})
    breakers = Breakers(redis or fakeredis.FakeAsyncRedis(), config.breaker, peek_ttl_s=0.0)
    limiter = AsyncLimiter(AsyncMemoryRateLimitBackend())
    bundle = [
        Route(name, carrier, ConnectionTokens(limiter, name, Rate(1e6)))
        for name, carrier in carriers.items()
    ]
    policy = RetryPolicy(max_attempts=5, base_s=1.0, cap_s=60.0, rng=random.Random(1))
    chooser = RouteChooser(RoutingTable(config), breakers, rng=random.Random(1))
    opts = SenderOptions(**{"sub_batch": 2, "route_wait_s": 3.0, **options})
    return ChunkSender(log, bundle, policy, opts, clock=lambda: NOW, chooser=chooser), breakers


def test_failing_connection_moves_traffic_to_its_backup() -> None:
    log = MemoryLog({f"m{i}": Row() for i in range(10)})
    primary = FakeCarrier(
        plan={f"m{i}": RetryableCarrierError("internal", "x", 500) for i in range(10)}
    )
    backup = FakeCarrier()
    sender, breakers = routed(log, {"primary": primary, "backup": backup})
    report = run(sender, [payload(i) for i in range(10)])
    # Two failed calls open the breaker; everything after goes to the backup.
    assert primary.submits == ["m0", "m1"] and report.retrying == 2
    assert sorted(backup.submits) == [f"m{i}" for i in range(2, 10)]
    assert report.connections == {"primary": 2, "backup": 8}
    assert {log.rows[f"m{i}"].connection for i in range(2, 10)} == {"backup"}
    state = asyncio.run(breakers.peek(["primary"]))["primary"].state
    assert state == State.OPEN


def test_every_route_down_waits_without_spending_attempts() -> None:
    import fakeredis

    redis = fakeredis.FakeAsyncRedis()
    log = MemoryLog({f"m{i}": Row() for i in range(4)})
    sender, breakers = routed(log, {"primary": FakeCarrier(), "backup": FakeCarrier()}, redis)

    async def break_both() -> None:
        for name in ("primary", "backup"):
            for _ in range(2):
                await breakers.record(name, False)

    asyncio.run(break_both())
    report = run(sender, [payload(i) for i in range(4)])
    assert report.waiting == 4 and report.sent == 0
    assert all(r.status == Status.RETRYING and r.attempts == 0 for r in log.rows.values())
    # It waits for the first probe chance (30 s away), at most wait_s.
    assert {r.next_attempt_at for r in log.rows.values()} == {NOW + 3.0}


def test_recovering_primary_gets_a_probe_and_closes() -> None:
    import fakeredis

    redis = fakeredis.FakeAsyncRedis()
    log = MemoryLog({f"m{i}": Row() for i in range(6)})
    primary, backup = FakeCarrier(), FakeCarrier()
    sender, breakers = routed(
        log, {"primary": primary, "backup": backup}, redis, cooldown_s=0.05, sub_batch=3
    )

    async def open_primary() -> None:
        for _ in range(2):
            await breakers.record("primary", False)
        await asyncio.sleep(0.08)  # past the cool-down

    asyncio.run(open_primary())
    report = run(sender, [payload(i) for i in range(6)])
    assert report.sent == 6
    # The first sub-batch: one probe to the primary, the rest to the backup; the probe's
    # success closed the breaker (probes = 1), so the next sub-batch is all on the primary.
    assert primary.submits == ["m0", "m3", "m4", "m5"] and sorted(backup.submits) == ["m1", "m2"]


def test_unrouteable_message_is_rejected_not_sent() -> None:
    log = MemoryLog({"m1": Row(), "m2": Row()})
    primary = FakeCarrier()
    sender, _ = routed(log, {"primary": primary, "backup": FakeCarrier()})
    other = {**payload(2), "to": "+12025550123"}
    report = run(sender, [payload(1), other])
    assert primary.submits == ["m1"] and report.unroutable == 1
    assert log.rows["m2"].status == Status.REJECTED and log.rows["m2"].error == "no_route"


def test_full_in_flight_window_hands_the_claim_back() -> None:
    import fakeredis

    from workers.connectors.window import InFlightWindow

    redis = fakeredis.FakeAsyncRedis()
    window = InFlightWindow(redis, "c", limit=1, lease_s=30)
    asyncio.run(redis.zadd(window.key, {"someone-else": time.time() + 30}))
    log = MemoryLog({"m1": Row()})
    carrier = FakeCarrier()
    tokens = ConnectionTokens(AsyncLimiter(AsyncMemoryRateLimitBackend()), "c", Rate(1e6))
    policy = RetryPolicy(max_attempts=3)
    options = SenderOptions(send_deadline_s=0.05)
    sender = ChunkSender(log, Route("c", carrier, tokens, window), policy, options)
    report = run(sender, [payload(1)])
    assert carrier.submits == [] and report.deferred == 1
    assert log.rows["m1"].status == Status.RETRYING and log.rows["m1"].attempts == 0
    # Once the slot is free, the send goes through the window (and gives the slot back).
    asyncio.run(redis.delete(window.key))
    log.rows["m1"].status = Status.QUEUED
    assert run(sender, [payload(1)]).sent == 1 and asyncio.run(redis.zcard(window.key)) == 0


@pytest.mark.parametrize(
    ("lane", "previous_error", "resent"),
    [
        ("bulk", "carrier_timeout", False),  # may have arrived at the primary: wait for it
        ("priority", "carrier_timeout", True),  # an OTP goes out over the backup regardless
        ("bulk", "internal", True),  # a clean 500: the primary never took it
    ],
)
def test_retry_after_an_ambiguous_attempt_on_an_unreachable_carrier(
    lane: str, previous_error: str, resent: bool
) -> None:
    import fakeredis

    redis = fakeredis.FakeAsyncRedis()
    log = MemoryLog({"m1": Row(attempts=1, connection="primary", error=previous_error)})
    down = RetryableCarrierError("carrier_unreachable", "could not connect")
    primary, backup = FakeCarrier(lookup_error=down), FakeCarrier()
    sender, breakers = routed(log, {"primary": primary, "backup": backup}, redis, lane=lane)

    async def open_primary() -> None:
        for _ in range(2):
            await breakers.record("primary", False)

    asyncio.run(open_primary())
    report = run(sender, [payload(1, attempt=1)])
    assert primary.submits == []
    if resent:
        assert backup.submits == ["m1"] and log.rows["m1"].status == Status.SENT
    else:
        assert backup.submits == [] and report.deferred == 1
        row = log.rows["m1"]
        assert row.status == Status.RETRYING and row.attempts == 1  # the attempt is refunded


def test_every_ambiguous_error_code_is_listed() -> None:
    """Codes of AmbiguousCarrierError built anywhere in workers/ are in AMBIGUOUS_CODES, so a
    retry on another connection knows the first attempt may have arrived."""
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[2] / "workers"
    found = {
        code
        for path in root.rglob("*.py")
        for code in re.findall(r'AmbiguousCarrierError\(\s*"([a-z_]+)"', path.read_text())
    }
    assert found and found <= AMBIGUOUS_CODES, found - AMBIGUOUS_CODES


class LimiterFailsAfterFirstGrant:
    """Grants one message, then the limiter's Redis is gone."""

    def __init__(self) -> None:
        self.calls = 0

    async def wait_for(self, costs: Sequence[int], max_wait: float) -> tuple[int, float]:
        self.calls += 1
        if self.calls > 1:
            raise RateLimitUnavailable("Connection closed by server")
        return 1, 0.0


def test_limiter_failure_after_the_claim_hands_the_rest_back() -> None:
    """Found by the chaos run: the claimed messages must not wait in "sending" for the
    reconciler when the limiter fails mid-chunk."""
    log = MemoryLog({f"m{i}": Row() for i in range(3)})
    carrier = FakeCarrier()
    policy = RetryPolicy(max_attempts=3)
    sender = ChunkSender(
        log, Route("c", carrier, LimiterFailsAfterFirstGrant()), policy, clock=lambda: NOW
    )
    with pytest.raises(RateLimitUnavailable):
        run(sender, [payload(i) for i in range(3)])
    assert carrier.submits == ["m0"] and log.rows["m0"].status == Status.SENT
    for i in (1, 2):
        assert log.rows[f"m{i}"].status == Status.RETRYING and log.rows[f"m{i}"].attempts == 0


@dataclass
class SlowCarrier(FakeCarrier):
    """Accepts after a short delay, so its sends are in flight when another route fails."""

    async def submit(self, msg: Outbound) -> SubmitResult:
        await asyncio.sleep(0.05)
        return self._one(msg)


class LimiterDown:
    """The limiter's Redis is gone from the first call."""

    async def wait_for(self, costs: Sequence[int], max_wait: float) -> tuple[int, float]:
        raise RateLimitUnavailable("Connection refused")


def test_one_connections_limiter_failure_lets_the_other_connection_finish() -> None:
    """A connection whose limiter fails ends the chunk only after the other connections'
    sends are recorded: cancelled there, they would wait in "sending" for the reconciler."""
    import fakeredis

    redis = fakeredis.FakeAsyncRedis()
    log = MemoryLog({f"m{i}": Row() for i in range(3)})
    primary, backup = FakeCarrier(), SlowCarrier()
    sender, breakers = routed(
        log, {"primary": primary, "backup": backup}, redis, cooldown_s=0.05, sub_batch=3
    )
    sender.routes["primary"] = Route("primary", primary, LimiterDown())

    async def half_open_primary() -> None:
        for _ in range(2):
            await breakers.record("primary", False)
        await asyncio.sleep(0.08)  # past the cool-down: one probe to the primary

    asyncio.run(half_open_primary())
    with pytest.raises(RateLimitUnavailable):
        run(sender, [payload(i) for i in range(3)])
    assert primary.submits == [] and sorted(backup.submits) == ["m1", "m2"]
    assert log.rows["m0"].status == Status.RETRYING and log.rows["m0"].attempts == 0
    assert all(log.rows[i].status == Status.SENT for i in ("m1", "m2"))


@pytest.mark.parametrize(
    ("row", "attempt"),
    [
        (Row(attempts=2), 2),  # the third attempt of three: would be "failed"
        (Row(valid_until=NOW + 0.2), 0),  # the next retry would outlive validity: "expired"
    ],
)
def test_an_ambiguous_last_attempt_is_left_to_the_reconciler(row: Row, attempt: int) -> None:
    """Found by the long chaos run: the last attempt timed out after the carrier had taken the
    message, and "failed" was recorded while its delivery report was on the way."""
    log = MemoryLog({"m0": row})
    carrier = FakeCarrier(plan={"m0": AmbiguousCarrierError("carrier_timeout", "no answer")})
    report = run(make(log, carrier), [payload(0, attempt=attempt)])
    assert log.rows["m0"].status == Status.SENDING  # stale claim: the reconciler asks
    assert report.unverified == 1 and report.failed == report.expired == 0


def test_a_clear_last_failure_is_still_final() -> None:
    log = MemoryLog({"m0": Row(attempts=2)})
    carrier = FakeCarrier(plan={"m0": RetryableCarrierError("carrier_http_500", "HTTP 500", 500)})
    report = run(make(log, carrier), [payload(0, attempt=2)])
    assert log.rows["m0"].status == Status.FAILED and report.unverified == 0
