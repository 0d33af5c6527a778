"""A delivery report whose task a SIGKILLed dlr pool held (left in kombu's ``unacked`` hash) is
applied within ``SMSDISPATCH_UNACKED_RESTORE_S``, not after the one-hour visibility timeout: the
scheduler puts the task back on its queue (dispatcher/scheduler/unacked.py, docs/reliability.md)."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import cast

import pytest
import redis
from sqlalchemy import text

from dispatcher.contract import Lane, queue_name
from dispatcher.scheduler.unacked import broker_keys
from tests.support.stack import Stack, running_stack, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TOKEN = "cb-t0k3n"
RESTORE_S = 8  # far below the visibility timeout; above the time it takes to kill the pool
KEYS = broker_keys()
DLR = queue_name(Lane.DLR)


def _dlr_entries(client: redis.Redis) -> dict[str, float]:
    """Delivery tag → delivery time of the dlr tasks kombu holds as unacknowledged."""
    out = {}
    for tag, raw in cast(dict[bytes, bytes], client.hgetall(KEYS.unacked)).items():
        if json.loads(raw)[2] == DLR:
            score = client.zscore(KEYS.index, tag)
            out[tag.decode()] = float(score or 0)
    return out


def _row(stack: Stack, message_id: str) -> tuple[str, float | None]:
    engine = stack.db()
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT status, report_at FROM messages WHERE id = :id"), {"id": message_id}
        ).one()
    engine.dispose()
    return str(row[0]), row[1]


def test_report_held_by_a_killed_dlr_pool_is_applied_after_the_restore() -> None:
    with running_stack(
        workers={"priority": 1, "dlr": 1},
        carrier_callback_token=TOKEN,
        unacked_restore_s=RESTORE_S,
    ) as stack:
        broker = redis.Redis.from_url(stack.env["REDIS_URL"])
        # The dlr pool's only child is stopped: the pool still takes a task from the queue (kombu
        # records it in ``unacked``) but cannot run it, so it is held when the pool is killed.
        for pid in stack.worker_children("worker-dlr"):
            os.kill(pid, signal.SIGSTOP)
        client = stack.account()
        r = client.send(
            {"sender": "ACME", "message": "hi", "phoneNumbers": ["+48111222333"], "priority": True}
        )
        assert r.status_code == 200, r.text
        message_id = r.json()["data"][0]["id"]
        held = wait_until(lambda: _dlr_entries(broker), 20, what="the report task held")
        stack.stop("worker-dlr", sig=signal.SIGKILL)
        killed_at = time.time()

        # The state of the chaos finding: the task is only in kombu's unacked hash and index.
        assert _dlr_entries(broker).keys() == held.keys()
        assert broker.llen(DLR) == 0
        assert min(held.values()) > killed_at - RESTORE_S, "restorable already: test too slow"
        assert _row(stack, message_id) == ("sent", None)

        # A fresh pool applies the report once the scheduler has put the task back.
        stack.start_worker("dlr", 1)
        status = wait_until(
            lambda: _row(stack, message_id)[0] == "delivered" or None,
            RESTORE_S + 30,
            interval=0.25,
            what="the report applied",
        )
        assert status
        _, report_at = _row(stack, message_id)
        assert report_at is not None and report_at >= min(held.values()) + RESTORE_S
        assert _dlr_entries(broker) == {}
        assert '"unacked.restored"' in stack.log("scheduler")
        broker.close()
