"""Pause, resume and cancel a campaign, cancel one message (docs/campaigns.md).

Every change is a compare-and-set on the message's status, like the send path's
(:mod:`dispatcher.store.progress`): only messages no worker has claimed (``scheduled``,
``queued``, ``retrying``, ``paused``) move, and a worker's claim moves only ``queued`` ones. So
once a pause or a cancel has committed no message of the campaign can be claimed, and whatever
a worker claimed before it finishes normally. A waiting message whose last attempt may have
reached the carrier (its error code is one of :data:`~dispatcher.contract.AMBIGUOUS_CODES`) is
still under way in that sense: a cancel would call "never sent" a message the carrier may
have, so neither a pause nor a cancel moves it; its next claim asks the carrier first
(found by the chaos run: a timed-out attempt the carrier had taken, then cancelled).

- pause: waiting → ``paused`` (``next_attempt_at`` keeps when it was due); the validity clock
  runs on, and the scheduler expires paused messages whose validity ends
  (:func:`expire_paused`);
- resume: ``paused`` → ``scheduled`` (not yet due, never tried) or ``retrying``, which the
  scheduler releases when due;
- cancel: waiting → ``cancelled`` (final); the scheduler creates the status webhooks right
  after (``control_sweeps.settle_cancelled``), and the refund sweep gives a charged message
  its price back (docs/prices.md, "Refunds").

A campaign's state is kept in ``campaign_controls``: messages sent into a paused campaign
later wait, into a cancelled one are cancelled, and the scheduler moves messages that came
back to waiting after the change (a retry of an attempt that was under way):
:mod:`dispatcher.store.control_sweeps`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, case, func, or_, select, update

from dispatcher.contract import AMBIGUOUS_CODES, WAITING_STATUSES, Status
from dispatcher.store import audit
from dispatcher.store.schema import campaign_controls, messages, submissions
from dispatcher.store.sql import dialect_insert, id_in, sqlite_write_lock
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
    if lock:  # a pause, resume or cancel racing another (a cancel is final) waits for it
        stmt = stmt.with_for_update()
        sqlite_write_lock(conn, campaign_controls)
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


def unclaimed(statuses: Iterable[str]) -> ColumnElement[bool]:
    """Messages in ``statuses`` that no attempt may have reached the carrier with: the ones a
    pause or a cancel may move (see the module's docstring)."""
    m = messages.c
    return and_(
        m.status.in_(sorted(statuses)),
        or_(m.error_code.is_(None), m.error_code.not_in(sorted(AMBIGUOUS_CODES))),
    )


def _move(
    conn: Connection,
    submission_ids: Sequence[str],
    which: ColumnElement[bool],
    values: dict[str, Any],
) -> list[str]:
    """Compare-and-set the campaign's messages matching ``which``; the ids moved."""
    m = messages.c
    moved: list[str] = []
    for i in range(0, len(submission_ids), 500):
        chunk = submission_ids[i : i + 500]
        rows = conn.execute(
            update(messages)
            .where(and_(id_in(conn, m.submission_id, chunk), which))
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
    moved = _move(conn, subs, unclaimed(waiting), _pause_values(now))
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
        m.status == Status.PAUSED,
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
    moved = _move(conn, subs, unclaimed(WAITING_STATUSES), _cancel_values(now))
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
                unclaimed(WAITING_STATUSES),
            )
        )
        .values(**_cancel_values(now), final_at=now)
        .returning(m.id)
    ).first()
    if moved is not None:
        create_status_webhooks(conn, [message_id], now)
        return Status.CANCELLED
    row = conn.execute(
        select(m.status, m.error_code).where(and_(m.id == message_id, m.account_id == account_id))
    ).first()
    if row is None:
        raise ControlRefused("not_found", "no such message in your account")
    if row[0] in WAITING_STATUSES:
        raise ControlRefused(
            "message_not_cancellable",
            f"the message's last attempt may have reached the carrier ({row[1]}): it is "
            "checked with the carrier before anything else happens to it",
        )
    raise ControlRefused(
        "message_not_cancellable",
        f"the message is {row[0]}: only scheduled, queued, retrying or paused ones can be "
        "cancelled",
    )


def campaign_state(conn: Connection, account_id: int, campaign: str) -> str:
    """``running`` | ``paused`` | ``cancelled``."""
    return _state(conn, account_id, campaign)
