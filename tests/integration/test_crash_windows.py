"""Crash windows, with real processes: what a crash leaves behind is repaired by the scheduler's
periodic reconcilers, and nothing is sent twice.

- A producer SIGKILLed between its commit and its publish (the API's writer does exactly that
  sequence) leaves stored messages whose batch was never published: the outbox sweep publishes
  it after ``outbox_stale_s`` and each message reaches the carrier once.
- A claim left in ``sending`` (a worker died during the carrier call) is looked up at the carrier
  by our reference: found → ``sent`` with the carrier's id and NOT resent; not found → retried
  and sent once.
- A batch marked published whose task vanished (Redis lost it) is re-published by the orphan
  audit once the lane's queue is empty.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, update

from dispatcher.accounts.account import create_account
from dispatcher.store.schema import dispatch_batches, message_events, messages
from tests.support.stack import ROOT, Stack, running_stack, wait_until

pytestmark = pytest.mark.integration

# A producer that dies the instant its transaction has committed, before any publish: the
# crash window of the API's group-commit writer and of the library producer (same writer).
CRASHING_PRODUCER = """
import os, signal, sys
from dispatcher.config import Settings
from dispatcher.intake.enqueue import Producer

producer = Producer(Settings.from_env())
def crash(batches):
    os.kill(os.getpid(), signal.SIGKILL)
producer.broker.publish = crash
producer.send_sms(sys.argv[1], sender="Shop", message=sys.argv[2],
                  phone_numbers=sys.argv[4].split(","), priority=sys.argv[3] == "1")
"""


@pytest.fixture(scope="module")
def cstack() -> Iterator[Stack]:
    with running_stack(
        workers={"priority": 1, "bulk": 1},
        outbox_stale_s=5,
        sending_stale_s=3,
        orphan_stale_s=4,
    ) as s:
        yield s


def _account(stack: Stack) -> str:
    name = f"crash-{time.monotonic_ns()}"
    engine = stack.db()
    create_account(engine, name, priority=True, sender_policy="open")
    engine.dispose()
    return name


def _crash_after_commit(stack: Stack, text: str, numbers: list[str], priority: bool) -> list[Any]:
    """Run the crashing producer; the rows it left (asserting it died by SIGKILL)."""
    account = _account(stack)
    # The producer publishes bulk batches itself only with the fair lane off (on, they wait
    # for the scheduler's admitter: tests/integration/test_fair_lane.py); the scheduler here
    # runs with it on and must still sweep such batches.
    p = subprocess.run(
        [sys.executable, "-c", CRASHING_PRODUCER, account, text, "1" if priority else "0",
         ",".join(numbers)],
        env={**stack.env, "SMSDISPATCH_BULK_FAIRNESS": "0"}, cwd=ROOT, capture_output=True,
        timeout=60,
    )  # fmt: skip
    assert p.returncode == -signal.SIGKILL, p.stderr.decode()[-2000:]
    engine = stack.db()
    with engine.connect() as conn:
        rows = conn.execute(
            select(messages.c.id, messages.c.status, messages.c.lane, messages.c.batch_id).where(
                messages.c.body == text
            )
        ).all()
    engine.dispose()
    assert len(rows) == len(numbers), "the commit preceded the crash: every message is stored"
    return list(rows)


def _batches(stack: Stack, ids: set[str]) -> list[Any]:
    engine = stack.db()
    with engine.connect() as conn:
        rows = conn.execute(
            select(dispatch_batches.c.id, dispatch_batches.c.enqueued_at).where(
                dispatch_batches.c.id.in_(sorted(ids))
            )
        ).all()
    engine.dispose()
    return list(rows)


def _status(stack: Stack, mid: str) -> tuple[str, str | None]:
    engine = stack.db()
    with engine.connect() as conn:
        row = conn.execute(
            select(messages.c.status, messages.c.carrier_message_id).where(messages.c.id == mid)
        ).one()
    engine.dispose()
    return str(row[0]), row[1]


def _events(stack: Stack, mid: str) -> list[tuple[str, Any]]:
    engine = stack.db()
    with engine.connect() as conn:
        rows = conn.execute(
            select(message_events.c.kind, message_events.c.detail)
            .where(message_events.c.message_id == mid)
            .order_by(message_events.c.at)
        ).all()
    engine.dispose()
    return [(r[0], r[1]) for r in rows]


def _carrier_counts(stack: Stack) -> dict[str, int]:
    return {k: int(v) for k, v in stack.sim("GET", "/_sim/refcounts").json().items()}


def _all_sent_once(stack: Stack, ids: list[str], timeout: float = 60) -> None:
    wait_until(lambda: all(_status(stack, i)[0] == "sent" for i in ids), timeout, 0.2, "all sent")
    time.sleep(1.5)  # a second submit, if any were coming, would arrive now
    counts = _carrier_counts(stack)
    assert [counts.get(i, 0) for i in ids] == [1] * len(ids), "each message exactly once"


@pytest.mark.parametrize("priority,n", [(True, 1), (False, 40)], ids=["priority", "bulk"])
def test_crash_between_commit_and_publish(cstack: Stack, priority: bool, n: int) -> None:
    """Stored, never published (the producer died): the outbox sweep enqueues it; sent once."""
    numbers = [f"+4851{int(priority)}{i:06d}" for i in range(n)]
    text = f"crash window {priority} {time.monotonic_ns()}"
    rows = _crash_after_commit(cstack, text, numbers, priority)
    assert {r.status for r in rows} == {"queued"}
    assert {r.lane for r in rows} == {"priority" if priority else "bulk"}
    batch_ids = {r.batch_id for r in rows}
    assert all(b.enqueued_at is None for b in _batches(cstack, batch_ids)), "never published"
    ids = [r.id for r in rows]
    assert not set(ids) & set(_carrier_counts(cstack)), "nothing reached the carrier yet"
    _all_sent_once(cstack, ids)
    assert all(b.enqueued_at is not None for b in _batches(cstack, batch_ids)), "swept"


def _park(stack: Stack, ids: list[str], status: str, enqueued_ago: float) -> None:
    """Make the crashed producer's rows look like another crash's leftovers."""
    now = time.time()
    engine = stack.db()
    with engine.begin() as conn:
        batch_ids = [
            r[0]
            for r in conn.execute(
                select(messages.c.batch_id).where(messages.c.id.in_(ids)).distinct()
            )
        ]
        conn.execute(
            update(dispatch_batches)
            .where(dispatch_batches.c.id.in_(batch_ids))
            .values(enqueued_at=now - enqueued_ago)
        )
        if status == "sending":  # claimed by a worker long ago, one attempt spent
            conn.execute(
                update(messages)
                .where(messages.c.id.in_(ids))
                .values(status="sending", status_at=now - 60, attempts=1, connection="default")
            )
    engine.dispose()


def test_stuck_sending_found_at_carrier_is_not_resent(cstack: Stack) -> None:
    """The carrier has the message (the worker died after the submit): reconciled to ``sent``
    with the carrier's id, by looking up our reference; the carrier sees no second submit."""
    text = f"stuck found {time.monotonic_ns()}"
    (row,) = _crash_after_commit(cstack, text, ["+48512000001"], False)
    _park(cstack, [row.id], "sending", enqueued_ago=0)
    r = cstack.sim(
        "POST", "/v1/sms", json={"to": "+48512000001", "from": "Shop", "text": text, "ref": row.id}
    )
    assert r.status_code == 200, r.text
    carrier_id = r.json()["id"]
    wait_until(lambda: _status(cstack, row.id)[0] == "sent", 60, 0.2, "reconciled")
    assert _status(cstack, row.id) == ("sent", carrier_id)
    assert ("reconciled", {"carrier": "found"}) in _events(cstack, row.id)
    time.sleep(2)
    assert _carrier_counts(cstack)[row.id] == 1, "looked up, not resent"


