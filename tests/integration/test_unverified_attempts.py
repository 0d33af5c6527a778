"""A message whose last attempt may have reached the carrier (an ambiguous error code) is
never called "never sent": a pause or a cancel does not move it (docs/campaigns.md, "How it
holds"), and its validity's end hands it to the reconciler instead of expiring it. On a real
database (SQLite or PostgreSQL), no workers.

Found by CI's chaos run: a message whose attempt timed out (the carrier had taken it) waited
``retrying``; a cancel made it ``cancelled``, a final state that says it never reached a carrier,
and no check with the carrier followed. Here each door of the control is given one such message
beside ones that certainly did not reach the carrier: the campaign's cancel and pause, one
message's cancel, the scheduler's sweep for a campaign changed a moment ago, and the release of
due retries of a controlled campaign. The expiry: found by reading the hand-back path (a
message held until its carrier can be asked, "or the validity ends"), which expired it
``validity_expired``, refunded, while the carrier may have delivered it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.engine import Row

from dispatcher.accounts.account import Account, create_account
from dispatcher.config import Settings
from dispatcher.contract import AMBIGUOUS_CODES, Lane, Status
from dispatcher.intake.broker import Broker
from dispatcher.intake.submit import SendRequest, prepare
from dispatcher.intake.writer import SubmissionWriter
from dispatcher.store import control, control_sweeps
from dispatcher.store.outbox import release_due, stale_claims
from dispatcher.store.progress import NOT_AT_CARRIER, Sent, expire_overdue, settle_reconciled
from dispatcher.store.schema import messages
from tests.support.services import fresh_redis

pytestmark = pytest.mark.integration

TIMED_OUT = "carrier_timeout"  # the attempt may have arrived
REFUSED = "carrier_unavailable"  # a 5xx: the carrier said it did not take it


class World:
    def __init__(self, engine: Engine, redis_url: str, account: Account) -> None:
        self.engine = engine
        self.account = account
        self.settings = Settings.from_env({}, redis_url=redis_url)
        self.broker = Broker(redis_url)
        self.writer = SubmissionWriter(engine, self.broker, {Lane.BULK: 100, Lane.PRIORITY: 100})

    def campaign(self, name: str, n: int = 4) -> list[str]:
        """``n`` bulk messages in campaign ``name``; their ids, in the order sent."""
        phones = [f"+48500{i:06d}" for i in range(n)]
        req = SendRequest(sender="ACME", message="Spring sale", phone_numbers=phones)
        sub = prepare(req, self.account, self.settings, time.time(), campaign=name).submission
        self.writer.write([sub])
        return [m.id for m in sub.messages]

    def set(self, mid: str, status: str, error_code: str | None, due: float | None = None) -> None:
        """Put a message where an earlier attempt left it."""
        with self.engine.begin() as conn:
            conn.execute(
                update(messages)
                .where(messages.c.id == mid)
                .values(
                    status=status,
                    error_code=error_code,
                    attempts=0 if error_code is None else 1,
                    next_attempt_at=due,
                )
            )

    def statuses(self, ids: list[str]) -> dict[str, str]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(messages.c.id, messages.c.status).where(messages.c.id.in_(ids))
            )
            return {str(r[0]): str(r[1]) for r in rows}


@pytest.fixture
def world(engine: Engine) -> Iterator[World]:
    with fresh_redis() as redis_url:
        account, _ = create_account(engine, "shop", sender_policy="open")
        w = World(engine, redis_url, account)
        yield w
        w.broker.close()


def mixed(w: World, name: str) -> tuple[list[str], list[str]]:
    """A campaign with one message of each kind; (may be at the carrier, certainly not)."""
    ids = w.campaign(name)
    w.set(ids[0], Status.RETRYING, TIMED_OUT, due=time.time() + 600)
    w.set(ids[1], Status.QUEUED, "carrier_disconnected")  # a timed-out retry, released again
    w.set(ids[2], Status.RETRYING, REFUSED, due=time.time() + 600)
    # ids[3] stays queued, never tried
    return ids[:2], ids[2:]


def test_the_timed_out_codes_are_the_ambiguous_ones() -> None:
    assert TIMED_OUT in AMBIGUOUS_CODES and REFUSED not in AMBIGUOUS_CODES


def test_cancel_of_a_campaign_leaves_what_may_be_at_the_carrier(world: World) -> None:
    unsure, sure = mixed(world, "spring")
    with world.engine.begin() as conn:
        state = control.cancel_campaign(conn, world.account.id, "spring", "test", time.time())
    assert state.changed == 2
    after = world.statuses(unsure + sure)
    assert [after[i] for i in sure] == [Status.CANCELLED, Status.CANCELLED]
    assert [after[i] for i in unsure] == [Status.RETRYING, Status.QUEUED]


def test_pause_leaves_it_too_and_resume_moves_only_what_it_paused(world: World) -> None:
    unsure, sure = mixed(world, "spring")
    with world.engine.begin() as conn:
        paused = control.pause_campaign(conn, world.account.id, "spring", "test", time.time())
    assert paused.changed == 2
    assert set(world.statuses(sure).values()) == {Status.PAUSED}
    with world.engine.begin() as conn:
        resumed = control.resume_campaign(conn, world.account.id, "spring", "test", time.time())
    assert resumed.changed == 2
    after = world.statuses(unsure + sure)
    assert [after[i] for i in unsure] == [Status.RETRYING, Status.QUEUED]
    assert after[sure[0]] == Status.RETRYING and after[sure[1]] == Status.RETRYING


def test_cancel_of_one_message_is_refused_with_the_reason(world: World) -> None:
    unsure, sure = mixed(world, "spring")
    for mid in unsure:
        with world.engine.begin() as conn, pytest.raises(control.ControlRefused) as refused:
            control.cancel_message(conn, world.account.id, mid, time.time())
        assert refused.value.code == "message_not_cancellable"
        assert "may have reached the carrier" in refused.value.message
    for mid in sure:
        with world.engine.begin() as conn:
            assert control.cancel_message(conn, world.account.id, mid, time.time()) == "cancelled"
    after = world.statuses(unsure + sure)
    assert [after[i] for i in unsure] == [Status.RETRYING, Status.QUEUED]


def test_the_sweep_of_a_campaign_changed_a_moment_ago_leaves_it(world: World) -> None:
    unsure, sure = mixed(world, "spring")
    with world.engine.begin() as conn:
        control.cancel_campaign(conn, world.account.id, "spring", "test", time.time())
    # Back to waiting after the cancel, as a retry of an attempt under way at the cancel.
    world.set(sure[0], Status.RETRYING, REFUSED, due=time.time() + 600)
    with world.engine.begin() as conn:
        now = time.time()
        controlled = control_sweeps.controlled_submissions(conn, now, changed_since=now - 60)
        assert control_sweeps.apply_controls(conn, controlled, now) == 1
    after = world.statuses(unsure + sure)
    assert after[sure[0]] == Status.CANCELLED
    assert [after[i] for i in unsure] == [Status.RETRYING, Status.QUEUED]


def test_due_retries_of_a_cancelled_campaign(world: World) -> None:
    """The certain one is cancelled; the one that may be at the carrier is released to be
    asked about."""
    ids = world.campaign("spring", n=2)
    with world.engine.begin() as conn:
        control.cancel_campaign(conn, world.account.id, "spring", "test", time.time())
    past = time.time() - 1
    world.set(ids[0], Status.RETRYING, TIMED_OUT, due=past)
    world.set(ids[1], Status.RETRYING, REFUSED, due=past)
    with world.engine.begin() as conn:
        now = time.time()
        controlled = control_sweeps.controlled_submissions(conn, now)
        batches, expired = release_due(
            conn, now, {Lane.BULK: 100, Lane.PRIORITY: 100}, controlled=controlled
        )
    assert expired == 0
    assert [m["id"] for b in batches for m in b.payloads] == [ids[0]]
    after = world.statuses(ids)
    assert after == {ids[0]: Status.QUEUED, ids[1]: Status.CANCELLED}


def row(w: World, mid: str) -> Row[tuple[str, str | None]]:
    with w.engine.connect() as conn:
        return conn.execute(
            select(messages.c.status, messages.c.error_code).where(messages.c.id == mid)
        ).one()


def test_the_validity_s_end_hands_an_unverified_message_to_the_reconciler(world: World) -> None:
    ids = world.campaign("spring", n=3)
    past = time.time() - 1
    world.set(ids[0], Status.RETRYING, TIMED_OUT, due=past)
    world.set(ids[1], Status.RETRYING, REFUSED, due=past)
    world.set(ids[2], Status.QUEUED, "carrier_disconnected")  # released: the claim finds it late
    with world.engine.begin() as conn:
        conn.execute(update(messages).where(messages.c.id.in_(ids)).values(valid_until=past))
    with world.engine.begin() as conn:
        now = time.time()
        batches, expired = release_due(conn, now, {Lane.BULK: 100, Lane.PRIORITY: 100})
        assert not batches and expired == 1
        assert expire_overdue(conn, [ids[2]], now) == []  # the sender's path for a late claim
    assert world.statuses(ids) == {
        ids[0]: Status.SENDING,
        ids[1]: Status.EXPIRED,
        ids[2]: Status.SENDING,
    }
    with world.engine.connect() as conn:
        assert set(stale_claims(conn, time.time() + 1)) == {ids[0], ids[2]}
    # The carrier has the first, not the third.
    with world.engine.begin() as conn:
        found, missing = settle_reconciled(conn, [Sent(ids[0], "c-0", 200, 0.0)], [ids[2]], now)
    assert (found, missing) == (1, 1)
    assert tuple(row(world, ids[0])) == (Status.SENT, TIMED_OUT)
    assert tuple(row(world, ids[2])) == (Status.RETRYING, NOT_AT_CARRIER)
    with world.engine.begin() as conn:  # settled: the next release expires it
        _, expired = release_due(conn, time.time(), {Lane.BULK: 100, Lane.PRIORITY: 100})
    assert expired == 1 and world.statuses([ids[2]]) == {ids[2]: Status.EXPIRED}


def test_a_message_the_reconciler_did_not_find_can_be_cancelled(world: World) -> None:
    (mid,) = world.campaign("spring", n=1)
    world.set(mid, Status.SENDING, TIMED_OUT)
    with world.engine.begin() as conn:
        settle_reconciled(conn, [], [mid], time.time())
    with world.engine.begin() as conn:
        assert control.cancel_message(conn, world.account.id, mid, time.time()) == "cancelled"
