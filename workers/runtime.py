"""Per-process resources, built once when a worker process starts (never at import).

One event loop, one pooled aiohttp session, one database engine and one Redis client per
process; the tasks borrow them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import aiohttp
import redis.asyncio as aioredis

from dispatcher.config import Settings
from dispatcher.contract import Lane
from dispatcher.store.db import make_engine
from workers import metrics
from workers.connectors.base import Connector
from workers.connectors.simulator import SimulatorConnector
from workers.progress_store import SqlProgress
from workers.rate_limits import AsyncLimiter, AsyncRedisRateLimitBackend, Rate
from workers.retry import RetryPolicy
from workers.sending import ChunkSender, SenderOptions
from workers.tokens import ConnectionTokens

T = TypeVar("T")

DEFAULT_CONNECTION = "default"


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (cheaper per request), else the stock loop."""
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency via uvicorn[standard]
        return asyncio.new_event_loop()


def sub_batch_for(settings: Settings, lane: str) -> int:
    """Messages claimed at a time: enough to fill batch submits, but no more than a quarter
    second of the connection's rate, so claims never wait long for tokens."""
    want = max(200, settings.carrier_batch_size) if lane == Lane.BULK else 50
    return max(1, min(want, int(settings.carrier_tps * 0.25)))


def send_deadline(settings: Settings) -> float:
    """How long after a claim a carrier call may still start (see ``SenderOptions``)."""
    return max(0.2, settings.sending_stale_s - settings.carrier_timeout_s - 1.0)


class Runtime:
    """Everything a worker process needs to send."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = new_loop()
        asyncio.set_event_loop(self.loop)
        self.engine = make_engine(settings.database_url, pool_size=4)
        self.store = SqlProgress(self.engine)
        self.session: aiohttp.ClientSession = self.loop.run_until_complete(self._session())
        self.redis = aioredis.Redis.from_url(settings.redis_url)
        self.limiter = AsyncLimiter(
            AsyncRedisRateLimitBackend(self.redis), on_wait=metrics.record_rate_wait
        )
        self.connector: Connector = SimulatorConnector(
            DEFAULT_CONNECTION,
            settings.carrier_url,
            self.session,
            token=settings.carrier_token,
            max_batch=settings.carrier_batch_size,
            timeout_s=settings.carrier_timeout_s,
        )
        rate = Rate(settings.carrier_tps)  # default burst: 1 % of a second, at least 2
        self.tokens = ConnectionTokens(self.limiter, DEFAULT_CONNECTION, rate)
        metrics.set_rate_limit(DEFAULT_CONNECTION, settings.carrier_tps)
        self.policies = {
            Lane.PRIORITY: RetryPolicy(settings.max_attempts, base_s=0.5, cap_s=30.0),
            Lane.BULK: RetryPolicy(
                settings.max_attempts, settings.retry_base_s, settings.retry_max_s
            ),
        }

    async def _session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self.settings.carrier_max_in_flight, ttl_dns_cache=300
        )
        return aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",))

    def sender(self, lane: str) -> ChunkSender:
        """A sender for one chunk of ``lane``."""
        options = SenderOptions(
            lane=str(lane),
            sub_batch=sub_batch_for(self.settings, lane),
            max_in_flight=self.settings.carrier_max_in_flight,
            rate_wait_max_s=self.settings.rate_wait_max_s,
            send_deadline_s=send_deadline(self.settings),
        )
        policy = self.policies.get(Lane(lane), self.policies[Lane.BULK])
        return ChunkSender(self.store, self.connector, self.tokens, policy, options)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on this process's loop."""
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        """Release connections (worker process shutdown)."""
        self.run(self.session.close())
        self.run(self.redis.aclose())
        self.engine.dispose()
        self.loop.close()


_runtime: Runtime | None = None


def runtime() -> Runtime:
    """This process's runtime, built on first use after the fork."""
    global _runtime
    if _runtime is None:
        _runtime = Runtime(Settings.from_env())
    return _runtime


def reset_runtime() -> None:
    """Close and forget this process's runtime."""
    global _runtime
    if _runtime is not None:
        _runtime.close()
        _runtime = None
