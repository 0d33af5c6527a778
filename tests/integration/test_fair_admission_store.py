"""Fair admission on a real database (SQLite or PostgreSQL) and a real Redis, no workers.

The writer leaves bulk batches in the outbox with their account; the scheduler's admitter
publishes them into the bulk queue account by account (deficit round robin), never more than
the queue's target depth; a crash between publish and mark only publishes a batch again; the
outbox sweep leaves waiting batches to the admitter while fairness is on, and sweeps them when
it is off. The pipeline with worker processes: tests/integration/test_fair_lane.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, text

from dispatcher.accounts.account import Account, create_account
from dispatcher.config import Settings
from dispatcher.contract import Chunk, Lane, queue_name
from dispatcher.contract.celery_wire import decode_task
from dispatcher.intake.broker import Broker
from dispatcher.intake.submit import SendRequest, prepare
from dispatcher.intake.writer import SubmissionWriter
from dispatcher.scheduler.loop import Scheduler
from dispatcher.store import admission
from dispatcher.store.db import make_engine
from dispatcher.store.outbox import unpublished_batches
from tests.support.services import fresh_database, fresh_redis

pytestmark = pytest.mark.integration

CHUNK = 100


class World:
    def __init__(self, engine: Engine, redis_url: str, a: Account, b: Account) -> None:
        self.engine = engine
        self.a, self.b = a, b
        self.settings = Settings.from_env(
            {}, redis_url=redis_url, chunk_size=CHUNK, fair_min_tasks=4, fair_queue_s=0.001
        )
        self.redis = redis.Redis.from_url(redis_url)
        self.broker = Broker(redis_url)
        self.writer = SubmissionWriter(
            engine, self.broker, {Lane.BULK: CHUNK, Lane.PRIORITY: 100}, fair=True
        )
        self.scheduler = Scheduler(self.settings, engine, self.broker, self.redis)

    def send(self, account: Account, n: int, start: int = 0, **fields: Any) -> None:
        phones = [f"+4850{account.id}{i:06d}" for i in range(start, start + n)]
        for i in range(0, n, 1000):
            req = SendRequest(
                sender="ACME", message="Spring sale", phone_numbers=phones[i : i + 1000], **fields
            )
            sub = prepare(req, account, self.settings, time.time()).submission
            self.writer.write([sub])

    def pop_bulk(self) -> list[Chunk]:
        """What a worker would take from the bulk queue, oldest first, until it is empty."""
        out: list[Chunk] = []
        while (raw := self.redis.rpop(queue_name(Lane.BULK))) is not None:
            task = decode_task(raw)
            assert task is not None
            out.append(Chunk.decode(task.arg))
        return out

    def scalar(self, sql: str) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(sql)).scalar()


@pytest.fixture
def world() -> Iterator[World]:
    with fresh_database() as db_url, fresh_redis() as redis_url:
        engine = make_engine(db_url)
        a, _ = create_account(engine, "big", priority=True, sender_policy="open")
        b, _ = create_account(engine, "small", sender_policy="open")
        w = World(engine, redis_url, a, b)
        yield w
        w.broker.close()
        w.redis.close()
        engine.dispose()


def _owner(world: World, chunk: Chunk) -> int:
    owners = {m["account"] for m in chunk.messages}
    assert len(owners) == 1, "a fair batch holds one account's messages"
    return int(owners.pop())


def test_bulk_waits_for_admission_priority_does_not(world: World) -> None:
    world.send(world.a, 1000)
    world.send(world.a, 1, priority=True)
    assert world.redis.llen(queue_name(Lane.BULK)) == 0
    assert world.redis.llen(queue_name(Lane.PRIORITY)) == 1
    with world.engine.connect() as conn:
        waiting = admission.waiting(conn)
    assert waiting[world.a.id].messages == 1000 and waiting[world.a.id].batches == 10
    assert waiting[world.a.id].weight == 1


def test_admission_alternates_and_keeps_the_queue_shallow(world: World) -> None:
    world.send(world.a, 3000)
    world.send(world.b, 500)
    owners: list[int] = []
    for _ in range(20):
        world.scheduler.admitter.round()
        assert world.redis.llen(queue_name(Lane.BULK)) <= world.scheduler.admitter.target.tasks()
        owners.extend(_owner(world, c) for c in world.pop_bulk())
    # The small account's 5 batches go out one for one with the big one's, from the start.
    assert (
        owners[:10] == [world.a.id, world.b.id] * 5
        or owners[:10]
        == [
            world.b.id,
            world.a.id,
        ]
        * 5
    )
    assert owners.count(world.b.id) == 5
    assert len(owners) == 35  # everything admitted once, nothing twice
    assert world.scalar("SELECT count(*) FROM dispatch_batches WHERE enqueued_at IS NULL") == 0


def test_weights_are_respected(world: World) -> None:
    with world.engine.begin() as conn:
        admission.set_weight(conn, world.b.id, 3)
    world.send(world.a, 2000)
    world.send(world.b, 2000)
    owners: list[int] = []
    while len(owners) < 16:
        world.scheduler.admitter.round()
        owners.extend(_owner(world, c) for c in world.pop_bulk())
    assert owners[:16].count(world.b.id) == 12


def test_weight_out_of_range_is_refused_naming_the_field(world: World) -> None:
    with world.engine.begin() as conn, pytest.raises(ValueError, match="bulk_weight"):
        admission.set_weight(conn, world.a.id, 0)


def test_a_crash_between_publish_and_mark_publishes_again_never_loses(world: World) -> None:
    world.send(world.a, 300)
    admitter = world.scheduler.admitter
    real = admitter.publish

    def crash_before_mark(batches: list[Any]) -> int:
        world.broker.publish(batches)
        raise ConnectionError("scheduler died before marking")

    admitter.publish = crash_before_mark
    with pytest.raises(ConnectionError):
        admitter.round()
    first = [c.batch for c in world.pop_bulk()]
    admitter.publish = real
    admitter.round()
    second = [c.batch for c in world.pop_bulk()]
    assert first and set(first) <= set(second)  # published again (the claims dedupe it)
    assert world.scalar("SELECT count(*) FROM dispatch_batches WHERE enqueued_at IS NULL") == 0


def test_the_outbox_sweep_leaves_waiting_batches_to_the_admitter(world: World) -> None:
    world.send(world.a, 250)
    later = time.time() + 3600
    with world.engine.connect() as conn:
        assert unpublished_batches(conn, later, fair=True) == []
        # Fairness turned off: the same batches are swept (nothing is stranded).
        swept = unpublished_batches(conn, later, fair=False)
    assert sum(len(b.payloads) for b in swept) == 250


def test_retries_are_admitted_by_account_too(world: World) -> None:
    world.send(world.a, 100)
    world.send(world.b, 100)
    # Both batches come back as retrying messages due now: the scheduler re-batches them per
    # account and leaves them to the admitter.
    now = time.time()
    with world.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE messages SET status = 'retrying', next_attempt_at = :now, batch_id = NULL"
            ),
            {"now": now - 1},
        )
        conn.execute(text("UPDATE dispatch_batches SET enqueued_at = :now"), {"now": now})
    report = world.scheduler.tick(now)
    assert report.released == 0  # left waiting, not published at once
    with world.engine.connect() as conn:
        waiting = admission.waiting(conn)
    assert {a: w.messages for a, w in waiting.items()} == {world.a.id: 100, world.b.id: 100}
    world.scheduler.admitter.round()
    assert sorted(_owner(world, c) for c in world.pop_bulk()) == sorted([world.a.id, world.b.id])
