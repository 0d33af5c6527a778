"""Delivery reports on the dlr lane: parse with the connector's status map, apply, and send
the reports that came before their submit was recorded round again (Jasmin's
"DLRMapNotFound" lesson: never drop them)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import Connection

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
