"""Claims left in "sending" by a crash: ask the carrier, never blindly resend.

A message stuck in ``sending`` may or may not have reached the carrier. We look it up by our
client reference: found → ``sent`` with the carrier's id; not found → back to ``retrying`` (due
now, the attempt already counted). A carrier that cannot answer look-ups gets no resend: the
message becomes ``failed`` with ``send_state_unknown``, visible in the log, because sending an SMS
twice is the worse failure for a one-time code or a paid campaign.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, select, update

from dispatcher.contract import Status
from dispatcher.store.progress import Failure, Sent, add_events, record_sent
from dispatcher.store.schema import messages
from workers.connectors.base import Connector, carrier_id_of
from workers.connectors.registry import ConnectorSet
from workers.sending.progress import SqlProgress


@dataclass
class ReconcileReport:
    """Counts of one reconciliation."""

    checked: int = 0
    found_sent: int = 0
    requeued: int = 0
    unknown: int = 0


def _still_sending(conn: Connection, ids: Sequence[str], older_than: float) -> list[str]:
    rows = conn.execute(
        select(messages.c.id).where(
            and_(
                messages.c.id.in_(list(ids)),
                messages.c.status == Status.SENDING,
                messages.c.status_at < older_than,
            )
        )
    )
    return [r[0] for r in rows]


def _requeue(conn: Connection, ids: Sequence[str], now: float) -> int:
    m = messages.c
    result = conn.execute(
        update(messages)
        .where(and_(m.id.in_(list(ids)), m.status == Status.SENDING))
        .values(status=Status.RETRYING, status_at=now, next_attempt_at=now)
    )
    add_events(
        conn, ((i, now, "reconciled", Status.RETRYING, {"carrier": "not_found"}) for i in ids)
    )
    return int(result.rowcount)


def _connections(conn: Connection, ids: Sequence[str]) -> dict[str, str]:
    rows = conn.execute(select(messages.c.id, messages.c.connection).where(messages.c.id.in_(ids)))
    return {r[0]: r[1] or "" for r in rows}


async def reconcile(
    store: SqlProgress,
    connector: Connector | ConnectorSet,
    ids: Sequence[str],
    older_than: float,
    now: float,
) -> ReconcileReport:
    """Resolve stale claims among ``ids`` using the carrier's own records.

    With several connections each claim is asked of the connection it was sent over.
    """
    if isinstance(connector, ConnectorSet):
        report = ReconcileReport()
        owners = store.run(lambda conn: _connections(conn, list(ids)))
        groups: dict[str, list[str]] = {}
        for i in ids:
            groups.setdefault(owners.get(i, ""), []).append(i)
        for name, group in groups.items():
            # A connection removed from the configuration cannot be asked.
            one: Any = connector.get(name) or _Unknown()
            part = await _reconcile_one(store, one, group, older_than, now)
            for f in ("checked", "found_sent", "requeued", "unknown"):
                setattr(report, f, getattr(report, f) + getattr(part, f))
        return report
    return await _reconcile_one(store, connector, ids, older_than, now)


class _Unknown:
    """A connection no longer configured: it cannot be asked."""

    async def lookup(self, refs: Sequence[str]) -> dict[str, str] | None:
        return None


async def _reconcile_one(
    store: SqlProgress, connector: Any, ids: Sequence[str], older_than: float, now: float
) -> ReconcileReport:
    report = ReconcileReport()
    stale = store.run(lambda conn: _still_sending(conn, ids, older_than))
    report.checked = len(stale)
    if not stale:
        return report
    found = await connector.lookup(stale)  # CarrierError propagates: the task retries later
    if found is None:
        failures = [
            Failure(
                i,
                Status.FAILED,
                "send_state_unknown",
                "worker lost during the carrier call; carrier cannot be asked",
                False,
            )
            for i in stale
        ]
        report.unknown = store.record_failures(failures, now)
        return report
    found = {ref: carrier_id_of(ref, cid) for ref, cid in found.items()}
    sent = [Sent(i, found[i], 200, 0.0) for i in stale if i in found]
    missing = [i for i in stale if i not in found]

    def apply(conn: Connection) -> tuple[int, int]:
        n_sent = record_sent(conn, sent, now)
        add_events(
            conn, ((s.id, now, "reconciled", Status.SENT, {"carrier": "found"}) for s in sent)
        )
        return n_sent, _requeue(conn, missing, now) if missing else 0

    report.found_sent, report.requeued = store.run(apply)
    return report
