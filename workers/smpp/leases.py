"""Bind leases: at most ``binds`` open binds per connection over every host, through Redis.

The operator allows an account a fixed number of binds. Each bind slot ``0 … binds-1`` is a
Redis key holding the token of the holder process that owns it, with an expiry; a holder binds
only on a slot it owns and renews it well before it expires. A holder that dies or stalls loses
its slots when they expire, and another may take them; a holder that finds a slot gone (its
renewal failed: it stalled past the expiry) closes that bind at once. The expiry is several
renewal periods long, so a busy process does not lose slots to a late tick.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

LEASE_KEY = "smpp:{connection}:lease:{slot}"

# Extend only our own lease. KEYS: lease keys; ARGV: token, ttl ms. Returns the kept slots' keys.
_RENEW = """
local kept = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    table.insert(kept, key)
  end
end
return kept
"""
# Delete only our own lease.
_RELEASE = """
local n = 0
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
    n = n + 1
  end
end
return n
"""


def lease_key(connection: str, slot: int) -> str:
    """The Redis key of one bind slot."""
    return LEASE_KEY.format(connection=connection, slot=slot)


class BindLeases:
    """The bind slots of one connection as one holder process sees them."""

    def __init__(self, redis: Any, connection: str, binds: int, token: str, ttl_s: float) -> None:
        self.redis = redis
        self.connection = connection
        self.binds = binds
        self.token = token
        self.ttl_ms = int(ttl_s * 1000)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    async def acquire(self, want: int, held: Iterable[int]) -> list[int]:
        """Take free slots (not in ``held``) until this holder owns ``want``; the new ones."""
        owned = set(held)
        got: list[int] = []
        for slot in range(self.binds):
            if len(owned) + len(got) >= want:
                break
            if slot in owned:
                continue
            if await self.redis.set(
                lease_key(self.connection, slot), self.token, nx=True, px=self.ttl_ms
            ):
                got.append(slot)
        return got

    async def renew(self, held: Iterable[int]) -> set[int]:
        """Extend the slots in ``held``; the ones still ours (the others must close now)."""
        slots = sorted(held)
        if not slots:
            return set()
        keys = [lease_key(self.connection, s) for s in slots]
        kept = {
            k.decode() if isinstance(k, bytes) else k
            for k in await self._renew(keys, [self.token, self.ttl_ms])
        }
        return {s for s, k in zip(slots, keys, strict=True) if k in kept}

    async def release(self, slots: Iterable[int]) -> None:
        """Give slots back (after their bind closed)."""
        keys = [lease_key(self.connection, s) for s in slots]
        if keys:
            await self._release(keys, [self.token])
