"""Circuit breakers per carrier connection, shared by every worker process through Redis.

States: **closed** (traffic flows) → **open** after ``failure_threshold`` consecutive failed
calls, or when failures reach ``error_ratio`` of the calls in the last ``window_s`` seconds
(once there are ``min_calls``) → after ``cooldown_s`` a caller may take a **probe** slot, which
moves it to **half-open**; at most ``probes`` probes are out at a time (a probe slot whose
answer never comes is reclaimed after a lease) → ``probes`` successful probes close it, one
failed probe opens it again for another cool-down.

What counts as a failure: a call that could not reach the carrier or got 5xx / a timeout
(:func:`is_health_failure`). A 4xx reject is the carrier working normally, and a 429 is its
rate limit, which the limiter handles: neither moves the breaker.

Each transition is atomic in one Lua script (Redis server time, so worker clocks never
disagree); the caller logs it and counts it in metrics.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import structlog
from redis.exceptions import RedisError

from dispatcher.routing import BreakerConfig
from dispatcher.routing.breaker_state import KEY_PREFIX  # the panel reads the same keys
from workers.errors import CarrierError, ThrottledError

log = structlog.get_logger(component="breaker")


class State(IntEnum):
    """Breaker states as stored in Redis."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


def is_health_failure(error: CarrierError | None) -> bool:
    """Whether a call's outcome says the connection is unhealthy (see the module doc)."""
    if error is None or isinstance(error, ThrottledError):
        return False
    return bool(error.retryable) and error.code != "claim_expired"


# KEYS[1] state hash. ARGV: ok, was_probe, threshold, ratio, window_s, min_calls, probes, calls
# (how many calls of this outcome: successes are counted together, see Breakers.record).
# Returns {old_state, new_state}.
RECORD_LUA = """
local key = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local sec = tonumber(t[1])
local ok = ARGV[1] == '1'
local threshold, ratio = tonumber(ARGV[3]), tonumber(ARGV[4])
local window, min_calls, probes = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local calls = tonumber(ARGV[8] or '1')
local st = tonumber(redis.call('HGET', key, 'state') or '0')
if ARGV[2] == '1' and tonumber(redis.call('HGET', key, 'probes_out') or '0') > 0 then
  redis.call('HINCRBY', key, 'probes_out', -1)
end
local new = st
if st == 2 and ARGV[2] == '1' then
  if ok then
    if redis.call('HINCRBY', key, 'probe_ok', 1) >= probes then new = 0 end
  else
    new = 1
  end
elseif st == 0 then
  local bucket = key .. (ok and ':ok:' or ':err:') .. sec
  redis.call('INCRBY', bucket, calls)
  redis.call('EXPIRE', bucket, window + 2)
  if ok then
    redis.call('HSET', key, 'fails', 0)
  else
    local fails = redis.call('HINCRBY', key, 'fails', 1)
    if fails >= threshold then
      new = 1
    else
      local oks, errs = 0, 0
      for s = sec - window + 1, sec do
        oks = oks + tonumber(redis.call('GET', key .. ':ok:' .. s) or '0')
        errs = errs + tonumber(redis.call('GET', key .. ':err:' .. s) or '0')
      end
      if oks + errs >= min_calls and errs >= ratio * (oks + errs) then new = 1 end
    end
  end
end
if new ~= st then
  redis.call('HSET', key, 'state', new, 'since', now, 'probes_out', 0, 'probe_ok', 0, 'fails', 0)
  if new == 1 then redis.call('HSET', key, 'opened_at', now) end
  if new == 0 then
    for s = sec - window + 1, sec do
      redis.call('DEL', key .. ':ok:' .. s, key .. ':err:' .. s)
    end
  end
end
return {st, new}
"""

