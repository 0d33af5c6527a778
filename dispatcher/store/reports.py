"""Applying delivery reports to the message log: forward only, duplicates ignored."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, or_, select, update

from dispatcher.contract import Status
from dispatcher.store.progress import add_events
from dispatcher.store.schema import messages
from dispatcher.store.webhooks import create_status_webhooks

# A report for a message in one of these states came before the submit was recorded.
NOT_YET_SENT = frozenset({Status.SCHEDULED, Status.QUEUED, Status.RETRYING, Status.SENDING})
# Our own guess after the grace period; a real handset report still replaces it.
REPORT_TIMEOUT = "report_timeout"


@dataclass(frozen=True)
class ReportUpdate:
    """One report, already mapped to our status by the connector."""

    carrier_message_id: str | None
    ref: str | None
    status: str  # final status, or "" for an intermediate carrier state
    carrier_status: str
    error_code: str | None
    done_at: float | None


@dataclass
class ApplyResult:
    """What a batch of reports did."""

    applied: list[str]  # message ids that became final
    early: list[int]  # indexes of reports to retry later (message not yet recorded as sent)
    duplicates: int = 0
    intermediate: int = 0
    ignored: int = 0  # conflicting late reports, kept on the timeline only


def _rows(conn: Connection, connection: str, reports: Sequence[ReportUpdate]) -> list[Any]:
    refs = [r.ref for r in reports if r.ref]
    cids = [r.carrier_message_id for r in reports if r.carrier_message_id]
    m = messages.c
    conds: list[Any] = []
    if refs:
        conds.append(m.id.in_(refs))
    if cids:
        conds.append(and_(m.connection == connection, m.carrier_message_id.in_(cids)))
    if not conds:
        return []
    return list(
        conn.execute(
            select(m.id, m.status, m.error_code, m.carrier_message_id).where(or_(*conds))
        ).all()
    )


def apply_reports(
    conn: Connection, connection: str, reports: Sequence[ReportUpdate], now: float
) -> ApplyResult:
    """Apply ``reports`` in the caller's transaction."""
    by_id: dict[str, dict[str, Any]] = {}
    by_cid: dict[str, dict[str, Any]] = {}
    for r in _rows(conn, connection, reports):
        found = {"id": r.id, "status": r.status, "error_code": r.error_code}
        by_id[r.id] = found
        if r.carrier_message_id:
            by_cid[r.carrier_message_id] = found
    result = ApplyResult([], [])
    events: list[tuple[str, float, str, str | None, dict[str, Any] | None]] = []
    m = messages.c
    for i, rep in enumerate(reports):
        row: dict[str, Any] | None = (by_id.get(rep.ref) if rep.ref else None) or (
            by_cid.get(rep.carrier_message_id) if rep.carrier_message_id else None
        )
        if row is None or row["status"] in NOT_YET_SENT:
            result.early.append(i)
            continue
        detail = {
            "carrier_status": rep.carrier_status,
            "error_code": rep.error_code,
            "done_at": rep.done_at,
        }
        if not rep.status:
            result.intermediate += 1
            events.append((row["id"], now, "report", None, detail))
            continue
        replaceable = row["status"] == Status.SENT or (
            row["status"] == Status.EXPIRED and row["error_code"] == REPORT_TIMEOUT
        )
        if not replaceable:
            if row["status"] == rep.status:
                result.duplicates += 1
            else:
                result.ignored += 1
                events.append((row["id"], now, "report_ignored", rep.status, detail))
            continue
        delivered = rep.status == Status.DELIVERED
        moved = conn.execute(
            update(messages)
            .where(and_(m.id == row["id"], m.status == row["status"]))
            .values(
                status=rep.status,
                status_at=now,
                final_at=rep.done_at or now,
                report_at=now,
                report_stat=rep.carrier_status,
                report_error=rep.error_code,
                error_code=None if delivered else (rep.error_code or rep.carrier_status.lower()),
                error_description=None if delivered else f"handset report {rep.carrier_status}",
                error_permanent=None if delivered else True,
            )
        ).rowcount
        if moved:
            row["status"] = rep.status
            row["error_code"] = None
            result.applied.append(row["id"])
            events.append((row["id"], now, "report", rep.status, detail))
        else:  # changed under us (another report in a parallel batch): treat as a duplicate
            result.duplicates += 1
    add_events(conn, events)
    return result


def expire_unreported(
    conn: Connection, older_than: float, now: float, limit: int = 5000
) -> list[str]:
    """``sent`` messages with no final report by validity + grace → expired (by us)."""
    m = messages.c
    ids = [
        r[0]
        for r in conn.execute(
            select(m.id)
            .where(and_(m.status == Status.SENT, m.valid_until < older_than))
            .limit(limit)
        )
    ]
    if not ids:
        return []
    rows = conn.execute(
        update(messages)
        .where(and_(m.id.in_(ids), m.status == Status.SENT))
        .values(
            status=Status.EXPIRED,
            status_at=now,
            final_at=now,
            error_code=REPORT_TIMEOUT,
            error_description="no delivery report within validity plus grace",
            error_permanent=False,
        )
        .returning(m.id)
    )
    done = [r[0] for r in rows]
    add_events(conn, ((i, now, "report_timeout", Status.EXPIRED, None) for i in done))
    create_status_webhooks(conn, done, now)
    return done
