"""Pause, resume and cancel a campaign, cancel one message (docs/campaigns.md).

Every change is a compare-and-set on the message's status, like the send path's
(:mod:`dispatcher.store.progress`): only messages no worker has claimed (``scheduled``,
``queued``, ``retrying``, ``paused``) move, and a worker's claim moves only ``queued`` ones. So
once a pause or a cancel has committed no message of the campaign can be claimed, and whatever
a worker claimed before it finishes normally.

- pause: waiting → ``paused`` (``next_attempt_at`` keeps when it was due); the validity clock
  runs on, and the scheduler expires paused messages whose validity ends
  (:func:`expire_paused`);
- resume: ``paused`` → ``scheduled`` (not yet due, never tried) or ``retrying``, which the
  scheduler releases when due;
- cancel: waiting → ``cancelled`` (final); the scheduler creates the status webhooks right
  after (:func:`settle_cancelled`), and the refund sweep gives a charged message its price
  back (docs/prices.md, "Refunds").

A campaign's state is kept in ``campaign_controls``: messages sent into a paused campaign
later wait, into a cancelled one are cancelled (:func:`controlled_submissions`), and the
scheduler moves messages that came back to waiting after the change (a retry of an attempt
that was under way) with :func:`apply_controls`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, case, func, or_, select, update

from dispatcher.contract import WAITING_STATUSES, Status
from dispatcher.store import audit
from dispatcher.store.progress import expire_overdue
from dispatcher.store.records import NewSubmission
from dispatcher.store.schema import campaign_controls, messages, submissions
from dispatcher.store.sql import dialect_insert, id_in
from dispatcher.store.webhooks import create_status_webhooks

RUNNING, PAUSED, CANCELLED = "running", "paused", "cancelled"
# Cancelled campaigns are watched this long for messages that come back to waiting (a retry
# of an attempt under way at the cancel): longer than any claim can last.
CANCEL_WATCH_S = 3600.0
CANCEL_CODE = "cancelled"
_CHUNK = 5000  # messages per UPDATE: bounded statements on SQLite's parameter limit
SETTLE_CHUNK = 2000  # cancelled messages given their webhooks per transaction


class ControlRefused(Exception):
    """The change cannot be made; ``code`` is an error catalogue entry."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class CampaignState:
    """A campaign's control state and its messages by status after a change."""

    campaign: str
    state: str
    changed: int = 0  # messages this change moved
    counts: dict[str, int] = field(default_factory=dict)


def _submission_ids(conn: Connection, account_id: int, campaign: str) -> list[str]:
    s = submissions.c
    rows = conn.execute(
        select(s.id).where(and_(s.account_id == account_id, s.campaign == campaign))
    )
    return [r[0] for r in rows]


def _state(conn: Connection, account_id: int, campaign: str, lock: bool = False) -> str:
    c = campaign_controls.c
    stmt = select(c.state).where(and_(c.account_id == account_id, c.campaign == campaign))
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    return RUNNING if row is None else str(row[0])


def _set_state(
    conn: Connection, account_id: int, campaign: str, state: str, actor: str, now: float
) -> None:
    values = {
        "account_id": account_id,
        "campaign": campaign,
        "state": state,
        "changed_at": now,
        "changed_by": actor[:64],
    }
    stmt = dialect_insert(conn, campaign_controls).values(**values)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["account_id", "campaign"],
            set_={"state": state, "changed_at": now, "changed_by": actor[:64]},
        )
    )


def counts(conn: Connection, submission_ids: Sequence[str]) -> dict[str, int]:
    """The campaign's messages by status."""
    out: dict[str, int] = {}
    m = messages.c
    for i in range(0, len(submission_ids), 500):
        chunk = submission_ids[i : i + 500]
        rows = conn.execute(
            select(m.status, func.count())
            .where(id_in(conn, m.submission_id, chunk))
            .group_by(m.status)
        )
        for status, n in rows:
            out[str(status)] = out.get(str(status), 0) + int(n)
    return out


