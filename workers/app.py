"""The Celery application of the workers (the only module, with ``tasks``, importing Celery)."""

from __future__ import annotations

from typing import Any

from celery import Celery, signals
from celery.signals import setup_logging, worker_process_init, worker_process_shutdown

from dispatcher.config import Settings
from dispatcher.ops.logs import configure
from workers import observability

app = Celery(
    "smsdispatch", include=["workers.tasks", "workers.tasks_inbound", "workers.tasks_webhooks"]
)
app.config_from_object("celeryconfig")
observability.connect(signals)  # /metrics, /healthz, /readyz of the pool


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
