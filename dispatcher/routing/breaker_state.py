"""Where the workers keep each connection's circuit breaker in Redis, and a reader for the
panel's operator page. The workers own the state machine (``workers/breaker.py``); this module
only names the key and the stored state numbers so both sides agree (a unit test checks it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

KEY_PREFIX = "smsd:cb:"
# The numbers workers/breaker.py's State stores.
STATE_NAMES = {0: "closed", 1: "open", 2: "half-open"}


@dataclass(frozen=True)
class BreakerView:
    """A connection's breaker as the operator reads it."""

    state: str  # closed | open | half-open
    since: float | None  # when it entered that state (never moved: None)


async def read_breakers(redis: Redis, connections: Sequence[str]) -> dict[str, BreakerView]:
    """Each connection's breaker; one that never tripped is ``closed`` since ``None``."""
    async with redis.pipeline(transaction=False) as p:
        for name in connections:
            p.hmget(KEY_PREFIX + name, "state", "since")
        rows = await p.execute()
    out = {}
    for name, (state, since) in zip(connections, rows, strict=True):
        number = int(state) if state is not None else 0
        out[name] = BreakerView(
            STATE_NAMES.get(number, f"unknown ({number})"),
            float(since) if since is not None else None,
        )
    return out