def _move(
    conn: Connection,
    submission_ids: Sequence[str],
    from_statuses: Sequence[str],
    values: dict[str, Any],
) -> list[str]:
    """Compare-and-set the campaign's messages in ``from_statuses``; the ids moved."""
    m = messages.c
    moved: list[str] = []
    for i in range(0, len(submission_ids), 500):
        chunk = submission_ids[i : i + 500]
        rows = conn.execute(
            update(messages)
            .where(and_(id_in(conn, m.submission_id, chunk), m.status.in_(list(from_statuses))))
            .values(**values)
            .returning(m.id)
        )
        moved.extend(r[0] for r in rows)
    return moved


def _pause_values(now: float) -> dict[str, Any]:
    m = messages.c
    # A queued message was due now; a held one keeps its time (a scheduled send stays there).
    return {
        "status": Status.PAUSED,
        "status_at": now,
        "next_attempt_at": func.coalesce(m.next_attempt_at, now),
    }


def _cancel_values(now: float) -> dict[str, Any]:
    # ``final_at`` stays NULL: :func:`settle_cancelled` sets it with the webhook (see there).
    return {
        "status": Status.CANCELLED,
        "status_at": now,
        "error_code": CANCEL_CODE,
        "error_description": "cancelled by the account before sending",
        "error_permanent": True,
    }


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


def _campaign(conn: Connection, account_id: int, campaign: str) -> list[str]:
    subs = _submission_ids(conn, account_id, campaign)
    if not subs:
        # Another account's campaign of the same name is not found either (no leak).
        raise ControlRefused("campaign_not_found", f"no campaign {campaign!r} in your account")
    return subs


def _not_cancelled(
    conn: Connection, account_id: int, campaign: str, state: str, actor: str, now: float
) -> list[str]:
    """The campaign's submissions, its control row locked and set to ``state``; refused when
    it was cancelled (a cancel is final)."""
    subs = _campaign(conn, account_id, campaign)
    if _state(conn, account_id, campaign, lock=True) == CANCELLED:
        raise ControlRefused("campaign_cancelled", "the campaign was cancelled: it cannot resume")
    _set_state(conn, account_id, campaign, state, actor, now)
    return subs


def pause_campaign(
    conn: Connection, account_id: int, campaign: str, actor: str, now: float
) -> CampaignState:
    """Pause ``campaign``: its unclaimed messages wait. Pausing a paused one changes nothing."""
    subs = _not_cancelled(conn, account_id, campaign, PAUSED, actor, now)
    waiting = [Status.SCHEDULED, Status.QUEUED, Status.RETRYING]
    moved = _move(conn, subs, waiting, _pause_values(now))
    audit.record(conn, account_id, actor, "campaign.pause", campaign, f"{len(moved)}", now=now)
    return CampaignState(campaign, PAUSED, len(moved), counts(conn, subs))


def resume_campaign(
    conn: Connection, account_id: int, campaign: str, actor: str, now: float
) -> CampaignState:
    """Resume a paused ``campaign``: its paused messages are released when due."""
    subs = _not_cancelled(conn, account_id, campaign, RUNNING, actor, now)
    m = messages.c
    held = case(
        (and_(m.attempts == 0, m.scheduled_at.is_not(None), m.next_attempt_at > now), "scheduled"),
        else_="retrying",
    )
    moved = _move(
        conn,
        subs,
        [Status.PAUSED],
        {
            "status": held,
            "status_at": now,
            "next_attempt_at": func.coalesce(m.next_attempt_at, now),
        },
    )
    audit.record(conn, account_id, actor, "campaign.resume", campaign, f"{len(moved)}", now=now)
    return CampaignState(campaign, RUNNING, len(moved), counts(conn, subs))


