"""Per-account API limits: a request rate (GCRA) and a daily send cap (messages per UTC day).

Both are held in Redis so every API process shares them:

* the **request rate** runs the same GCRA Lua script as the workers' carrier limits
  (:mod:`dispatcher.ratelimit`), one key per account. When Redis does not answer, each API
  process falls back to an in-process limiter with the same rate: the limit then holds per
  process (looser by the number of processes) instead of vanishing or refusing everyone.
* the **daily cap** is a counter per account and UTC day (``INCRBY`` in a Lua script that
  grants at most what is left, expiring two days later). A counter that is missing (first use
  of the day, or a Redis that lost its data) is seeded from the message log before use, so a
  Redis restart does not hand out a second day's worth. When Redis does not answer, the cap is
  checked against the message log itself: exact but not atomic across concurrent requests (a
  burst during an outage may overshoot by what was in flight), and slower, never unlimited.

Counts are messages (recipients), not parts: the cap is about how many people an account can
reach in a day. See ``docs/security.md``.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

import redis.asyncio
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from sqlalchemy import Engine

from dispatcher.accounts.account import Account
from dispatcher.config import Settings
from dispatcher.errors import ApiError
from dispatcher.intake.submit import Prepared
from dispatcher.ratelimit import (
    AsyncLimiter,
    AsyncMemoryRateLimitBackend,
    AsyncRedisRateLimitBackend,
    Rate,
    RateLimitUnavailable,
)
from dispatcher.redis_clients import async_client
from dispatcher.store.db import reading
from dispatcher.store.usage import messages_created

log = structlog.get_logger(component="quotas")

RATE_KEY_PREFIX = "smsd:api-rl:"
CAP_KEY_PREFIX = "smsd:cap:"
DAY_S = 86_400
CAP_TTL_S = 2 * DAY_S  # the counter outlives its day, so a late refund never recreates it
REDIS_BACKOFF_S = 5.0  # after a Redis failure, use the fallback this long before trying again

# KEYS[1] the day's counter.  ARGV[1] cap, ARGV[2] wanted (>= 0; 0 only reads).
# Returns the number granted, or -1 when the counter does not exist yet (seed it first).
# A negative ARGV[2] refunds that many (never below zero).
CAP_LUA = """
local raw = redis.call('GET', KEYS[1])
if not raw then return -1 end
local used = tonumber(raw)
local want = tonumber(ARGV[2])
if want < 0 then
  local back = -want
  if back > used then back = used end
  redis.call('DECRBY', KEYS[1], back)
  return 0
end
local grant = tonumber(ARGV[1]) - used
if grant > want then grant = want end
if grant < 0 then grant = 0 end
if grant > 0 then redis.call('INCRBY', KEYS[1], grant) end
return grant
"""


def utc_day(now: float) -> int:
    """Days since the epoch (UTC) of ``now``."""
    return int(now // DAY_S)


def seconds_to_midnight(now: float) -> int:
    """Whole seconds until the next UTC midnight (at least 1): the cap's ``Retry-After``."""
    return max(1, math.ceil((utc_day(now) + 1) * DAY_S - now))


@dataclass(frozen=True)
class Throttled:
    """The request was over the account's rate; retry after this many seconds."""

    retry_after: float


class RequestLimiter:
    """Per-account request rate limiter for the API (GCRA, shared through Redis)."""

    def __init__(self, client: redis.asyncio.Redis, settings: Settings) -> None:
        self.settings = settings
        self._shared = AsyncLimiter(AsyncRedisRateLimitBackend(client), RATE_KEY_PREFIX)
        self._local = AsyncLimiter(AsyncMemoryRateLimitBackend(), RATE_KEY_PREFIX)
        self._skip_redis_until = 0.0  # monotonic; a dead Redis must not add a timeout per call

    def rate_for(self, account: Account) -> Rate | None:
        """The account's rate (its own, else the default); ``None`` when unlimited."""
        per_s = account.api_rate_per_s
        if per_s is None:
            per_s = self.settings.api_rate_per_s
        if not per_s or per_s <= 0:
            return None
        burst = self.settings.api_rate_burst or max(1, math.ceil(per_s))
        return Rate(per_s, burst)

    async def check(self, account: Account) -> Throttled | None:
        """Charge one request; :class:`Throttled` when over the rate, else ``None``."""
        rate = self.rate_for(account)
        if rate is None:
            return None
        key = str(account.id)
        decision = None
        if time.monotonic() >= self._skip_redis_until:
            try:
                decision = await self._shared.acquire_prefix(key, rate, (1,))
            except RateLimitUnavailable as exc:
                self._skip_redis_until = time.monotonic() + REDIS_BACKOFF_S
                log.warning("api_rate_limit.redis_down_local_fallback", error=str(exc))
        if decision is None:
            decision = await self._local.acquire_prefix(key, rate, (1,))
        return None if decision.granted else Throttled(decision.retry_after)


