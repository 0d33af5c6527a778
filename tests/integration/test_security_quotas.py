"""Per-account limits and key rotation on real Redis and a real database, in process: the
daily cap's counting, refunds, day boundary and Redis-down fallback to the log; the request
limiter's Redis-down fallback; the Authenticator honouring a rotation's expiry in its cache.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy import Engine

from dispatcher.accounts.account import (
    Account,
    Authenticator,
    create_account,
    rotate_key,
    set_limits,
)
from dispatcher.accounts.quotas import (
    DAY_S,
    DailyCaps,
    RequestLimiter,
    reserve_for,
    seconds_to_midnight,
    utc_day,
)
from dispatcher.config import Settings
from dispatcher.intake.submit import SendRequest, prepare
from dispatcher.store.messages import write_submissions
from tests.support.services import free_port, fresh_redis

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_url() -> Iterator[str]:
    with fresh_redis() as url:
        yield url


def dead_redis() -> redis.asyncio.Redis:
    """A client of a port nothing listens on (Redis down)."""
    return redis.asyncio.Redis(
        port=free_port(),
        socket_timeout=0.3,
        socket_connect_timeout=0.3,
        retry=Retry(NoBackoff(), 0),
    )


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def store_messages(engine: Engine, account: Account, n: int, now: float) -> None:
    """``n`` messages in the log for ``account``, created at ``now``."""
    numbers = [f"+4860{i:07d}" for i in range(n)]
    req = SendRequest("ACME", "hello", numbers)
    sub = prepare(req, account, Settings(), now).submission
    with engine.begin() as conn:
        write_submissions(conn, [sub], {"bulk": 500, "priority": 100})


def test_daily_cap_grants_what_is_left_refunds_and_resets_at_utc_midnight(
    engine: Engine, redis_url: str
) -> None:
    async def scenario() -> None:
        client = redis.asyncio.Redis.from_url(redis_url)
        caps = DailyCaps(client, engine, Settings(daily_cap=0))
        acct = Account(7, "a", False, None, 5)
        other = Account(8, "b", False, None, None)  # default: unlimited
        now = 1_800_000_000.0
        assert await caps.reserve(acct, 3, now) == 3
        assert await caps.reserve(acct, 3, now) == 2  # what is left
        assert await caps.reserve(acct, 1, now) == 0
        await caps.refund(acct, 2, now)  # e.g. opted-out recipients, not stored
        assert await caps.reserve(acct, 5, now) == 2
        assert await caps.reserve(other, 10_000, now) == 10_000
        # The next UTC day starts from zero; the counter expires on its own.
        tomorrow = (utc_day(now) + 1) * DAY_S
        assert await caps.reserve(acct, 4, tomorrow) == 4
        ttl = await client.ttl(caps.key(acct.id, utc_day(now)))
        assert 0 < ttl <= 2 * DAY_S
        await client.aclose()

    run(scenario())
    assert seconds_to_midnight(1_800_000_000.0) == DAY_S - 1_800_000_000 % DAY_S


def test_daily_cap_is_seeded_from_the_log_and_falls_back_to_it_when_redis_is_down(
    engine: Engine, redis_url: str
) -> None:
    account, _ = create_account(engine, "capped", sender_policy="open")
    acct = Account(account.id, account.name, False, None, 10)
    now = time.time()
    store_messages(engine, acct, 7, now)

    async def scenario() -> None:
        client = redis.asyncio.Redis.from_url(redis_url)
        caps = DailyCaps(client, engine, Settings())
        # No counter yet (a Redis that lost its data): seeded from the 7 in the log.
        assert await caps.reserve(acct, 5, now) == 3
        await client.aclose()
        down = DailyCaps(dead_redis(), engine, Settings())
        # Redis down: the log is counted directly; never unlimited.
        assert await down.reserve(acct, 5, now) == 3
        store_messages(engine, acct, 3, now)
        started = time.monotonic()
        assert await down.reserve(acct, 1, now) == 0
        assert time.monotonic() - started < 0.25  # Redis is skipped for a while, not retried
        await down.refund(acct, 1, now)  # best effort: no exception

    run(scenario())


def test_reserve_for_drops_recipients_beyond_the_cap_and_names_them(
    engine: Engine, redis_url: str
) -> None:
    from dispatcher.errors import ApiError

    async def scenario() -> None:
        client = redis.asyncio.Redis.from_url(redis_url)
        caps = DailyCaps(client, engine, Settings(daily_cap=2))  # the default applies
        acct = Account(9, "c", False)
        now = 1_800_000_000.0
        req = SendRequest("ACME", "hi", ["+48600000001", "+48600000002", "+48600000003"])
        prepared = prepare(req, acct, Settings(), now)
        assert await reserve_for(caps, acct, prepared, now) == 2
        assert [m.phone for m in prepared.submission.messages] == ["+48600000001", "+48600000002"]
        assert [(e.code, e.value) for e in prepared.recipient_errors] == [
            ("daily_cap_exceeded", "+48600000003")
        ]
        with pytest.raises(ApiError) as refused:
            await reserve_for(caps, acct, prepare(req, acct, Settings(), now), now)
        assert refused.value.status == 429
        assert refused.value.headers == {"Retry-After": str(seconds_to_midnight(now))}
        await client.aclose()

    run(scenario())


def test_request_limiter_shares_state_in_redis_and_falls_back_locally(redis_url: str) -> None:
    async def scenario() -> None:
        settings = Settings(api_rate_per_s=2.0)
        acct = Account(11, "r", False)
        own = Account(12, "s", False, 0.0)  # 0 = unlimited for this account
        c1 = redis.asyncio.Redis.from_url(redis_url)
        c2 = redis.asyncio.Redis.from_url(redis_url)
        api1, api2 = RequestLimiter(c1, settings), RequestLimiter(c2, settings)
        # Burst of 2 shared by two API processes: the third request is throttled.
        assert await api1.check(acct) is None
        assert await api2.check(acct) is None
        throttled = await api1.check(acct)
        assert throttled is not None and 0 < throttled.retry_after <= 0.5
        assert all([await api2.check(own) is None for _ in range(20)])
        await c1.aclose()
        await c2.aclose()
        # Redis down: the limit still holds, per process.
        down = RequestLimiter(dead_redis(), settings)
        started = time.monotonic()
        results = [await down.check(acct) for _ in range(4)]
        assert results[:2] == [None, None] and all(r is not None for r in results[2:])
        # Only the first request waits for the dead Redis; the next ones skip it for a while.
        assert time.monotonic() - started < 0.3 + 0.3 + 0.2

    run(scenario())


def test_authenticator_cache_honours_a_rotation_expiry(engine: Engine) -> None:
    account, old = create_account(engine, "rotating")
    auth = Authenticator(engine, ttl_s=0.2)
    assert auth.authenticate(old.application_key, old.authorization) is not None
    new = rotate_key(engine, account.id, overlap_s=1.5)
    time.sleep(0.3)  # the cache reloads the old pair, now with its expiry
    assert auth.authenticate(old.application_key, old.authorization) is not None
    assert auth.authenticate(new.application_key, new.authorization) is not None
    auth.ttl_s = 3600.0  # from here on the cache alone answers for the old pair
    auth._cache.clear()
    assert auth.authenticate(old.application_key, old.authorization) is not None
    time.sleep(1.5)
    assert auth.cached(old.application_key, old.authorization) is None
    assert auth.authenticate(old.application_key, old.authorization) is None
    assert auth.authenticate(new.application_key, new.authorization) is not None
    # A second rotation never extends the first one's deadline; overlap 0 revokes at once.
    newest = rotate_key(engine, account.id, overlap_s=0)
    fresh = Authenticator(engine)
    assert fresh.authenticate(new.application_key, new.authorization) is None
    assert fresh.authenticate(newest.application_key, newest.authorization) is not None


def test_limits_are_loaded_with_the_account(engine: Engine) -> None:
    account, pair = create_account(engine, "limited")
    set_limits(engine, account.id, 2.5, 100)
    loaded = Authenticator(engine).authenticate(pair.application_key, pair.authorization)
    assert loaded is not None and (loaded.api_rate_per_s, loaded.daily_cap) == (2.5, 100)
    with pytest.raises(ValueError):
        set_limits(engine, account.id, -1, None)