def cancel_campaign(
    conn: Connection, account_id: int, campaign: str, actor: str, now: float
) -> CampaignState:
    """Cancel ``campaign``: every unclaimed message ends ``cancelled`` with its webhook."""
    subs = _campaign(conn, account_id, campaign)
    _state(conn, account_id, campaign, lock=True)
    _set_state(conn, account_id, campaign, CANCELLED, actor, now)
    moved = _move(conn, subs, sorted(WAITING_STATUSES), _cancel_values(now))
    audit.record(conn, account_id, actor, "campaign.cancel", campaign, f"{len(moved)}", now=now)
    return CampaignState(campaign, CANCELLED, len(moved), counts(conn, subs))


def cancel_message(conn: Connection, account_id: int, message_id: str, now: float) -> str:
    """Cancel one message of the account not yet claimed; returns its status (``cancelled``).

    Raises :class:`ControlRefused`: ``not_found`` (no such message in the account) or
    ``message_not_cancellable`` (a worker claimed it, or it is final)."""
    m = messages.c
    moved = conn.execute(
        update(messages)
        .where(
            and_(
                m.id == message_id,
                m.account_id == account_id,
                m.status.in_(sorted(WAITING_STATUSES)),
            )
        )
        .values(**_cancel_values(now), final_at=now)
        .returning(m.id)
    ).first()
    if moved is not None:
        create_status_webhooks(conn, [message_id], now)
        return Status.CANCELLED
    row = conn.execute(
        select(m.status).where(and_(m.id == message_id, m.account_id == account_id))
    ).first()
    if row is None:
        raise ControlRefused("not_found", "no such message in your account")
    raise ControlRefused(
        "message_not_cancellable",
        f"the message is {row[0]}: only scheduled, queued, retrying or paused ones can be "
        "cancelled",
    )


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
    if conn.dialect.name == "postgresql":
        # Shared locks until the caller commits: a resume (or a pause) takes its campaign's
        # row for update first, so it waits for this transaction, or this one sees its result.
        # Without them a tick that read "paused" just before a resume paused its messages
        # again just after it (found by the pause/resume integration test).
        stmt = stmt.with_for_update(read=True)
    controls = conn.execute(stmt).all()
    out: dict[str, str] = {}
    for account_id, campaign, state in controls:
        for sub_id in _submission_ids(conn, int(account_id), str(campaign)):
            out[sub_id] = str(state)
    return out


def divert(conn: Connection, ids: dict[str, list[str]], now: float) -> int:
    """Held messages due for release whose campaign is ``paused`` or ``cancelled`` (keys of
    ``ids``): paused or cancelled instead (compare-and-set). Returns how many moved."""
    m = messages.c
    moved = 0
    for state, values in ((PAUSED, _pause_values(now)), (CANCELLED, _cancel_values(now))):
        batch = ids.get(state, [])
        for i in range(0, len(batch), _CHUNK):
            rows = conn.execute(
                update(messages)
                .where(
                    and_(
                        id_in(conn, m.id, batch[i : i + _CHUNK]),
                        m.status.in_([Status.SCHEDULED, Status.QUEUED, Status.RETRYING]),
                    )
                )
                .values(**values)
                .returning(m.id)
            )
            moved += len(rows.all())
    return moved


def apply_controls(conn: Connection, controlled: dict[str, str], now: float) -> int:
    """Move every waiting message of the controlled campaigns to ``paused`` or
    ``cancelled``: for campaigns changed a moment ago, whose messages a writer may have
    stored as the change committed. Returns how many moved."""
    paused = [s for s, st in controlled.items() if st == PAUSED]
    cancelled = [s for s, st in controlled.items() if st == CANCELLED]
    waiting = [Status.SCHEDULED, Status.QUEUED, Status.RETRYING]
    moved = len(_move(conn, paused, waiting, _pause_values(now)))
    gone = _move(conn, cancelled, [*waiting, Status.PAUSED], _cancel_values(now))
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


def campaign_state(conn: Connection, account_id: int, campaign: str) -> str:
    """``running`` | ``paused`` | ``cancelled``."""
    return _state(conn, account_id, campaign)


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
