"""What follows a campaign's pause or cancel outside the request (docs/campaigns.md): the
scheduler's sweeps (due retries of a controlled campaign diverted, paused messages expired,
cancelled messages given their webhooks, messages stored in the instant of a change caught)
and the writer's check of messages sent into a paused or cancelled campaign.

The changes themselves, and why they are compare-and-set: :mod:`dispatcher.store.control`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, or_, select, update

from dispatcher.contract import Status
from dispatcher.store.control import (
    _CHUNK,
    CANCEL_WATCH_S,
    CANCELLED,
    PAUSED,
    SETTLE_CHUNK,
    _cancel_values,
    _move,
    _pause_values,
    _submission_ids,
    unclaimed,
)
from dispatcher.store.progress import expire_overdue
from dispatcher.store.records import NewSubmission
from dispatcher.store.schema import campaign_controls, messages
from dispatcher.store.sql import id_in, sqlite_write_lock
from dispatcher.store.webhooks import create_status_webhooks


def settle_cancelled(conn: Connection, now: float, limit: int = SETTLE_CHUNK) -> int:
    """Give up to ``limit`` cancelled messages their status webhook; returns how many.

    A cancel moves the messages (so nothing more can be claimed) and answers; their webhooks
    are created here, by the scheduler, in chunks: a campaign of 100,000 messages would
    otherwise hold the customer's request for the time it takes to build 100,000 payloads.
    ``final_at IS NULL`` marks the messages still waiting for it (a partial index), and is set
    in the transaction that creates their webhooks, so each gets exactly one, crash or not.
    The timeline shows the cancel from ``final_at`` (dispatcher/store/timeline.py)."""
    m = messages.c
    stmt = (
        select(m.id)
        .where(and_(m.status == Status.CANCELLED, m.final_at.is_(None)))
        .order_by(m.status_at)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    ids = [r[0] for r in conn.execute(stmt)]
    if not ids:
        return 0
    conn.execute(update(messages).where(id_in(conn, m.id, ids)).values(final_at=m.status_at))
    create_status_webhooks(conn, ids, now)
    return len(ids)


def controlled_submissions(
    conn: Connection, now: float, changed_since: float | None = None
) -> dict[str, str]:
    """Submission id → ``paused`` | ``cancelled`` for campaigns under control: paused ones,
    and those cancelled in the last :data:`CANCEL_WATCH_S` (or only those changed since
    ``changed_since``). Read by the scheduler each tick: the table has a row per campaign
    ever paused or cancelled, and the index on (state, changed_at) keeps it short."""
    c = campaign_controls.c
    recent = and_(c.state == CANCELLED, c.changed_at > now - CANCEL_WATCH_S)
    where: Any = or_(c.state == PAUSED, recent)
    if changed_since is not None:
        where = and_(c.state.in_([PAUSED, CANCELLED]), c.changed_at >= changed_since)
    stmt = select(c.account_id, c.campaign, c.state).where(where)
    # Locks until the caller commits: a resume (or a pause) then waits for this transaction,
    # or this one sees its result. Without them a tick that read "paused" just before a resume
    # paused its messages again just after it, for good: the campaign said "running" and
    # nothing would release them (found by the pause/resume integration test, on PostgreSQL
    # first, later on SQLite; tests/integration/test_control_race.py).
    if conn.dialect.name == "postgresql":
        # Shared row locks: a resume takes its campaign's row for update first.
        stmt = stmt.with_for_update(read=True)
    sqlite_write_lock(conn, campaign_controls)
    controls = conn.execute(stmt).all()
    out: dict[str, str] = {}
    for account_id, campaign, state in controls:
        for sub_id in _submission_ids(conn, int(account_id), str(campaign)):
            out[sub_id] = str(state)
    return out


def divert(conn: Connection, ids: dict[str, list[str]], now: float) -> set[str]:
    """Held messages due for release whose campaign is ``paused`` or ``cancelled`` (keys of
    ``ids``): paused or cancelled instead (compare-and-set on :func:`unclaimed`). Returns the
    ids moved: one whose last attempt may have reached the carrier stays, and is released to
    be checked with the carrier."""
    m = messages.c
    moved: set[str] = set()
    for state, values in ((PAUSED, _pause_values(now)), (CANCELLED, _cancel_values(now))):
        batch = ids.get(state, [])
        for i in range(0, len(batch), _CHUNK):
            rows = conn.execute(
                update(messages)
                .where(
                    and_(
                        id_in(conn, m.id, batch[i : i + _CHUNK]),
                        unclaimed([Status.SCHEDULED, Status.QUEUED, Status.RETRYING]),
                    )
                )
                .values(**values)
                .returning(m.id)
            )
            moved.update(r[0] for r in rows)
    return moved


def apply_controls(conn: Connection, controlled: dict[str, str], now: float) -> int:
    """Move every waiting message of the controlled campaigns to ``paused`` or
    ``cancelled``: for campaigns changed a moment ago, whose messages a writer may have
    stored as the change committed. Returns how many moved."""
    paused = [s for s, st in controlled.items() if st == PAUSED]
    cancelled = [s for s, st in controlled.items() if st == CANCELLED]
    waiting = [Status.SCHEDULED, Status.QUEUED, Status.RETRYING]
    moved = len(_move(conn, paused, unclaimed(waiting), _pause_values(now)))
    gone = _move(conn, cancelled, unclaimed([*waiting, Status.PAUSED]), _cancel_values(now))
    return moved + len(gone)


def hold_controlled(conn: Connection, fresh: Sequence[NewSubmission]) -> list[str]:
    """Before the writer stores ``fresh``: messages sent into a paused campaign are stored
    ``paused``, into a cancelled one too, and their ids returned for :func:`cancel_stored`
    to cancel in the same transaction. One query, only when a submission names a campaign."""
    named = {(s.account_id, s.campaign) for s in fresh if s.campaign}
    if not named:
        return []
    c = campaign_controls.c
    rows = conn.execute(
        select(c.account_id, c.campaign, c.state).where(
            and_(
                c.account_id.in_(sorted({a for a, _ in named})),
                c.campaign.in_(sorted({str(n) for _, n in named})),
                c.state.in_([PAUSED, CANCELLED]),
            )
        )
    ).all()
    states = {(int(r[0]), str(r[1])): str(r[2]) for r in rows}
    cancel: list[str] = []
    for sub in fresh:
        state = states.get((sub.account_id, sub.campaign or ""))
        if state is None:
            continue
        for m in sub.messages:
            m.status = Status.PAUSED
            m.next_attempt_at = m.next_attempt_at or m.created_at
            if state == CANCELLED:
                cancel.append(m.id)
    return cancel


def cancel_stored(conn: Connection, ids: Sequence[str], now: float) -> None:
    """Cancel messages the writer just stored into a cancelled campaign (same transaction;
    their webhooks follow from :func:`settle_cancelled`)."""
    m = messages.c
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i : i + _CHUNK]
        conn.execute(update(messages).where(id_in(conn, m.id, chunk)).values(**_cancel_values(now)))


def expire_paused(conn: Connection, now: float, limit: int = 5000) -> list[str]:
    """Paused messages whose validity ended: ``expired`` (never sent), with their webhooks."""
    m = messages.c
    ids = [
        r[0]
        for r in conn.execute(
            select(m.id)
            .where(and_(m.status == Status.PAUSED, m.valid_until <= now))
            .order_by(m.valid_until)
            .limit(limit)
        )
    ]
    return expire_overdue(conn, ids, now, waiting=[Status.PAUSED])
