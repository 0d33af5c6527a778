"""The thin Celery task of the webhooks lane: unpack ids, call the plain-Python deliverer,
turn infrastructure trouble into a short retry (claims make the rerun harmless)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import structlog

from dispatcher.contract import TASK_DELIVER_WEBHOOKS
from dispatcher.store.db import StoreUnavailable
from workers.app import app
from workers.webhooks.runtime import webhook_runtime

log = structlog.get_logger(component="worker")


@app.task(
    name=TASK_DELIVER_WEBHOOKS,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=None,
)
def deliver_webhooks(self: Any, payload: dict[str, Any]) -> None:
    """Deliver the webhook deliveries ``payload["ids"]`` (see :mod:`workers.webhooks.deliver`)."""
    rt = webhook_runtime()
    started = time.perf_counter()
    try:
        report = rt.run(rt.deliverer.run(payload["ids"]))
    except StoreUnavailable as exc:
        log.warning("webhooks.retry", error=type(exc).__name__, ids=len(payload["ids"]))
        raise self.retry(exc=exc, countdown=5) from exc
    log.info(
        "webhooks.done",
        ms=round((time.perf_counter() - started) * 1000, 1),
        **{k: v for k, v in dataclasses.asdict(report).items() if v},
    )
