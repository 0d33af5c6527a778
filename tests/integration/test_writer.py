"""The group-commit writer on a real database (SQLite or PostgreSQL) and a real Redis.

What a 200 promises: the messages are committed, and their batch is either in Redis or in the
outbox (``enqueued_at IS NULL``) where the scheduler finds it. Repeats store nothing; opted-out
bulk recipients are dropped, priority ones never; one bad submission does not sink its group.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, text

from dispatcher.accounts.account import Account, create_account
from dispatcher.config import Settings
from dispatcher.contract import Lane, queue_name
from dispatcher.intake.broker import Broker
from dispatcher.intake.submit import SendRequest, prepare
from dispatcher.intake.writer import SubmissionWriter
from dispatcher.store.db import StoreUnavailable, make_engine
from dispatcher.store.outbox import unpublished_batches
from dispatcher.store.records import NewSubmission, StoredSubmission
from dispatcher.store.suppressions import add_suppression
from tests.support.services import backend, fresh_database, fresh_redis

# Integration, not unit: `make test` runs tests/integration on PostgreSQL too, and this file has
# a PostgreSQL-only case (column lengths) that never ran in CI from tests/unit.
pytestmark = pytest.mark.integration

OPTED_OUT = "+48600999888"
CHUNKS = {Lane.BULK: 500, Lane.PRIORITY: 100}


class World:
    def __init__(self, engine: Engine, redis_url: str, account: Account) -> None:
        self.engine = engine
        self.redis_url = redis_url
        self.account = account
        self.settings = Settings.from_env({}, redis_url=redis_url)
        self.redis = redis.Redis.from_url(redis_url)

    def sub(self, phones: list[str] | None = None, **fields: Any) -> NewSubmission:
        req = SendRequest(
            sender="ACME",
            message="Your code is 123456",
            phone_numbers=phones or ["+48500100200"],
            **fields,
        )
        return prepare(req, self.account, self.settings, time.time()).submission

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def queued_tasks(self) -> int:
        return sum(int(self.redis.llen(queue_name(lane))) for lane in Lane)


@pytest.fixture
def world() -> Iterator[World]:
    with fresh_database() as db_url, fresh_redis() as redis_url:
        engine = make_engine(db_url)
        account, _keys = create_account(engine, "alpha", priority=True, sender_policy="open")
        with engine.begin() as conn:
            add_suppression(conn, account.id, OPTED_OUT, time.time())
        w = World(engine, redis_url, account)
        yield w
        w.redis.close()
        engine.dispose()


def test_write_commits_publishes_and_marks(world: World) -> None:
    broker = Broker(world.redis_url)
    writer = SubmissionWriter(world.engine, broker, CHUNKS)
    subs = [world.sub(), world.sub(["+48500100201", "+48500100202"]), world.sub(priority=True)]
    results = writer.write(subs)
    broker.close()
    assert [r.id for r in results] == [s.id for s in subs]
    assert not any(r.duplicate for r in results)
    assert world.scalar("SELECT count(*) FROM messages") == 4
    assert world.scalar("SELECT count(*) FROM submissions") == 3
    # One bulk batch (3 messages) and one priority batch, both published and marked.
    assert world.scalar("SELECT count(*) FROM dispatch_batches WHERE enqueued_at IS NOT NULL") == 2
    assert world.scalar("SELECT sum(size) FROM dispatch_batches") == 4
    assert world.queued_tasks() == 2


def test_redis_down_leaves_stored_batches_in_the_outbox(world: World) -> None:
    broker = Broker("redis://127.0.0.1:1/0")  # nothing listens there
    writer = SubmissionWriter(world.engine, broker, CHUNKS)
    subs = [world.sub(), world.sub(priority=True)]
    results = writer.write(subs)
    broker.close()
    assert [r.id for r in results] == [s.id for s in subs]
    assert world.scalar("SELECT count(*) FROM messages WHERE status = 'queued'") == 2
    with world.engine.connect() as conn:
        pending = unpublished_batches(conn, older_than=time.time() + 1)
    assert sorted(len(b.payloads) for b in pending) == [1, 1]
    assert {p["id"] for b in pending for p in b.payloads} == {
        m.id for s in subs for m in s.messages
    }


def test_repeats_and_opt_outs(world: World) -> None:
    broker = Broker(world.redis_url)
    writer = SubmissionWriter(world.engine, broker, CHUNKS)
    first = world.sub(external_id="order-1")
    (r1,) = writer.write([first])
    assert not r1.duplicate
    again = world.sub(external_id="order-1")
    bulk = world.sub(["+48500100203", OPTED_OUT])
    only_opted_out = world.sub([OPTED_OUT])
    otp = world.sub([OPTED_OUT], priority=True)
    r2, r3, r4, r5 = writer.write([again, bulk, only_opted_out, otp])
    broker.close()
    assert r2.duplicate and [m["id"] for m in r2.messages] == [first.messages[0].id]
    assert r3.opted_out == [OPTED_OUT] and [m.phone for m in bulk.messages] == ["+48500100203"]
    assert r4.refused and r4.opted_out == [OPTED_OUT]
    assert not r5.opted_out and [m.phone for m in otp.messages] == [OPTED_OUT]
    phones = world.scalar("SELECT count(*) FROM messages WHERE phone = :p", p=OPTED_OUT)
    assert phones == 1  # the OTP only
    assert world.scalar("SELECT count(*) FROM submissions") == 3  # first, bulk, otp


def test_concurrent_submits_share_commits_and_carry_marks(world: World) -> None:
    broker = Broker(world.redis_url)
    writer = SubmissionWriter(world.engine, broker, CHUNKS, mark_idle_s=0.05)
    writer.start()

    async def burst() -> list[StoredSubmission]:
        return list(await asyncio.gather(*(writer.submit(world.sub()) for _ in range(64))))

    try:
        results = asyncio.run(burst())
        assert len({r.id for r in results}) == 64
        assert world.scalar("SELECT count(*) FROM messages") == 64
        batches = world.scalar("SELECT count(*) FROM dispatch_batches")
        assert batches < 64  # grouped: fewer transactions than requests
        assert world.queued_tasks() == batches
        deadline = time.monotonic() + 10  # marks ride the next group or the idle flush
        while world.scalar("SELECT count(*) FROM dispatch_batches WHERE enqueued_at IS NULL"):
            assert time.monotonic() < deadline, "published batches never marked enqueued"
            time.sleep(0.05)
    finally:
        writer.stop()
        broker.close()


@pytest.mark.skipif(backend() != "postgres", reason="SQLite does not enforce column lengths")
def test_a_bad_submission_fails_alone(world: World) -> None:
    broker = Broker(world.redis_url)
    writer = SubmissionWriter(world.engine, broker, CHUNKS)
    bad = world.sub()
    bad.messages[0].phone = "+" + "1" * 30  # longer than the column: the insert fails
    good = [world.sub() for _ in range(3)]
    writer.start()

    async def group() -> list[StoredSubmission | BaseException]:
        return list(
            await asyncio.gather(
                *(writer.submit(s) for s in [good[0], bad, *good[1:]]), return_exceptions=True
            )
        )

    try:
        outcomes = asyncio.run(group())
    finally:
        writer.stop()
        broker.close()
    assert isinstance(outcomes[1], StoreUnavailable)
    assert [o.id for o in outcomes if isinstance(o, StoredSubmission)] == [s.id for s in good]
    assert world.scalar("SELECT count(*) FROM messages") == 3
    assert world.scalar("SELECT count(*) FROM messages WHERE submission_id = :s", s=bad.id) == 0


class _HeldLarge(SubmissionWriter):
    """Holds every group of large submissions until released; small groups go through."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.release = threading.Event()
        self.large_started = threading.Event()

    def _commit_and_publish(self, subs: Any, carry_marks: bool) -> Any:
        if len(subs[0].messages) >= self.large_from:
            self.large_started.set()
            assert self.release.wait(10), "the test never released the large group"
        return super()._commit_and_publish(subs, carry_marks)


