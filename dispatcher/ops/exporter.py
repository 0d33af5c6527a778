"""``smsdispatch exporter``: the broker-side gauges, read from Redis and the log at each scrape.

What it reports, and how it stays cheap (one Redis pipeline and a few indexed queries per
scrape, whatever the backlog):

- **queue depth per lane**: ``LLEN`` of the lane's list and of kombu's priority sub-lists
  (``"{queue}\\x06\\x16{n}"``), in tasks (a bulk task carries up to ``SMSDISPATCH_CHUNK_SIZE``
  messages);
- **age of the oldest waiting task per lane**: kombu pushes on the left and pops on the right, so
  the oldest task of each list is ``LINDEX key -1``. Its age comes from the task itself: the
  header the publisher stamps, else the payload's own clock (a chunk's batch id is a UUIDv7
  minted when the batch was created): :func:`dispatcher.contract.celery_wire.published_at`.
  We chose this over
  ``min(queued_at)`` of queued messages in the log because it costs O(1) per lane (the log has
  no ``(lane, queued_at)`` index, so that minimum scans the other lane's backlog), it covers the
  dlr and webhooks lanes, whose tasks are not messages, it measures exactly what autoscaling and
  the alerts act on (work waiting for a worker), and it keeps answering when the database is
  the slow part;
- **scheduled and retrying messages that are due** but not yet released (the scheduler's
  backlog), and how late the oldest one is;
- **unpublished outbox batches** (committed, never handed to Redis);
- **bulk work waiting for fair admission per account** (docs/campaigns.md): messages and the
  oldest one's age, for a bounded set of accounts (:func:`bounded_accounts`: the top N by
  messages waiting plus an opt-in list, everyone else summed under ``account="other"``), read
  from the partial index of waiting batches (as many rows as waiting chunks);
- **report (DLR) lag**: reports waiting on the dlr lane are its queue age above; the time from
  receipt to applied is the dlr workers' ``smsdispatch_report_lag_seconds``;
- **accounts below their low-balance level** (prices and balances, docs/prices.md);
- **how far the dashboard's rollup is behind** (the scheduler's hourly job,
  :mod:`dispatcher.store.rollups`);
- **webhook backlog**: pending and due deliveries, how late the oldest due one is, the oldest
  pending one's age, and endpoints by state (``suspended`` alerts).

Each source reports ``smsdispatch_exporter_source_up{source}``: a Redis or database outage makes
that source's gauges disappear instead of reading as zero.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

import redis
import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from dispatcher.contract import HELD_STATUSES, Lane, queue_name
from dispatcher.contract.celery_wire import PRIORITY_LEVELS, UNACKED_KEY, published_at, queue_keys
from dispatcher.ops.health import HealthServer, alive, check_database, check_redis, json_route
from dispatcher.ops.health import metrics_route as registry_route
from dispatcher.redis_clients import sync_client
from dispatcher.store import backlog
from dispatcher.store.db import StoreUnavailable, transaction

log = structlog.get_logger(component="exporter")

ENDPOINT_STATES = ("active", "suspended", "disabled")


def _gauge(name: str, doc: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


class BrokerCollector(Collector):
    """Collects the broker-side gauges on every scrape (nothing is cached between scrapes)."""

    def __init__(
        self,
        redis_client: redis.Redis,
        engine: Engine,
        lanes: Iterable[Lane] = tuple(Lane),
        clock: Callable[[], float] = time.time,
        top_accounts: int = 10,
        named_accounts: Iterable[int] = (),
    ) -> None:
        self.redis = redis_client
        self.engine = engine
        self.lanes = tuple(lanes)
        self.clock = clock
        self.top_accounts = top_accounts
        self.named_accounts = frozenset(named_accounts)

    def describe(self) -> list[Metric]:
        """Nothing up front: registering must not query Redis or the database."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Read Redis, then the log; each source's failure only hides its own gauges."""
        now = self.clock()
        up = _gauge(
            "smsdispatch_exporter_source_up",
            "Whether the last scrape could read the source (redis, database).",
            ["source"],
        )
        took = _gauge(
            "smsdispatch_exporter_collect_duration_seconds",
            "How long the last scrape took to read the source.",
            ["source"],
        )
        for source, read in (("redis", self._redis), ("database", self._database)):
            started = time.perf_counter()
            try:
                families = read(now)
            except (redis.RedisError, StoreUnavailable, OSError) as exc:
                log.warning("exporter.source_failed", source=source, error=type(exc).__name__)
                up.add_metric([source], 0)
            else:
                up.add_metric([source], 1)
                yield from families
            took.add_metric([source], time.perf_counter() - started)
        yield up
        yield took

    # -- Redis ------------------------------------------------------------------------------------
    def _redis(self, now: float) -> list[Metric]:
        pipe = self.redis.pipeline(transaction=False)
        for lane in self.lanes:
            for key in queue_keys(queue_name(lane)):
                pipe.llen(key)
                pipe.lindex(key, -1)
        pipe.hlen(UNACKED_KEY)
        results = pipe.execute()
        depth = _gauge(
            "smsdispatch_queue_depth",
            "Tasks waiting in a lane's Redis queue (priority sub-lists included).",
            ["lane"],
        )
        age = _gauge(
            "smsdispatch_queue_oldest_age_seconds",
            "Age of the oldest task waiting in a lane's queue (0 when empty).",
            ["lane"],
        )
        per_lane = len(PRIORITY_LEVELS) + 1
        for i, lane in enumerate(self.lanes):
            chunk = results[i * per_lane * 2 : (i + 1) * per_lane * 2]
            lengths = [int(n or 0) for n in chunk[0::2]]
            tails = [t for n, t in zip(lengths, chunk[1::2], strict=True) if n and t is not None]
            depth.add_metric([str(lane)], sum(lengths))
            if not tails:
                age.add_metric([str(lane)], 0.0)
                continue
            stamps = [s for s in (published_at(t) for t in tails) if s is not None]
            if stamps:
                age.add_metric([str(lane)], max(0.0, now - min(stamps)))
        unacked = _gauge(
            "smsdispatch_queue_unacked_tasks",
            "Tasks delivered to workers and not yet acknowledged (all lanes).",
        )
        unacked.add_metric([], int(results[-1] or 0))
        return [depth, age, unacked]

    # -- the message log --------------------------------------------------------------------------
    def _database(self, now: float) -> list[Metric]:
        with transaction(self.engine) as conn:
            log_now = backlog.read(conn, now)

        due_count = _gauge(
            "smsdispatch_scheduled_due_messages",
            "Scheduled or retrying messages whose time has come but are not released yet.",
            ["status"],
        )
        due_delay = _gauge(
            "smsdispatch_scheduled_due_delay_seconds",
            "How late the oldest due scheduled or retrying message is (0 when none).",
            ["status"],
        )
        for status in sorted(HELD_STATUSES):
            n, oldest = log_now.due_held.get(status, (0, None))
            due_count.add_metric([status], n)
            due_delay.add_metric([status], _since(now, oldest))

        out_n = _gauge(
            "smsdispatch_outbox_unpublished_batches",
            "Dispatch batches committed but not yet handed to Redis.",
        )
        out_n.add_metric([], log_now.unpublished_batches[0])
        out_age = _gauge(
            "smsdispatch_outbox_oldest_age_seconds",
            "Age of the oldest unpublished dispatch batch (0 when none).",
        )
        out_age.add_metric([], _since(now, log_now.unpublished_batches[1]))

        wh_pending = _gauge(
            "smsdispatch_webhook_pending_deliveries", "Webhook deliveries not yet delivered."
        )
        wh_pending.add_metric([], log_now.pending_webhooks[0])
        wh_age = _gauge(
            "smsdispatch_webhook_oldest_pending_age_seconds",
            "Age of the oldest webhook delivery still pending (0 when none).",
        )
        wh_age.add_metric([], _since(now, log_now.pending_webhooks[1]))
        wh_due = _gauge(
            "smsdispatch_webhook_due_deliveries",
            "Pending webhook deliveries whose next attempt is due.",
        )
        wh_due.add_metric([], log_now.due_webhooks[0])
        wh_delay = _gauge(
            "smsdispatch_webhook_due_delay_seconds",
            "How late the oldest due webhook attempt is (0 when none).",
        )
        wh_delay.add_metric([], _since(now, log_now.due_webhooks[1]))

        states = _gauge(
            "smsdispatch_webhook_endpoints",
            "Customer webhook endpoints by state (active, suspended, disabled).",
            ["state"],
        )
        by_state = log_now.endpoints
        for state in sorted(set(ENDPOINT_STATES) | set(by_state)):
            states.add_metric([state], by_state.get(state, 0))
        in_n = _gauge(
            "smsdispatch_callback_inbox_rows",
            "Carrier callbacks (report, inbound) stored and not yet applied; a row holds the "
            "items of concurrent callbacks, early reports wait here for their next try.",
            ["kind"],
        )
        in_age = _gauge(
            "smsdispatch_callback_inbox_oldest_age_seconds",
            "Age of the oldest carrier callback not yet applied (0 when none).",
            ["kind"],
        )
        for kind, (n, oldest) in log_now.inbox.items():
            in_n.add_metric([kind], n)
            in_age.add_metric([kind], _since(now, oldest))
        dead_n = _gauge(
            "smsdispatch_dead_letters",
            "Rows of the callback inbox (kind report, inbound) and the webhook outbox (kind "
            "webhook) set aside after failing to apply too many times: they wait for an operator "
            "(smsdispatch dead-letters).",
            ["kind"],
        )
        for kind, (n, _oldest) in log_now.dead_letters.items():
            dead_n.add_metric([kind], n)
        dead_n.add_metric(["webhook"], log_now.dead_webhooks)
        low_n = _gauge(
            "smsdispatch_accounts_low_balance",
            "Accounts whose balance is below their low-balance level (docs/prices.md).",
        )
        low_n.add_metric([], log_now.low_balance_accounts)
        rollup = _gauge(
            "smsdispatch_dashboard_rollup_behind_seconds",
            "How far the dashboard's hourly rollup is behind (now minus the end of the last "
            "hour rolled up; 1-2 h when the scheduler keeps up). Absent until its first run.",
        )
        if log_now.rolled_until is not None:
            rollup.add_metric([], _since(now, log_now.rolled_until))
        fair_n = _gauge(
            "smsdispatch_bulk_waiting_messages",
            "Bulk messages waiting for fair admission into the bulk queue, per account (the top "
            'accounts and the opt-in list; the rest summed as account="other").',
            ["account"],
        )
        fair_age = _gauge(
            "smsdispatch_bulk_waiting_oldest_age_seconds",
            "Age of the account's oldest bulk batch waiting for fair admission.",
            ["account"],
        )
        shown = bounded_accounts(
            {a: (w.messages, w.oldest) for a, w in log_now.admission.items()},
            self.top_accounts,
            self.named_accounts,
        )
        for label, (n, oldest) in shown.items():
            fair_n.add_metric([label], n)
            fair_age.add_metric([label], _since(now, oldest))
        return [
            rollup,
            fair_n,
            fair_age,
            low_n,
            dead_n,
            due_count,
            due_delay,
            out_n,
            out_age,
            wh_pending,
            wh_age,
            wh_due,
            wh_delay,
            states,
            in_n,
            in_age,
        ]


