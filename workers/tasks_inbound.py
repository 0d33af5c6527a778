"""The thin Celery task applying inbound messages (the logic is :mod:`workers.inbound`)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError

from dispatcher.contract import TASK_APPLY_INBOUND
from dispatcher.store import callback_inbox
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
    """Apply stored inbound messages: ``{"ids": [...]}``, rows of the callback inbox.

    Each row is applied, then deleted. Database trouble leaves the rest of the rows for the
    scheduler to publish again when their lease ends; what was applied then counts as
    duplicates. An ``items`` payload (from a version before the inbox) is stored first.
    """
    rt = runtime()
    try:
        with rt.engine.begin() as conn:
            ids = (
                payload["ids"]
                if "ids" in payload
                else callback_inbox.add_task_payload(
                    conn, callback_inbox.INBOUND, payload, time.time(), rt.settings.callback_lease_s
                )
            )
            rows = callback_inbox.lock(conn, ids, callback_inbox.INBOUND)
        for row in rows:
            _apply_row(rt, row)
    except DB_ERRORS as exc:
        log.warning("inbound.deferred", error=type(exc).__name__)


def _apply_row(rt: Any, row: callback_inbox.StoredCallback) -> None:
    started = time.perf_counter()
    report = apply_inbound(
        InboundStore.for_settings(rt.engine, rt.settings),
        rt.connector.parse_inbound,
        row.connection,
        row.items,
        time.time(),
        received_at=row.received_at,
    )
    with rt.engine.begin() as conn:
        callback_inbox.finish(conn, [row.id])
    log.info(
        "inbound.applied",
        connection=row.connection,
        items=len(row.items),
        ms=round((time.perf_counter() - started) * 1000, 1),
        **{k: v for k, v in dataclasses.asdict(report).items() if v},
    )
