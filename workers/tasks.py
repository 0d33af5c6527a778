"""Thin Celery tasks: unpack the payload, call plain-Python logic, translate errors to retries."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import structlog

from dispatcher.contract import (
    TASK_APPLY_REPORTS,
    TASK_RECONCILE,
    TASK_SEND_CHUNK,
    Chunk,
    MalformedTask,
)
from dispatcher.ratelimit import RateLimitUnavailable
from dispatcher.store import callback_inbox
from dispatcher.store.db import StoreUnavailable, transaction
from workers import metrics
from workers.app import app
from workers.errors import CarrierError
from workers.isolation import apply_isolated
from workers.reports import TAKE_FRESH_ROWS, Outcome, apply_stored
from workers.runtime import runtime
from workers.sending.reconcile import reconcile

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
    """Send one chunk of messages (see :class:`workers.sending.sender.ChunkSender`)."""
    try:
        chunk = Chunk.decode(payload)
    except MalformedTask as exc:
        # A bug, not a state to retry: its messages stay queued in the log, and the scheduler
        # publishes queued messages of an idle lane again (the orphan audit).
        log.error("chunk.malformed", field=exc.field, error=str(exc))
        return
    rt = runtime()
    started = time.perf_counter()
    try:
        report = rt.run(rt.sender(chunk.lane).run(chunk.messages))
    except INFRA_ERRORS as exc:
        log.warning("chunk.retry", batch=chunk.batch, error=type(exc).__name__)
        raise self.retry(exc=exc, countdown=5) from exc
    log.info(
        "chunk.done",
        batch=chunk.batch,
        lane=chunk.lane,
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
    metrics.record_reconcile(report.found_sent, report.requeued, report.unknown)
    log.info("reconcile.done", **dataclasses.asdict(report))


@app.task(
    name=TASK_APPLY_REPORTS,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=None,
)
def apply_reports(self: Any, payload: dict[str, Any]) -> None:
    """Apply stored delivery reports: ``{"ids": [...]}``, rows of the callback inbox, and
    ``"fresh_before"`` (optional, unix s): rows taken along must have arrived before it.

    A row whose data makes applying fail is found and set aside without holding up the others
    (:mod:`workers.isolation`). On database trouble nothing was applied and the rows stay: the
    scheduler publishes them again when their lease ends, so this task does not retry itself
    (a Celery countdown is held in a worker's memory and lost with it).
    """
    rt = runtime()
    now = time.time()

    def apply(rows: Sequence[int], take_fresh: bool) -> list[Outcome]:
        with transaction(rt.engine) as conn:
            return apply_stored(
                conn,
                rt.connector.parse_report,
                rows,
                now,
                rt.settings.report_retry_s,
                take_fresh,
                payload.get("fresh_before"),
            )

    ids = payload["ids"]
    try:
        done = apply_isolated(
            rt.engine,
            callback_inbox.REPORT,
            ids,
            apply,
            now,
            rt.settings.callback_max_failures,
            TAKE_FRESH_ROWS,
        )
    except INFRA_ERRORS as exc:
        log.warning("reports.deferred", rows=len(ids), error=type(exc).__name__)
        return
    metrics.record_inbox_failures(callback_inbox.REPORT, done.failed, done.dead)
    for o in done.results:
        metrics.record_reports(rt.engine, o.connection, o.result.applied, o.received)
        if o.dropped:
            log.warning("reports.dropped_unmatched", count=o.dropped, connection=o.connection)
        log.info(
            "reports.applied",
            connection=o.connection,
            rows=o.rows,
            applied=len(o.result.applied),
            early=o.early,
            duplicates=o.result.duplicates,
            intermediate=o.result.intermediate,
            ignored=o.result.ignored,
            unreadable=o.unreadable,
        )