# KEYS: state hashes. ARGV: cooldown_s, probes, lease_s. For each key returns
# {state, may_probe (0/1), seconds until a probe may go}.
PEEK_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cooldown, probes, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for i, key in ipairs(KEYS) do
  local v = redis.call('HMGET', key, 'state', 'opened_at', 'probes_out', 'probe_at')
  local st = tonumber(v[1] or '0')
  local may, wait = 0, 0
  if st == 1 then
    wait = tonumber(v[2] or '0') + cooldown - now
    if wait <= 0 then may, wait = 1, 0 end
  elseif st == 2 then
    local stale = tonumber(v[4] or '0') + lease < now
    if stale or tonumber(v[3] or '0') < probes then may = 1 else wait = 0.2 end
  end
  out[i] = {st, may, tostring(wait)}
end
return out
"""

# KEYS[1] state hash. ARGV: cooldown_s, probes, lease_s. Takes one probe slot.
# Returns {old_state, new_state, granted (0/1)}.
PROBE_LUA = """
local key = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cooldown, probes, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local v = redis.call('HMGET', key, 'state', 'opened_at', 'probes_out', 'probe_at')
local st = tonumber(v[1] or '0')
if st == 0 then return {0, 0, 1} end
local new = st
if st == 1 then
  if tonumber(v[2] or '0') + cooldown > now then return {1, 1, 0} end
  new = 2
  redis.call('HSET', key, 'state', 2, 'since', now, 'probes_out', 0, 'probe_ok', 0)
elseif tonumber(v[4] or '0') + lease < now then
  redis.call('HSET', key, 'probes_out', 0)  -- the holders died: their slots are free again
end
if tonumber(redis.call('HGET', key, 'probes_out') or '0') >= probes then return {st, new, 0} end
redis.call('HINCRBY', key, 'probes_out', 1)
redis.call('HSET', key, 'probe_at', now)
return {st, new, 1}
"""


# KEYS[1] state hash: hand back a probe slot whose message was never sent.
RELEASE_LUA = """
if tonumber(redis.call('HGET', KEYS[1], 'probes_out') or '0') > 0 then
  redis.call('HINCRBY', KEYS[1], 'probes_out', -1)
end
return 1
"""


@dataclass(frozen=True)
class Peek:
    """One connection's breaker as a router sees it."""

    state: State
    may_probe: bool = False  # open past its cool-down, or half-open with a free probe slot
    wait_s: float = 0.0  # when not: seconds until a probe may go

    @property
    def closed(self) -> bool:
        """Whether traffic flows normally."""
        return self.state == State.CLOSED


Transition = Callable[[str, State, State], None]
"""Called as ``hook(connection, old, new)`` on every state change this process caused."""

Seen = Callable[[str, State], None]
"""Called as ``hook(connection, state)`` with each state read from Redis (for gauges)."""


