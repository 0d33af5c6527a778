"""Applying delivery reports to the message log: forward only, duplicates ignored."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, or_, select, text, update

from dispatcher.contract import Status
from dispatcher.store import rollups
from dispatcher.store.progress import add_events
from dispatcher.store.schema import messages
from dispatcher.store.sql import id_in
from dispatcher.store.webhooks import create_status_webhooks

# A report for a message in one of these states came before the submit was recorded: tried
# again later. ``paused`` among them: a report proves the carrier took an attempt the log has
# not recorded (one that timed out), and ignoring it left the message ``sent`` for good once
# the retry's look-up found it (CI's chaos run, with a campaign paused in between).
NOT_YET_SENT = frozenset(
    {Status.SCHEDULED, Status.QUEUED, Status.RETRYING, Status.SENDING, Status.PAUSED}
)
# Our own guess after the grace period; a real handset report still replaces it.
REPORT_TIMEOUT = rollups.REPORT_TIMEOUT


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
    applied_from: list[int] = field(default_factory=list)  # the report index of each applied id
    duplicates: int = 0
    intermediate: int = 0
    ignored: int = 0  # conflicting late reports, kept on the timeline only


def _rows(conn: Connection, connection: str, reports: Sequence[ReportUpdate]) -> list[Any]:
    """The messages ``reports`` name, among those sent through ``connection`` only: a carrier
    reports on what it was given, so its reports never touch another connection's messages,
    whether they name our reference or a carrier id. (A message not yet sent has no
    connection: its report is early and tried again.)"""
    refs = [r.ref for r in reports if r.ref]
    cids = [r.carrier_message_id for r in reports if r.carrier_message_id]
    m = messages.c
    conds: list[Any] = []
    # The connection in each branch, so each keeps its index (primary key; connection + id).
    if refs:
        conds.append(and_(id_in(conn, m.id, refs), m.connection == connection))
    if cids:
        # One array parameter on PostgreSQL: an expanded IN list of a few hundred ids made
        # psycopg parse a new statement per batch (benchmark G's dlr profile).
        conds.append(and_(m.connection == connection, id_in(conn, m.carrier_message_id, cids)))
    if not conds:
        return []
    return list(
        conn.execute(
            select(
                m.id,
                m.status,
                m.error_code,
                m.carrier_message_id,
                m.account_id,
                m.created_at,
                m.lane,
                m.report_stat,
            ).where(or_(*conds))
        ).all()
    )


@dataclass(frozen=True)
class _Move:
    """A final report to write, if the message is still in ``expected``."""

    message_id: str
    expected: str
    report: ReportUpdate
    detail: dict[str, Any]
    index: int  # of the report in the batch
    before: rollups.Changed  # the message as the dashboard's rollup may have counted it


def _move_values(mv: _Move, now: float) -> dict[str, Any]:
    rep = mv.report
    delivered = rep.status == Status.DELIVERED
    return {
        "status": rep.status,
        "final_at": rep.done_at or now,
        "report_stat": rep.carrier_status,
        "report_error": rep.error_code,
        "error_code": None if delivered else (rep.error_code or rep.carrier_status.lower()),
        "error_description": None if delivered else f"handset report {rep.carrier_status}",
        "error_permanent": None if delivered else True,
    }


_MOVE_SQL = text(
    "UPDATE messages AS m SET status = v.status, status_at = :now, final_at = v.final_at, "
    "report_at = :now, report_stat = v.stat, report_error = v.err, error_code = v.code, "
    "error_description = v.descr, error_permanent = v.perm "
    "FROM unnest(CAST(:ids AS text[]), CAST(:expected AS text[]), CAST(:statuses AS text[]), "
    "CAST(:finals AS float8[]), CAST(:stats AS text[]), CAST(:errs AS text[]), "
    "CAST(:codes AS text[]), CAST(:descrs AS text[]), CAST(:perms AS boolean[])) "
    "AS v(id, expected, status, final_at, stat, err, code, descr, perm) "
    "WHERE m.id = v.id AND m.status = v.expected RETURNING m.id"
)


def _apply_moves(conn: Connection, moves: Sequence[_Move], now: float) -> set[str]:
    """Write the final reports, each only if its message is still as expected (compare and
    set); the ids that moved. On PostgreSQL one statement for the batch: a statement per report
    made building statements the dlr worker's main cost (docs/benchmarks.md)."""
    if not moves:
        return set()
    values = [_move_values(mv, now) for mv in moves]
    if conn.dialect.name == "postgresql":
        params = {
            "now": now,
            "ids": [mv.message_id for mv in moves],
            "expected": [mv.expected for mv in moves],
            "statuses": [v["status"] for v in values],
            "finals": [v["final_at"] for v in values],
            "stats": [v["report_stat"] for v in values],
            "errs": [v["report_error"] for v in values],
            "codes": [v["error_code"] for v in values],
            "descrs": [v["error_description"] for v in values],
            "perms": [v["error_permanent"] for v in values],
        }
        return {r[0] for r in conn.execute(_MOVE_SQL, params)}
    m = messages.c
    moved: set[str] = set()
    for mv, v in zip(moves, values, strict=True):
        done = conn.execute(
            update(messages)
            .where(and_(m.id == mv.message_id, m.status == mv.expected))
            .values(status_at=now, report_at=now, **v)
        ).rowcount
        if done:
            moved.add(mv.message_id)
    return moved


