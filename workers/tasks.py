"""Thin Celery tasks: unpack the payload, call plain-Python logic, translate errors to retries."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import structlog
from redis.exceptions import RedisError

from dispatcher.contract import (
    EARLY_REPORTS_KEY,
    TASK_APPLY_REPORTS,
    TASK_RECONCILE,
    TASK_SEND_CHUNK,
)
from dispatcher.store.db import StoreUnavailable
from workers import metrics
from workers.app import app
from workers.errors import CarrierError
from workers.rate_limits import RateLimitUnavailable
from workers.reconcile import reconcile
from workers.reports import apply_batch, parse_reports, retry_delay
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
    metrics.record_reconcile(report.found_sent, report.requeued, report.unknown)
    log.info("reconcile.done", **dataclasses.asdict(report))


def _park_or_retry(
    task: Any, rt: Any, payload: dict[str, Any], due: float, cause: Exception | None
) -> None:
    """Park reports for the scheduler to re-publish at ``due`` (see ``EARLY_REPORTS_KEY``):
    never as a Celery countdown, which a worker holds in memory and loses with its broker
    connection. If Redis cannot take them either, the task retries (repeats are ignored)."""
    try:
        rt.run(rt.redis.zadd(EARLY_REPORTS_KEY, {json.dumps(payload, sort_keys=True): due}))
    except RedisError as exc:
        raise task.retry(exc=cause or exc, countdown=5) from exc


@app.task(
    name=TASK_APPLY_REPORTS,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=None,
)
def apply_reports(self: Any, payload: dict[str, Any]) -> None:
    """Apply carrier delivery reports; early ones go round again for ``report_retry_s``."""
    rt = runtime()
    items = payload["items"]
    connection = payload["connection"]
    batch = parse_reports(rt.connector.parse_report, items)
    now = time.time()
    try:
        result = rt.store.run(lambda conn: apply_batch(conn, connection, batch, now))
    except INFRA_ERRORS as exc:
        _park_or_retry(self, rt, payload, time.time() + 5, exc)  # nothing was applied
        return
    early = [items[batch.source[i]] for i in result.early]
    first = float(payload.get("first_received", payload.get("received_at", now)))
    metrics.record_reports(rt.engine, connection, result.applied, first)
    attempt = int(payload.get("attempt", 0)) + 1
    if early and now - first < rt.settings.report_retry_s:
        again = {**payload, "items": early, "first_received": first, "attempt": attempt}
        _park_or_retry(self, rt, again, now + retry_delay(attempt), None)
    elif early:
        log.warning("reports.dropped_unmatched", count=len(early), connection=connection)
    log.info(
        "reports.applied",
        connection=connection,
        applied=len(result.applied),
        early=len(early),
        duplicates=result.duplicates,
        intermediate=result.intermediate,
        ignored=result.ignored,
        unreadable=batch.unreadable,
    )
