"""The audit log: who changed what in an account's settings, shown in the panel.

One row per action that changes an account, made in the panel or with the ``smsdispatch``
CLI (a key created, revoked or rotated; webhook settings; a sender name requested or decided;
limits, prices, balances, numbers, users, suppressions; a campaign sent): docs/panel.md lists
them. ``detail`` is for people and never holds a secret, a key or a message text. Each
function takes the caller's connection, so an action and its record commit together.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, and_, insert, select, true

from dispatcher.store.schema import audit_log

MAX_ACTOR = 64
MAX_TARGET = 128
MAX_DETAIL = 512


@dataclass(frozen=True)
class AuditEntry:
    """One recorded action."""

    id: int
    account_id: int | None
    at: float
    actor: str
    action: str
    target: str | None
    detail: str | None


def record(
    conn: Connection,
    account_id: int | None,
    actor: str,
    action: str,
    target: str | None = None,
    detail: str | None = None,
    *,
    now: float,
) -> None:
    """Add an entry (``account_id`` ``None``: a platform action, seen by operators only)."""
    conn.execute(
        insert(audit_log).values(
            account_id=account_id,
            at=now,
            actor=actor[:MAX_ACTOR],
            action=action[:32],
            target=None if target is None else target[:MAX_TARGET],
            detail=None if detail is None else detail[:MAX_DETAIL],
        )
    )


def entries(
    conn: Connection,
    account_id: int | None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[AuditEntry]:
    """An account's entries newest first (``account_id`` ``None``: every account's and the
    platform's, for operators), a page of ``limit`` older than ``before_id``."""
    t = audit_log.c
    where = [] if account_id is None else [t.account_id == account_id]
    if before_id is not None:
        where.append(t.id < before_id)
    rows = conn.execute(
        select(audit_log).where(and_(true(), *where)).order_by(t.id.desc()).limit(limit)
    )
    return [
        AuditEntry(
            int(r.id),
            None if r.account_id is None else int(r.account_id),
            float(r.at),
            str(r.actor),
            str(r.action),
            r.target,
            r.detail,
        )
        for r in rows
    ]