def reported(conn: Connection, ids: Sequence[str]) -> list[Any]:
    """Id, lane, status, creation and schedule times of ``ids`` (what report metrics need)."""
    m = messages.c
    return list(
        conn.execute(
            select(m.id, m.lane, m.status, m.created_at, m.scheduled_at).where(
                id_in(conn, m.id, ids)
            )
        ).all()
    )


def apply_reports(
    conn: Connection, connection: str, reports: Sequence[ReportUpdate], now: float
) -> ApplyResult:
    """Apply ``reports`` in the caller's transaction."""
    by_id: dict[str, dict[str, Any]] = {}
    by_cid: dict[str, dict[str, Any]] = {}
    for r in _rows(conn, connection, reports):
        found = {"id": r.id, "status": r.status, "error_code": r.error_code, "row": r}
        by_id[r.id] = found
        if r.carrier_message_id:
            by_cid[r.carrier_message_id] = found
    result = ApplyResult([], [])
    events: list[tuple[str, float, str, str | None, dict[str, Any] | None]] = []
    moves: list[_Move] = []
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
        # Assume it moves (later reports in this batch see the new state); checked below.
        r = row["row"]
        before = rollups.Changed(
            r.id,
            r.account_id,
            r.created_at,
            r.lane,
            connection,
            row["status"],
            row["error_code"],
            r.report_stat,
        )
        moves.append(_Move(row["id"], row["status"], rep, detail, i, before))
        row["status"] = rep.status
        row["error_code"] = None
    moved = _apply_moves(conn, moves, now)
    for mv in moves:
        if mv.message_id in moved:
            result.applied.append(mv.message_id)
            result.applied_from.append(mv.index)
            events.append((mv.message_id, now, "report", mv.report.status, mv.detail))
        else:  # changed under us (another report in a parallel batch): treat as a duplicate
            result.duplicates += 1
    # Late reports only (the message is more than 30 minutes old): the dashboard's rollup
    # may have counted it as it was.
    rollups.reopen(conn, [mv.before for mv in moves if mv.message_id in moved], now)
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
        .returning(m.id, m.account_id, m.created_at, m.lane, m.connection, m.report_stat)
    )
    changed = [
        rollups.Changed(
            r.id, r.account_id, r.created_at, r.lane, r.connection, Status.SENT, None, r.report_stat
        )
        for r in rows
    ]
    # Counted as sent by the dashboard's rollup once its hour was rolled (they all are, by now).
    rollups.reopen(conn, changed, now)
    done = [c.id for c in changed]
    add_events(conn, ((i, now, "report_timeout", Status.EXPIRED, None) for i in done))
    create_status_webhooks(conn, done, now)
    return done