def bounded_accounts(
    waiting: dict[int, tuple[int, float]], top: int, named: frozenset[int]
) -> dict[str, tuple[int, float | None]]:
    """Per-account figures (messages, oldest) under a bounded label set.

    The ``top`` accounts with most messages waiting and the ``named`` ones (opt-in, always
    reported, 0 when idle) get their id as label; the others are summed under ``"other"``
    (their oldest is the oldest of them all), which is always reported. So the series per
    scrape never exceed ``top + len(named) + 1``, however many accounts send.
    """
    ranked = sorted(waiting.items(), key=lambda kv: (-kv[1][0], kv[0]))
    chosen = {a for a, _ in ranked[: max(0, top)]} | set(named)
    out: dict[str, tuple[int, float | None]] = {str(a): (0, None) for a in sorted(named)}
    other_n, other_oldest = 0, None
    for account, (n, oldest) in ranked:
        if account in chosen:
            out[str(account)] = (n, oldest)
        else:
            other_n += n
            other_oldest = oldest if other_oldest is None else min(other_oldest, oldest)
    out["other"] = (other_n, other_oldest)
    return out


def _since(now: float, then: float | None) -> float:
    return 0.0 if then is None else max(0.0, now - float(then))


def build_registry(
    redis_client: redis.Redis,
    engine: Engine,
    top_accounts: int = 10,
    named_accounts: Iterable[int] = (),
) -> CollectorRegistry:
    """A registry holding only the broker-side gauges (no process metrics: many exporters may
    run, and their own CPU is of no interest)."""
    registry = CollectorRegistry()
    registry.register(
        BrokerCollector(
            redis_client, engine, top_accounts=top_accounts, named_accounts=named_accounts
        )
    )
    return registry


