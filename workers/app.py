"""The Celery application of the workers (the only module, with ``tasks``, importing Celery)."""

from __future__ import annotations

from functools import partial
from typing import Any

from celery import Celery, signals
from celery.signals import setup_logging, worker_process_init, worker_process_shutdown
from celery.worker.consumer import Consumer
from kombu import Connection

from dispatcher.config import Settings
from dispatcher.ops.logs import configure
from workers import observability

app = Celery(
    "smsdispatch", include=["workers.tasks", "workers.tasks_inbound", "workers.tasks_webhooks"]
)
app.config_from_object("celeryconfig")
observability.connect(signals)  # /metrics, /healthz, /readyz of the pool

# Reconnect attempts after the broker went away: waits from 0.5 s growing to at most 2 s.
# Celery's own waits (kombu's defaults: 2, 4, 6 … 30 s) delay the first task after a Redis
# restart or a Sentinel failover by up to the wait in progress: after a 30-s outage (Sentinel's
# default down-after) attempts fall at about 30 and 42 s (docs/reliability.md).
RECONNECT_INTERVALS = {"interval_start": 0.5, "interval_step": 0.5, "interval_max": 2.0}


class QuickReconnectConsumer(Consumer):
    """Celery's consumer with :data:`RECONNECT_INTERVALS` between reconnect attempts."""

    def ensure_connected(self, conn: Connection) -> Connection:
        """Connect with short waits between attempts (Celery has no setting for them)."""
        # Celery passes no intervals, so kombu's defaults (2, 2, 30) apply: bind ours instead.
        conn.ensure_connection = partial(conn.ensure_connection, **RECONNECT_INTERVALS)  # type: ignore[method-assign]
        return super().ensure_connected(conn)


app.conf.worker_consumer = f"{__name__}:QuickReconnectConsumer"
# With waits of 2 s, Celery's 100 attempts would end after about three minutes and stop the pool:
# a pool without its broker has nothing else to do, so it keeps trying (its /readyz says why).
app.conf.broker_connection_max_retries = None


@setup_logging.connect
def _logging(**_kwargs: Any) -> None:
    settings = Settings.from_env()
    configure(settings.log_level, settings.log_format)


@worker_process_init.connect
def _process_start(**_kwargs: Any) -> None:
    from workers.runtime import runtime

    runtime()


@worker_process_shutdown.connect
def _process_stop(**_kwargs: Any) -> None:
    from workers.runtime import reset_runtime
    from workers.webhooks.runtime import reset_webhook_runtime

    reset_runtime()
    reset_webhook_runtime()