def test_stuck_sending_unknown_to_carrier_is_sent_once(cstack: Stack) -> None:
    """The carrier never got it (the worker died before the submit): retried, sent once."""
    text = f"stuck missing {time.monotonic_ns()}"
    (row,) = _crash_after_commit(cstack, text, ["+48512000002"], False)
    _park(cstack, [row.id], "sending", enqueued_ago=0)
    _all_sent_once(cstack, [row.id])
    assert ("reconciled", {"carrier": "not_found"}) in _events(cstack, row.id)


def test_published_batch_whose_task_vanished_is_republished(cstack: Stack) -> None:
    """Marked enqueued, but its task is gone (e.g. Redis lost it): the orphan audit finds the
    still-queued messages once the lane's queue is empty, and each is sent once."""
    text = f"orphan {time.monotonic_ns()}"
    rows = _crash_after_commit(cstack, text, [f"+48513{i:06d}" for i in range(5)], False)
    # Marked as published just now (as the writer does): the audit visits batches in the order
    # they were published, so a back-dated mark could fall behind its cursor.
    _park(cstack, [r.id for r in rows], "queued", enqueued_ago=0)
    _all_sent_once(cstack, [r.id for r in rows])


def test_crashing_producer_really_crashes(cstack: Stack) -> None:
    """Self-check of the harness: without the sweep nothing would move (enqueued_at stays
    NULL and nothing reaches the carrier until ``outbox_stale_s`` has passed)."""
    text = f"self check {time.monotonic_ns()}"
    rows = _crash_after_commit(cstack, text, ["+48514000001"], False)
    time.sleep(1)
    assert _status(cstack, rows[0].id)[0] == "queued"
    assert rows[0].id not in _carrier_counts(cstack)