class DailyCaps:
    """Messages per account per UTC day: reserve before storing, refund what was not stored."""

    def __init__(self, client: redis.asyncio.Redis, engine: Engine, settings: Settings) -> None:
        self.client = client
        self.engine = engine
        self.settings = settings
        self._script = client.register_script(CAP_LUA)
        self._skip_redis_until = 0.0  # monotonic; see RequestLimiter

    def cap_for(self, account: Account) -> int | None:
        """The account's cap (its own, else the default); ``None`` when unlimited."""
        cap = account.daily_cap if account.daily_cap is not None else self.settings.daily_cap
        return cap if cap and cap > 0 else None

    def key(self, account_id: int, day: int) -> str:
        """The Redis key of an account's counter for a UTC day."""
        return f"{CAP_KEY_PREFIX}{account_id}:{day}"

    async def reserve(self, account: Account, want: int, now: float) -> int:
        """Reserve up to ``want`` messages of today's cap; returns how many were granted."""
        cap = self.cap_for(account)
        if cap is None or want <= 0:
            return want
        day = utc_day(now)
        key = self.key(account.id, day)
        if time.monotonic() >= self._skip_redis_until:
            try:
                granted = int(await self._script(keys=[key], args=[cap, want]))
                if granted < 0:
                    used = await asyncio.to_thread(self.used_in_log, account.id, day)
                    await self.client.set(key, used, nx=True, ex=CAP_TTL_S)
                    granted = int(await self._script(keys=[key], args=[cap, want]))
                return max(0, granted)
            except RedisError as exc:
                self._skip_redis_until = time.monotonic() + REDIS_BACKOFF_S
                log.warning("daily_cap.redis_down_log_fallback", error=type(exc).__name__)
        used = await asyncio.to_thread(self.used_in_log, account.id, day)
        return max(0, min(want, cap - used))

    async def refund(self, account: Account, count: int, now: float) -> None:
        """Give back ``count`` reserved messages that were not stored (best effort)."""
        if count <= 0 or self.cap_for(account) is None:
            return
        if time.monotonic() < self._skip_redis_until:
            return  # the log is the count meanwhile: nothing to give back
        try:
            await self._script(keys=[self.key(account.id, utc_day(now))], args=[0, -count])
        except RedisError as exc:
            log.warning("daily_cap.refund_failed", error=type(exc).__name__)

    def used_in_log(self, account_id: int, day: int) -> int:
        """Messages the account stored in the log on UTC ``day`` (the authoritative count)."""
        with reading(self.engine) as conn:
            return messages_created(conn, account_id, day * DAY_S, (day + 1) * DAY_S)


class AccountQuotas:
    """What the API holds: the request limiter and the daily caps over one Redis client."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        # Short timeouts: a Redis that hangs must not hold requests (the fallbacks take over).
        self.client = async_client(
            settings.redis_url,
            socket_timeout=0.5,
            socket_connect_timeout=0.5,
            retry=Retry(NoBackoff(), 0),  # no retries with backoff: the fallbacks answer
        )
        self.requests = RequestLimiter(self.client, settings)
        self.daily = DailyCaps(self.client, engine, settings)

    async def close(self) -> None:
        """Close the Redis client."""
        await self.client.aclose()


async def reserve_for(daily: DailyCaps, account: Account, prepared: Prepared, now: float) -> int:
    """Reserve today's cap for ``prepared``; recipients beyond it are dropped and reported.

    Returns how many were reserved (refund what is not stored). Raises a 429
    ``daily_cap_exceeded`` with ``Retry-After`` (next UTC midnight) when nothing is left.
    """
    wanted = prepared.submission.messages
    granted = await daily.reserve(account, len(wanted), now)
    if granted >= len(wanted):
        return granted
    retry = {"Retry-After": str(seconds_to_midnight(now))}
    if granted == 0:
        raise ApiError(
            "daily_cap_exceeded",
            f"the account's daily cap of {daily.cap_for(account)} messages is used up",
            "phoneNumbers",
            None,
            headers=retry,
        )
    prepared.recipient_errors.extend(
        ApiError(
            "daily_cap_exceeded",
            f"{m.phone} was over the account's daily cap",
            "phoneNumbers",
            m.phone,
        )
        for m in wanted[granted:]
    )
    del wanted[granted:]
    return granted
