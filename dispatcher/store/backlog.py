"""What waits in the message log, read in one transaction for the exporter's gauges: held
messages that are due, unpublished batches, bulk work waiting for fair admission per account,
pending webhook deliveries, endpoints by state, the callback inbox, the dead letters,
accounts low on balance and how far the dashboard's rollup has got."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, and_, func, select

from dispatcher.contract import HELD_STATUSES
from dispatcher.store import admission, callback_inbox, dead_letters, rollups
from dispatcher.store.balances import accounts_below_low
from dispatcher.store.schema import (
    dispatch_batches,
    messages,
    webhook_deliveries,
    webhook_endpoints,
)

# (count, oldest time or None): the shape of every figure below.
CountAndOldest = tuple[int, float | None]


@dataclass(frozen=True, slots=True)
class Backlog:
    """One reading of the log's queues (times are unix seconds)."""

    due_held: dict[str, CountAndOldest]  # status -> due messages, oldest next_attempt_at
    unpublished_batches: CountAndOldest  # by created_at; not those waiting for admission
    admission: dict[int, admission.Waiting]  # account -> bulk work waiting for fair admission
    pending_webhooks: CountAndOldest  # by created_at
    due_webhooks: CountAndOldest  # by next_attempt_at
    endpoints: dict[str, int]  # state -> endpoints
    inbox: dict[str, CountAndOldest]  # callback kind -> rows, oldest received_at
    dead_letters: dict[str, CountAndOldest]  # callback kind -> rows, oldest dead_at
    dead_webhooks: int
    low_balance_accounts: int  # below their low-balance level
    rolled_until: float | None = None  # the dashboard's rollup covers hours before this


def read(conn: Connection, now: float) -> Backlog:
    """The backlog as of ``now``."""
    m, b, w, e = messages.c, dispatch_batches.c, webhook_deliveries.c, webhook_endpoints.c
    held = conn.execute(
        select(m.status, func.count(), func.min(m.next_attempt_at))
        .where(and_(m.status.in_(sorted(HELD_STATUSES)), m.next_attempt_at <= now))
        .group_by(m.status)
    ).all()
    # Batches waiting for fair admission are a queue, not a publish that failed: they are
    # reported per account (``admission``), not here.
    outbox = conn.execute(
        select(func.count(), func.min(b.created_at)).where(
            and_(b.enqueued_at.is_(None), b.account_id.is_(None))
        )
    ).one()
    pending = conn.execute(
        select(func.count(), func.min(w.created_at)).where(w.state == "pending")
    ).one()
    due = conn.execute(
        select(func.count(), func.min(w.next_attempt_at)).where(
            and_(w.state == "pending", w.next_attempt_at <= now)
        )
    ).one()
    endpoints = conn.execute(select(e.state, func.count()).group_by(e.state)).all()
    dead_hooks = conn.execute(select(func.count()).where(w.state == "dead")).scalar_one()
    return Backlog(
        due_held={str(r[0]): (int(r[1]), r[2]) for r in held},
        unpublished_batches=(int(outbox[0]), outbox[1]),
        admission=admission.waiting(conn),
        pending_webhooks=(int(pending[0]), pending[1]),
        due_webhooks=(int(due[0]), due[1]),
        endpoints={str(r[0]): int(r[1]) for r in endpoints},
        inbox=callback_inbox.waiting(conn),
        dead_letters=dead_letters.counts(conn),
        dead_webhooks=int(dead_hooks),
        low_balance_accounts=accounts_below_low(conn),
        rolled_until=rolled.rolled_until if (rolled := rollups.window(conn)) else None,
    )