def test_small_submissions_do_not_wait_behind_large_ones(world: World) -> None:
    broker = Broker(world.redis_url)
    writer = _HeldLarge(world.engine, broker, CHUNKS, max_rows=4, large_from=3)
    writer.start()
    campaigns = [world.sub([f"+485001003{c}{i}" for i in range(4)]) for c in range(2)]

    async def scenario() -> tuple[list[StoredSubmission], bool, list[StoredSubmission]]:
        # Two campaigns in flight, one group each (max_rows): two writer threads taking turns
        # would both be held.
        large = [asyncio.ensure_future(writer.submit(c)) for c in campaigns]
        while not writer.large_started.is_set():
            await asyncio.sleep(0.01)
        small = await asyncio.wait_for(
            asyncio.gather(*(writer.submit(world.sub()) for _ in range(5))), timeout=10
        )
        held = not any(f.done() for f in large)
        writer.release.set()
        return list(small), held, list(await asyncio.gather(*large))

    try:
        small, held, large = asyncio.run(scenario())
    finally:
        writer.release.set()
        writer.stop()
        broker.close()
    assert held  # the small ones were stored while the campaigns were still being written
    assert len({s.id for s in small}) == 5
    assert [r.id for r in large] == [c.id for c in campaigns]
    assert world.scalar("SELECT count(*) FROM messages") == 13
