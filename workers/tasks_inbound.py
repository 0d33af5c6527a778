"""The thin Celery task applying inbound messages (the logic is :mod:`workers.inbound`)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import structlog

from dispatcher.contract import TASK_APPLY_INBOUND
from dispatcher.store import callback_inbox
from dispatcher.store.db import StoreUnavailable, transaction
from dispatcher.store.inbound import InboundStore
from workers import metrics
from workers.app import app
from workers.inbound import InboundReport, apply_inbound
from workers.isolation import apply_isolated
from workers.runtime import runtime

log = structlog.get_logger(component="worker")


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

    Each row is applied, then deleted; a row whose data makes applying fail is found and set
    aside without holding up the others (:mod:`workers.isolation`). Database trouble leaves
    the rest of the rows for the scheduler to publish again when their lease ends; what was
    applied then counts as duplicates.
    """
    rt = runtime()
    now = time.time()

    def apply(ids: Sequence[int], _take_fresh: bool) -> list[InboundReport]:
        with transaction(rt.engine) as conn:
            rows = callback_inbox.lock(conn, ids, callback_inbox.INBOUND)
        return [_apply_row(rt, row) for row in rows]

    try:
        done = apply_isolated(
            rt.engine,
            callback_inbox.INBOUND,
            payload["ids"],
            apply,
            now,
            rt.settings.callback_max_failures,
        )
    except StoreUnavailable as exc:
        log.warning("inbound.deferred", error=type(exc).__name__)
        return
    metrics.record_inbox_failures(callback_inbox.INBOUND, done.failed, done.dead)


def _apply_row(rt: Any, row: callback_inbox.StoredCallback) -> InboundReport:
    started = time.perf_counter()
    report = apply_inbound(
        InboundStore.for_settings(rt.engine, rt.settings),
        rt.connector.parse_inbound,
        row.connection,
        row.items,
        time.time(),
        received_at=row.received_at,
    )
    with transaction(rt.engine) as conn:
        callback_inbox.finish(conn, [row.id])
    log.info(
        "inbound.applied",
        connection=row.connection,
        items=len(row.items),
        ms=round((time.perf_counter() - started) * 1000, 1),
        **{k: v for k, v in dataclasses.asdict(report).items() if v},
    )
    return report