def account_ids(raw: str) -> list[int]:
    """``SMSDISPATCH_FAIR_METRICS_ACCOUNTS``: comma-separated account ids."""
    out: list[int] = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        if not part.isdigit():
            raise ValueError(
                f"SMSDISPATCH_FAIR_METRICS_ACCOUNTS: {part!r} is not an account id (a number)"
            )
        out.append(int(part))
    return out


def cmd_exporter(args: argparse.Namespace) -> int:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` until SIGTERM/SIGINT.

    Listens on ``--host``/``--port``, else ``SMSDISPATCH_EXPORTER_HOST`` (default 127.0.0.1) and
    ``SMSDISPATCH_EXPORTER_PORT`` (default 9105).
    """
    from dispatcher.config import Settings
    from dispatcher.ops.logs import configure
    from dispatcher.store.db import make_engine

    settings = Settings.from_env()
    configure(settings.log_level, settings.log_format)
    host = getattr(args, "host", None) or settings.exporter_host
    port = getattr(args, "port", None) or settings.exporter_port
    client = sync_client(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    engine = make_engine(settings.database_url, pool_size=1)

    def ready() -> dict[str, str]:
        return {"redis": check_redis(client), "database": check_database(engine)}

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = HealthServer(
        host,
        port,
        {
            "/metrics": registry_route(
                build_registry(
                    client,
                    engine,
                    settings.fair_metrics_top,
                    account_ids(settings.fair_metrics_accounts),
                )
            ),
            "/healthz": alive,
            "/readyz": json_route(ready),
        },
    )
    log.info("exporter.started", host=host, port=server.port)
    stop.wait()
    server.close()
    client.close()
    engine.dispose()
    log.info("exporter.stopped")
    return 0
