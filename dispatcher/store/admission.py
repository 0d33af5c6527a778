"""The fair bulk lane's queries: accounts with batches waiting for admission, their next
batches, their weights (docs/campaigns.md, dispatcher/scheduler/admission.py).

A batch waits for admission while ``enqueued_at IS NULL AND account_id IS NOT NULL``; the
partial index ``ix_dispatch_batches_admission`` holds exactly those rows, so every query here
costs in proportion to what waits (a 1,000,000-message campaign is 2,000 rows), not to the log.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, Connection, and_, func, select, update

from dispatcher.store.schema import accounts, dispatch_batches

MAX_WEIGHT = 1000


@dataclass(frozen=True, slots=True)
class Waiting:
    """One account's bulk work not yet admitted."""

    batches: int
    messages: int
    oldest: float  # created_at of its oldest waiting batch (unix seconds)
    weight: int


def _waiting_rows() -> ColumnElement[bool]:
    b = dispatch_batches.c
    return and_(b.enqueued_at.is_(None), b.account_id.is_not(None))


def waiting(conn: Connection) -> dict[int, Waiting]:
    """Every account with batches waiting for admission, with its weight."""
    b, a = dispatch_batches.c, accounts.c
    rows = conn.execute(
        select(
            b.account_id,
            func.count(),
            func.coalesce(func.sum(b.size), 0),
            func.min(b.created_at),
            func.coalesce(func.max(a.bulk_weight), 1),
        )
        .select_from(dispatch_batches.outerjoin(accounts, a.id == b.account_id))
        .where(_waiting_rows())
        .group_by(b.account_id)
    ).all()
    return {int(r[0]): Waiting(int(r[1]), int(r[2]), float(r[3]), max(1, int(r[4]))) for r in rows}


def next_batches(conn: Connection, account_id: int, limit: int) -> list[tuple[str, int]]:
    """(id, size) of the account's next ``limit`` waiting batches, oldest first."""
    b = dispatch_batches.c
    rows = conn.execute(
        select(b.id, b.size)
        .where(and_(_waiting_rows(), b.account_id == account_id))
        .order_by(b.created_at, b.id)
        .limit(limit)
    ).all()
    return [(str(r[0]), int(r[1])) for r in rows]


def set_weight(conn: Connection, account_id: int, weight: int) -> None:
    """Set an account's bulk weight (1 to :data:`MAX_WEIGHT`)."""
    if not 1 <= weight <= MAX_WEIGHT:
        raise ValueError(f"bulk_weight: must be an integer from 1 to {MAX_WEIGHT}")
    conn.execute(update(accounts).where(accounts.c.id == account_id).values(bulk_weight=weight))


def weight_of(conn: Connection, account_id: int) -> int:
    """The account's bulk weight (1 when it has none)."""
    found = conn.execute(
        select(accounts.c.bulk_weight).where(accounts.c.id == account_id)
    ).scalar_one_or_none()
    return int(found or 1)
