"""The thin Celery task applying inbound messages (the logic is :mod:`workers.inbound`)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError

from dispatcher.contract import TASK_APPLY_INBOUND
from dispatcher.store.db import StoreUnavailable
from dispatcher.store.inbound import InboundStore
from workers.app import app
from workers.inbound import apply_inbound
from workers.runtime import runtime

log = structlog.get_logger(component="worker")

DB_ERRORS = (StoreUnavailable, SQLAlchemyError)


@app.task(
    name=TASK_APPLY_INBOUND,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=None,
)
def apply_inbound_task(self: Any, payload: dict[str, Any]) -> None:
    """Apply ``{"connection", "items", "received_at"}`` posted to the inbound endpoint.

    Database trouble retries the whole batch in 5 s; what was applied counts as duplicates.
    """
    rt = runtime()
    connection = str(payload["connection"])
    received_at = payload.get("received_at")
    started = time.perf_counter()
    try:
        report = apply_inbound(
            InboundStore.for_settings(rt.engine, rt.settings),
            rt.connector.parse_inbound,
            connection,
            payload["items"],
            time.time(),
            received_at=float(received_at) if received_at is not None else None,
        )
    except DB_ERRORS as exc:
        log.warning("inbound.retry", connection=connection, error=type(exc).__name__)
        raise self.retry(exc=exc, countdown=5) from exc
    log.info(
        "inbound.applied",
        connection=connection,
        items=len(payload["items"]),
        ms=round((time.perf_counter() - started) * 1000, 1),
        **{k: v for k, v in dataclasses.asdict(report).items() if v},
    )
