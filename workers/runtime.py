"""Per-process resources, built once when a worker process starts (never at import).

One event loop, a keep-alive HTTP pool per carrier connection, one database engine and one
Redis client per process; the tasks borrow them. The connections come from the routing
configuration (``SMSDISPATCH_CONNECTIONS``); without one, a single ``default`` connection on the
configured carrier URL sends everything, exactly as before routing existed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from dispatcher.config import Settings
from dispatcher.contract import Lane
from dispatcher.ratelimit import AsyncLimiter, AsyncRedisRateLimitBackend, Rate
from dispatcher.redis_clients import async_client
from dispatcher.routing import DEFAULT_CONNECTION, RoutingConfig, current_table
from dispatcher.sms.quiet_hours import parse_zones
from dispatcher.store.db import make_engine
from dispatcher.store.progress import SendProgress
from workers import metrics
from workers.connectors.base import Connector
from workers.connectors.chooser import RouteChooser
from workers.connectors.registry import ConnectorSet, build_connector
from workers.connectors.window import InFlightWindow
from workers.process_local import ProcessLocal
from workers.sending.breaker import Breakers, State
from workers.sending.retry import RetryPolicy
from workers.sending.sender import ChunkSender, Route, SenderOptions
from workers.sending.tokens import ConnectionTokens, SmppTokens

T = TypeVar("T")

__all__ = ["DEFAULT_CONNECTION", "Runtime", "reset_runtime", "runtime"]


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (cheaper per request), else the stock loop."""
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency via uvicorn[standard]
        return asyncio.new_event_loop()


def sub_batch_for(settings: Settings, lane: str, config: RoutingConfig | None = None) -> int:
    """Messages claimed at a time: enough to fill batch submits, but no more than a quarter
    second of the fastest connection's rate, so claims never wait long for tokens."""
    conns = config.connections if config else ()
    batch = max((c.batch_size for c in conns), default=settings.carrier_batch_size)
    tps = max((c.tps for c in conns), default=settings.carrier_tps)
    want = max(200, batch) if lane == Lane.BULK else 50
    return max(1, min(want, int(tps * 0.25)))


def send_deadline(settings: Settings) -> float:
    """How long after a claim a carrier call may still start (see ``SenderOptions``)."""
    return max(0.2, settings.sending_stale_s - settings.carrier_timeout_s - 1.0)


def _transition(connection: str, old: State, new: State) -> None:
    metrics.record_breaker_transition(connection, old.name.lower(), new.name.lower())


def _seen(connection: str, state: State) -> None:
    metrics.set_breaker_state(connection, state.name.lower())


class Runtime:
    """Everything a worker process needs to send."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = new_loop()
        asyncio.set_event_loop(self.loop)
        self.engine = make_engine(settings.database_url, pool_size=4, plan_each_run=True)
        self.store = SendProgress(self.engine, settings.webhook_on_sent_check_s)
        self.redis = async_client(settings.redis_url)
        self.limiter = AsyncLimiter(
            AsyncRedisRateLimitBackend(self.redis), on_wait=metrics.record_rate_wait
        )
        self.table = current_table(settings)
        self.config = self.table.config
        self.routes: list[Route] = []
        for cfg in self.config.connections:
            window = None
            # An SMPP connection's windows are the holder's (per bind, per lane).
            if cfg.max_in_flight is not None and cfg.smpp is None:
                window = InFlightWindow(
                    self.redis, cfg.name, cfg.max_in_flight, lease_s=cfg.timeout_s + 5
                )
            tokens: ConnectionTokens = ConnectionTokens(self.limiter, cfg.name, Rate(cfg.send_rate))
            if cfg.smpp is not None:
                tokens = SmppTokens(self.limiter, cfg.name, Rate(cfg.send_rate), self.redis)
            connector = build_connector(cfg, settings.carrier_max_in_flight, self.redis)
            self.routes.append(Route(cfg.name, connector, tokens, window))
            metrics.set_rate_limit(cfg.name, cfg.tps)
        self.connectors = ConnectorSet({r.name: r.connector for r in self.routes})
        self.breakers: Breakers | None = None
        self.chooser: RouteChooser | None = None
        # The tasks' one-connector face: the connector itself while there is only the implicit
        # default (behaviour unchanged), the set of all of them with a connections file.
        self.connector: Connector | ConnectorSet = self.routes[0].connector
        if not self.config.implicit:
            self.connector = self.connectors
            self.breakers = Breakers(
                self.redis,
                self.config.breaker,
                on_transition=_transition,
                on_seen=_seen,
                lease_s=max(c.timeout_s for c in self.config.connections) + 5,
            )
            self.chooser = RouteChooser(self.table, self.breakers, self._account_names)
        self.policies = {
            Lane.PRIORITY: RetryPolicy(settings.max_attempts, base_s=0.5, cap_s=30.0),
            Lane.BULK: RetryPolicy(
                settings.max_attempts, settings.retry_base_s, settings.retry_max_s
            ),
        }
        self._names: dict[int, str] = {}

    async def _account_names(self, ids: Sequence[int]) -> Mapping[int, str]:
        missing = [i for i in ids if i not in self._names]
        if missing:
            self._names.update(await asyncio.to_thread(self.store.account_names, missing))
        return self._names

    def sender(self, lane: str) -> ChunkSender:
        """A sender for one chunk of ``lane``."""
        options = SenderOptions(
            lane=str(lane),
            sub_batch=sub_batch_for(self.settings, lane, self.config),
            max_in_flight=self.settings.carrier_max_in_flight,
            rate_wait_max_s=self.settings.rate_wait_max_s,
            send_deadline_s=send_deadline(self.settings),
            route_wait_s=self.config.breaker.wait_s,
            window_zones=parse_zones(self.settings.send_window_zones),
        )
        policy = self.policies.get(Lane(lane), self.policies[Lane.BULK])
        return ChunkSender(self.store, self.routes, policy, options, chooser=self.chooser)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on this process's loop."""
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        """Release connections (worker process shutdown)."""
        self.run(self.connectors.close())
        self.run(self.redis.aclose())
        self.engine.dispose()
        self.loop.close()


_RUNTIME = ProcessLocal(lambda: Runtime(Settings.from_env()))


def runtime() -> Runtime:
    """This process's runtime, built on first use after the fork."""
    return _RUNTIME.get()


def reset_runtime() -> None:
    """Close and forget this process's runtime."""
    _RUNTIME.reset()
