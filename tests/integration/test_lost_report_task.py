"""A delivery report whose task is lost after the API answered the carrier is still applied:
the report is a row of the callback inbox, and the scheduler wakes the dlr lane again when the
row's lease ends (the chaos finding of docs/reliability.md: a task lost between kombu's
``BRPOP`` and its ``unacked`` entry when Redis was SIGKILLed)."""

from __future__ import annotations

import time

import pytest
import redis
from sqlalchemy import text

from dispatcher.contract import Lane, queue_name
from tests.support.stack import Stack, running_stack, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TOKEN = "cb-t0k3n"
LEASE_S = 4
DLR = queue_name(Lane.DLR)


def _query(stack: Stack, sql: str, **params: object) -> list[tuple[object, ...]]:
    engine = stack.db()
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(text(sql), params).all()]
    engine.dispose()
    return rows


def test_a_report_whose_task_was_lost_is_applied_after_the_lease() -> None:
    # No dlr pool yet: the report's wake-up task waits in the queue, where the test loses it.
    with running_stack(
        workers={"priority": 1}, carrier_callback_token=TOKEN, callback_lease_s=LEASE_S
    ) as stack:
        broker = redis.Redis.from_url(stack.env["REDIS_URL"])
        client = stack.account()
        r = client.send(
            {"sender": "ACME", "message": "hi", "phoneNumbers": ["+48111222333"], "priority": True}
        )
        assert r.status_code == 200, r.text
        message_id = r.json()["data"][0]["id"]
        wait_until(lambda: broker.llen(DLR) > 0, 20, interval=0.05, what="the report's task")
        broker.delete(DLR)  # lost: what the carrier posted now exists only in the database
        lost_at = time.time()
        [(status,)] = _query(stack, "SELECT status FROM messages WHERE id = :i", i=message_id)
        assert status == "sent"
        [(kind, due_at)] = _query(stack, "SELECT kind, due_at FROM carrier_callbacks")
        assert kind == "report" and float(due_at) > lost_at - 1  # type: ignore[arg-type]

        stack.start_worker("dlr", 1)
        wait_until(
            lambda: (
                _query(stack, "SELECT status FROM messages WHERE id = :i", i=message_id)
                == [("delivered",)]
            ),
            LEASE_S + 30,
            interval=0.25,
            what="the report applied",
        )
        [(report_at,)] = _query(stack, "SELECT report_at FROM messages WHERE id = :i", i=message_id)
        assert float(report_at) >= float(due_at)  # type: ignore[arg-type]  # woken by the lease
        assert _query(stack, "SELECT count(*) FROM carrier_callbacks") == [(0,)]
        broker.close()