class Breakers:
    """The breakers of all connections over one async Redis client.

    Redis trouble never stops sending: the breakers then read as closed (failing open), because
    a broken breaker store must not turn into an outage of every route.
    """

    def __init__(
        self,
        redis: Any,
        config: BreakerConfig,
        on_transition: Transition | None = None,
        key_prefix: str = KEY_PREFIX,
        peek_ttl_s: float = 0.2,
        lease_s: float = 15.0,
        on_seen: Seen | None = None,
    ) -> None:
        self.redis = redis
        self.config = config
        self.on_transition = on_transition
        self.on_seen = on_seen
        self.key_prefix = key_prefix
        self.peek_ttl_s = peek_ttl_s
        self.lease_s = lease_s  # a probe unanswered this long frees its slot
        self._record = redis.register_script(RECORD_LUA)
        self._peek = redis.register_script(PEEK_LUA)
        self._probe = redis.register_script(PROBE_LUA)
        self._release = redis.register_script(RELEASE_LUA)
        self._cache: tuple[float, dict[str, Peek]] = (0.0, {})
        self._successes: dict[str, list[asyncio.Future[State]]] = {}  # waiting to be counted
        self._counting: dict[str, asyncio.Task[None]] = {}  # the counting task of each

    def key(self, connection: str) -> str:
        """The Redis hash of ``connection``'s breaker."""
        return f"{self.key_prefix}{connection}"

    def _changed(self, connection: str, old: int, new: int) -> None:
        if old == new:
            return
        self._cache = (0.0, {})
        o, n = State(old), State(new)
        log.warning("breaker.transition", connection=connection, old=o.name, new=n.name)
        if self.on_transition is not None:
            self.on_transition(connection, o, n)

    async def peek(self, connections: Sequence[str]) -> dict[str, Peek]:
        """States of ``connections`` (cached for ``peek_ttl_s``: one round trip per sub-batch)."""
        at, cached = self._cache
        if time.monotonic() - at < self.peek_ttl_s and all(c in cached for c in connections):
            return cached
        c = self.config
        try:
            rows = await self._peek(
                keys=[self.key(n) for n in connections], args=[c.cooldown_s, c.probes, self.lease_s]
            )
        except RedisError as exc:
            log.warning("breaker.unavailable", error=type(exc).__name__)
            return {n: Peek(State.CLOSED) for n in connections}
        out = {
            n: Peek(State(int(r[0])), bool(int(r[1])), max(0.0, float(r[2])))
            for n, r in zip(connections, rows, strict=True)
        }
        self._cache = (time.monotonic(), out)
        if self.on_seen is not None:
            for name, p in out.items():
                self.on_seen(name, p.state)
        return out

    async def try_probe(self, connection: str) -> bool:
        """Take a probe slot of a connection that is not closed (half-opening it if due)."""
        c = self.config
        try:
            old, new, granted = await self._probe(
                keys=[self.key(connection)], args=[c.cooldown_s, c.probes, self.lease_s]
            )
        except RedisError as exc:
            log.warning("breaker.unavailable", error=type(exc).__name__)
            return True
        self._changed(connection, int(old), int(new))
        return bool(int(granted))

    async def record(self, connection: str, ok: bool, probe: bool = False) -> State:
        """Count one call's outcome; returns the state after it.

        Successes that are not probes are counted together: those recorded while one script
        call runs go in the next one (one round trip for a window of calls, not one per
        call; the SMPP send lane records a call per message). Failures and probes go one by
        one, since each may move the state."""
        if ok and not probe:
            return await self._success(connection)
        return await self._call_record(connection, ok, probe, 1)

    async def _call_record(self, connection: str, ok: bool, probe: bool, calls: int) -> State:
        c = self.config
        try:
            old, new = await self._record(
                keys=[self.key(connection)],
                args=[
                    int(ok),
                    int(probe),
                    c.failure_threshold,
                    c.error_ratio,
                    c.window_s,
                    c.min_calls,
                    c.probes,
                    calls,
                ],
            )
        except RedisError as exc:
            log.warning("breaker.unavailable", error=type(exc).__name__)
            return State.CLOSED
        self._changed(connection, int(old), int(new))
        return State(int(new))

    async def _success(self, connection: str) -> State:
        loop = asyncio.get_running_loop()
        waiting = self._successes.setdefault(connection, [])
        fut: asyncio.Future[State] = loop.create_future()
        waiting.append(fut)
        task = self._counting.get(connection)
        if task is None or task.done() or task.get_loop() is not loop:
            self._counting[connection] = loop.create_task(self._count_successes(connection))
        return await fut

    async def _count_successes(self, connection: str) -> None:
        try:
            while waiting := self._successes.pop(connection, []):
                try:
                    state = await self._call_record(connection, True, False, len(waiting))
                except Exception as exc:  # each caller sees it, as with a call of its own
                    for f in waiting:
                        if not f.done():
                            f.set_exception(exc)
                    continue
                for f in waiting:
                    if not f.done():
                        f.set_result(state)
        finally:
            if self._counting.get(connection) is asyncio.current_task():
                del self._counting[connection]

    async def release_probe(self, connection: str) -> None:
        """Give back a probe slot taken by :meth:`try_probe` whose message was not sent."""
        try:
            await self._release(keys=[self.key(connection)])
        except RedisError as exc:
            log.warning("breaker.unavailable", error=type(exc).__name__)
