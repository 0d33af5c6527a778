"""Thin Celery tasks: unpack the payload, call plain-Python logic, translate errors to retries."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import structlog

from dispatcher.contract import TASK_RECONCILE, TASK_SEND_CHUNK
from dispatcher.store.db import StoreUnavailable
from workers.app import app
from workers.errors import CarrierError
from workers.rate_limits import RateLimitUnavailable
from workers.reconcile import reconcile
from workers.runtime import runtime

log = structlog.get_logger(component="worker")

# Infrastructure trouble: the chunk is retried as a whole; claims make the rerun safe.
INFRA_ERRORS = (StoreUnavailable, RateLimitUnavailable)


@app.task(
    name=TASK_SEND_CHUNK,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=None,
)
def send_chunk(self: Any, payload: dict[str, Any]) -> None:
    """Send one chunk of messages (see :class:`workers.sending.ChunkSender`)."""
    rt = runtime()
    started = time.perf_counter()
    try:
        report = rt.run(rt.sender(payload["lane"]).run(payload["messages"]))
    except INFRA_ERRORS as exc:
        log.warning("chunk.retry", batch=payload.get("batch"), error=type(exc).__name__)
        raise self.retry(exc=exc, countdown=5) from exc
    log.info(
        "chunk.done",
        batch=payload.get("batch"),
        lane=payload.get("lane"),
        connection=rt.connector.name,
        ms=round((time.perf_counter() - started) * 1000, 1),
        **{k: v for k, v in dataclasses.asdict(report).items() if v},
    )


@app.task(
    name=TASK_RECONCILE,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=None,
)
def reconcile_sending(self: Any, payload: dict[str, Any]) -> None:
    """Resolve claims left in "sending" by a crashed worker (ids found by the scheduler)."""
    rt = runtime()
    now = time.time()
    older_than = now - rt.settings.sending_stale_s
    try:
        report = rt.run(reconcile(rt.store, rt.connector, payload["ids"], older_than, now))
    except (*INFRA_ERRORS, CarrierError) as exc:
        raise self.retry(exc=exc, countdown=10) from exc
    log.info("reconcile.done", **dataclasses.asdict(report))
