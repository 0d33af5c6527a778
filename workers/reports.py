"""Delivery reports on the dlr lane: parse with the connector's status map, apply, and keep
the reports that came before their submit was recorded for another try (Jasmin's
"DLRMapNotFound" lesson: never drop them).

Reports wait in the callback inbox (:mod:`dispatcher.store.callback_inbox`) until applied:
:func:`apply_stored` applies rows and deletes them, or narrows them to their early reports, in
the same transaction, so a crash anywhere repeats work (repeats are ignored) and loses none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import Connection

from dispatcher.store import callback_inbox
from dispatcher.store.reports import ApplyResult, ReportUpdate, apply_reports
from dispatcher.store.webhooks import create_status_webhooks
from workers.connectors.base import CallbackError, Report

log = structlog.get_logger(component="reports")


@dataclass
class ReportBatch:
    """Parsed reports and where each came from in the raw items."""

    updates: list[ReportUpdate] = field(default_factory=list)
    source: list[int] = field(default_factory=list)
    unreadable: int = 0


def parse_reports(
    parse: Callable[[Mapping[str, Any]], Report], items: Sequence[Mapping[str, Any]]
) -> ReportBatch:
    """Parse raw report items; unreadable ones are counted and logged (without content)."""
    batch = ReportBatch()
    for i, raw in enumerate(items):
        try:
            r = parse(raw)
        except CallbackError as exc:
            batch.unreadable += 1
            log.warning("report.unreadable", reason=str(exc))
            continue
        batch.updates.append(
            ReportUpdate(
                r.carrier_message_id, r.ref, r.status, r.carrier_status, r.error_code, r.done_at
            )
        )
        batch.source.append(i)
    return batch


def apply_batch(conn: Connection, connection: str, batch: ReportBatch, now: float) -> ApplyResult:
    """Apply in one transaction, creating the webhooks of every status made final."""
    result = apply_reports(conn, connection, batch.updates, now)
    if result.applied:
        create_status_webhooks(conn, result.applied, now)
    return result


def retry_delay(attempt: int) -> float:
    """Seconds before an early report is tried again: 2, 4, 8 … capped at 60."""
    return float(min(60, 2 ** max(1, attempt)))


@dataclass
class Outcome:
    """What applying stored rows of one connection did (for metrics and the log; never report
    content)."""

    connection: str
    rows: int
    result: ApplyResult
    unreadable: int
    received: dict[str, float] = field(default_factory=dict)  # applied id → when it arrived
    early: int = 0  # kept for another try
    dropped: int = 0  # early for longer than the retry window: given up


# A task takes up to this many more rows that were never tried (see callback_inbox.lock_fresh).
TAKE_FRESH_ROWS = 50


def apply_stored(
    conn: Connection,
    parse: Callable[[Mapping[str, Any]], Report],
    ids: Sequence[int],
    now: float,
    retry_s: float,
    take_fresh: bool = True,
    fresh_before: float | None = None,
) -> list[Outcome]:
    """Apply the stored report rows ``ids``, and (``take_fresh``) up to :data:`TAKE_FRESH_ROWS`
    rows never tried yet (received before ``fresh_before`` when given), in the caller's
    transaction: one batch per connection.

    Each row is deleted, or narrowed to the reports that came before their submit was recorded
    and taken again after :func:`retry_delay`; reports still early ``retry_s`` after they first
    arrived are dropped (logged, counted). Rows another worker holds, or already applied, are
    skipped.
    """
    rows = callback_inbox.lock(conn, ids, callback_inbox.REPORT)
    if take_fresh:
        rows += callback_inbox.lock_fresh(
            conn, callback_inbox.REPORT, [r.id for r in rows], TAKE_FRESH_ROWS, fresh_before
        )
    by_connection: dict[str, list[callback_inbox.StoredCallback]] = {}
    for row in rows:
        by_connection.setdefault(row.connection, []).append(row)
    outcomes: list[Outcome] = []
    done: list[int] = []
    for connection, group in by_connection.items():
        items: list[Mapping[str, Any]] = []
        owner: list[callback_inbox.StoredCallback] = []
        for row in group:
            items.extend(row.items)
            owner.extend([row] * len(row.items))
        batch = parse_reports(parse, items)
        result = apply_batch(conn, connection, batch, now)
        outcome = Outcome(connection, len(group), result, batch.unreadable)
        for mid, i in zip(result.applied, result.applied_from, strict=True):
            outcome.received[mid] = owner[batch.source[i]].received_at
        early: dict[int, list[Mapping[str, Any]]] = {}
        for i in result.early:
            early.setdefault(owner[batch.source[i]].id, []).append(items[batch.source[i]])
        for row in group:
            kept = early.get(row.id, [])
            if kept and now - row.received_at < retry_s:
                attempt = row.attempt + 1
                callback_inbox.postpone(conn, row.id, kept, now + retry_delay(attempt), attempt)
                outcome.early += len(kept)
            else:
                done.append(row.id)
                outcome.dropped += len(kept)
        outcomes.append(outcome)
    callback_inbox.finish(conn, done)
    return outcomes
