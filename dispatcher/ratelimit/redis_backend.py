"""Redis backends: a Lua port of :func:`.gcra.decide_prefix`, one round trip per acquire.

The script reads the clock with ``redis.call('TIME')`` so every worker on every machine uses
the same (server) time; Redis 7 replicates script *effects*, which makes ``TIME`` before a
write legal. Arithmetic is on integer microseconds held in Lua doubles (exact below 2**53).
The key holds the TAT and expires when the TAT passes (``PX`` = TAT - now, rounded up): an
expired key and a TAT in the past are the same state, so idle connections leave nothing.

The script touches exactly one key (``KEYS[1]``), so it is Redis Cluster safe.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio
from redis.exceptions import RedisError

from .errors import RateLimitUnavailable
from .gcra import MICROS, Decision, Rate, validate_costs

__all__ = ["GCRA_LUA", "AsyncRedisRateLimitBackend", "RedisRateLimitBackend"]

# KEYS[1]  TAT key
# ARGV[1]  interval per unit, microseconds      ARGV[2]  burst tolerance, microseconds
# ARGV[3]  "" (use server TIME) or a fixed now in microseconds (tests only)
# ARGV[4+] cost of each item, in order
# returns  {granted, new_tat_us, retry_after_us}
GCRA_LUA = """
local now
if ARGV[3] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[3])
end
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local current = now
local stored = tonumber(redis.call('GET', KEYS[1]) or '')
if stored and stored > now then
  current = stored
end
local granted = 0
local retry = 0
for i = 4, #ARGV do
  local increment = interval * tonumber(ARGV[i])
  local allowed = tolerance - increment
  if allowed < 0 then allowed = 0 end
  if current - now > allowed then
    retry = current - allowed - now
    break
  end
  current = current + increment
  granted = granted + 1
end
if granted > 0 then
  local ttl_ms = math.ceil((current - now) / 1000)
  if ttl_ms < 1 then ttl_ms = 1 end
  redis.call('SET', KEYS[1], string.format('%.0f', current), 'PX', string.format('%.0f', ttl_ms))
end
return {granted, string.format('%.0f', current), retry}
"""


def _args(rate: Rate, costs: Sequence[int], now_us: int | None) -> list[int | str]:
    validate_costs(costs)
    fixed_now: int | str = "" if now_us is None else int(now_us)
    return [rate.interval_us, rate.tolerance_us, fixed_now, *costs]


def _decision(reply: Any) -> Decision:
    try:
        granted, new_tat, retry_us = reply
        return Decision(
            granted=int(granted), new_tat=int(new_tat), retry_after=int(retry_us) / MICROS
        )
    except (TypeError, ValueError) as exc:
        raise RateLimitUnavailable(f"unexpected rate limit script reply: {reply!r}") from exc


class RedisRateLimitBackend:
    """Blocking backend on a ``redis.Redis`` client (the client is owned by the caller).

    Give the client a ``socket_timeout``: any Redis failure surfaces as
    :class:`~.errors.RateLimitUnavailable`.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._script = client.register_script(GCRA_LUA)

    def acquire(self, key: str, rate: Rate, costs: Sequence[int]) -> Decision:
        """Atomically grant the longest conforming prefix of ``costs`` for ``key``."""
        return self.acquire_at(key, rate, costs, None)

    def acquire_at(
        self, key: str, rate: Rate, costs: Sequence[int], now_us: int | None
    ) -> Decision:
        """Like :meth:`acquire`, but with a fixed ``now_us`` instead of server ``TIME``.

        Meant for differential tests against :func:`.gcra.decide_prefix`; production code
        calls :meth:`acquire` (``now_us=None``).
        """
        args = _args(rate, costs, now_us)
        try:
            reply = self._script(keys=[key], args=args)
        except RedisError as exc:
            raise RateLimitUnavailable(f"rate limit backend failed: {exc}") from exc
        return _decision(reply)


class AsyncRedisRateLimitBackend:
    """Asyncio backend on a ``redis.asyncio.Redis`` client; same script as the sync one."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self.client = client
        self._script = client.register_script(GCRA_LUA)

    async def acquire(self, key: str, rate: Rate, costs: Sequence[int]) -> Decision:
        """Atomically grant the longest conforming prefix of ``costs`` for ``key``."""
        return await self.acquire_at(key, rate, costs, None)

    async def acquire_at(
        self, key: str, rate: Rate, costs: Sequence[int], now_us: int | None
    ) -> Decision:
        """Like :meth:`acquire`, but with a fixed ``now_us`` (differential tests only)."""
        args = _args(rate, costs, now_us)
        try:
            reply = await self._script(keys=[key], args=args)
        except RedisError as exc:
            raise RateLimitUnavailable(f"rate limit backend failed: {exc}") from exc
        return _decision(reply)
