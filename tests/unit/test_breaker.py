"""The circuit breaker's state machine over fakeredis and a real Redis (one spec for both)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
import redis
import redis.asyncio as aioredis

from dispatcher.routing import BreakerConfig
from workers.errors import (
    AmbiguousCarrierError,
    ClaimExpired,
    PermanentCarrierError,
    RetryableCarrierError,
    ThrottledError,
)
from workers.sending.breaker import Breakers, State, is_health_failure

REAL = "redis://127.0.0.1:6379/15"  # db 15: behavioural tests, unique key prefixes, no flush


def _real_redis_missing() -> str | None:
    try:
        redis.Redis.from_url(REAL, socket_connect_timeout=0.5).ping()
    except redis.RedisError as exc:
        return f"no Redis at {REAL}: {exc}"
    return None


SKIP = _real_redis_missing()
CONFIG = BreakerConfig(
    failure_threshold=3, error_ratio=0.5, window_s=10, min_calls=6, cooldown_s=0.3, probes=2
)


class Harness:
    """A breaker set on one backend, with its own loop and key prefix."""

    def __init__(self, client: Any, config: BreakerConfig = CONFIG) -> None:
        self.loop = asyncio.new_event_loop()
        self.client = client
        self.prefix = f"smsd-test:cb:{uuid.uuid4().hex}:"
        self.changes: list[tuple[str, State, State]] = []
        self.b = self.breakers(config)

    def breakers(self, config: BreakerConfig, lease_s: float = 15.0) -> Breakers:
        return Breakers(
            self.client,
            config,
            on_transition=lambda c, o, n: self.changes.append((c, o, n)),
            key_prefix=self.prefix,
            peek_ttl_s=0.0,
            lease_s=lease_s,
        )

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def record(self, ok: bool, n: int = 1, probe: bool = False, b: Breakers | None = None) -> State:
        state = State.CLOSED
        for _ in range(n):
            state = self.run((b or self.b).record("c1", ok, probe))
        return state

    def peek(self) -> Any:
        return self.run(self.b.peek(["c1"]))["c1"]


@pytest.fixture(
    params=[
        "fakeredis",
        pytest.param("redis", marks=pytest.mark.skipif(SKIP is not None, reason=str(SKIP))),
    ]
)
def h(request: pytest.FixtureRequest) -> Iterator[Harness]:
    if request.param == "fakeredis":
        client: Any = fakeredis.FakeAsyncRedis()
    else:
        client = aioredis.Redis.from_url(REAL)
    harness = Harness(client)
    yield harness
    keys = harness.run(client.keys(harness.prefix + "*"))
    if keys:
        harness.run(client.delete(*keys))
    harness.run(client.aclose())
    harness.loop.close()


def test_consecutive_failures_open_it(h: Harness) -> None:
    assert h.record(False, 2) == State.CLOSED
    assert h.record(True) == State.CLOSED  # a success resets the streak
    assert h.record(False, 2) == State.CLOSED
    assert h.record(False) == State.OPEN
    assert h.changes == [("c1", State.CLOSED, State.OPEN)]
    peek = h.peek()
    assert peek.state == State.OPEN and not peek.may_probe and 0 < peek.wait_s <= 0.3


def test_error_ratio_in_the_window_opens_it() -> None:
    harness = Harness(fakeredis.FakeAsyncRedis(), BreakerConfig(failure_threshold=100, min_calls=6))
    # Alternating outcomes never make 3 in a row, but half the calls fail.
    for _ in range(2):
        harness.record(True)
        harness.record(False)
    assert harness.peek().state == State.CLOSED  # 4 calls: below min_calls
    harness.record(True)
    assert harness.record(False) == State.OPEN  # 6 calls, 3 failed: 50 %
    harness.loop.close()


def test_cool_down_then_probes_close_it(h: Harness) -> None:
    h.record(False, 3)
    assert not h.run(h.b.try_probe("c1"))  # still cooling down
    time.sleep(0.35)
    assert h.peek().may_probe
    assert h.run(h.b.try_probe("c1"))  # → half-open, one probe out
    assert h.run(h.b.try_probe("c1"))  # the second slot
    assert not h.run(h.b.try_probe("c1"))  # probes = 2: no third at once
    assert h.peek().state == State.HALF_OPEN
    assert h.record(True, probe=True) == State.HALF_OPEN
    assert h.record(True) == State.HALF_OPEN  # a late non-probe result does not count
    assert h.record(True, probe=True) == State.CLOSED
    assert [n for _, _, n in h.changes] == [State.OPEN, State.HALF_OPEN, State.CLOSED]
    # Closed again with a clean slate: it takes a full streak to open it.
    assert h.record(False, 2) == State.CLOSED


def test_a_failed_probe_opens_it_again(h: Harness) -> None:
    h.record(False, 3)
    time.sleep(0.35)
    assert h.run(h.b.try_probe("c1"))
    assert h.record(False, probe=True) == State.OPEN
    assert not h.run(h.b.try_probe("c1"))  # a new cool-down
    assert h.peek().wait_s > 0


def test_lost_probe_slots_are_reclaimed(h: Harness) -> None:
    short = h.breakers(CONFIG, lease_s=0.2)
    h.record(False, 3)
    time.sleep(0.35)
    assert h.run(short.try_probe("c1")) and h.run(short.try_probe("c1"))
    assert not h.run(short.try_probe("c1"))
    h.run(short.release_probe("c1"))  # a probe that was never sent gives its slot back
    assert h.run(short.try_probe("c1"))
    time.sleep(0.25)  # the holders died: the lease frees the slots
    assert h.run(short.try_probe("c1"))


def test_state_is_shared_between_processes(h: Harness) -> None:
    other = h.breakers(CONFIG)  # another worker process: same Redis, own object
    h.record(False, 3)
    assert h.run(other.peek(["c1"]))["c1"].state == State.OPEN


def test_redis_down_fails_open() -> None:
    server = fakeredis.FakeServer()
    server.connected = False
    harness = Harness(fakeredis.FakeAsyncRedis(server=server))
    assert harness.record(False, 5) == State.CLOSED
    assert harness.peek().closed and harness.run(harness.b.try_probe("c1"))
    harness.loop.close()


def test_what_counts_as_a_failure() -> None:
    assert is_health_failure(RetryableCarrierError("carrier_unreachable", "x"))
    assert is_health_failure(AmbiguousCarrierError("carrier_timeout", "x"))
    assert is_health_failure(RetryableCarrierError("internal", "x", 500))
    assert not is_health_failure(None)
    assert not is_health_failure(ThrottledError(1.0))  # the limiter's business
    assert not is_health_failure(PermanentCarrierError("unknown_subscriber", "x", 400))
    assert not is_health_failure(ClaimExpired())


def test_concurrent_successes_are_counted_together_in_the_ratio_window(h: Harness) -> None:
    # One script call for the whole burst (the SMPP lane records a call per message), and
    # every one of them still counts: 50 successes keep 40 failures below a 50 % ratio.
    calls: list[Any] = []
    script = h.b._record

    async def counting(**kw: Any) -> Any:
        calls.append(kw["args"])
        return await script(**kw)

    h.b._record = counting

    async def burst() -> list[State]:
        return list(await asyncio.gather(*(h.b.record("c1", True) for _ in range(50))))

    assert h.run(burst()) == [State.CLOSED] * 50
    assert [a[-1] for a in calls] == [50]  # one round trip for the burst
    wide = h.breakers(BreakerConfig(failure_threshold=1000, error_ratio=0.5, min_calls=6))
    for ok in [False, True] * 20:  # 40 more calls, half failed: 20 of 90 in the window
        h.record(ok, b=wide)
    assert h.peek().state == State.CLOSED
