"""A campaign's control changes against the scheduler's control sweep, interleaved on purpose,
on SQLite and PostgreSQL (dispatcher/store/control_sweeps.py).

The tick reads which campaigns are paused, then moves their waiting messages to ``paused``. A
resume committed between the two had its messages paused again for good: the campaign said
"running" and nothing would release them (the pause/resume integration test timed out on
SQLite with 2,800 of 3,000 messages paused). The tick's read now holds a lock until it commits
(row locks on PostgreSQL, the write lock on SQLite), so the resume waits for it.
"""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import Engine, select

from dispatcher.accounts.account import create_account
from dispatcher.config import Settings
from dispatcher.intake.submit import SendRequest, prepare
from dispatcher.scheduler.loop import CONTROL_SETTLE_S
from dispatcher.store import control, control_sweeps
from dispatcher.store.db import transaction
from dispatcher.store.messages import write_submissions
from dispatcher.store.schema import messages

pytestmark = pytest.mark.integration


def test_a_resume_during_the_ticks_control_sweep_is_not_undone(engine: Engine) -> None:
    account, _ = create_account(engine, "shop", sender_policy="open")
    req = SendRequest(
        sender="ACME", message="Spring sale", phone_numbers=[f"+48500{i:06d}" for i in range(4)]
    )
    sub = prepare(req, account, Settings.from_env({}), time.time(), campaign="spring").submission
    with transaction(engine) as conn:
        write_submissions(conn, [sub], {"bulk": 100, "priority": 100})
    with transaction(engine) as conn:
        control.pause_campaign(conn, account.id, "spring", "test", time.time())

    resumed = threading.Event()
    errors: list[BaseException] = []

    def resume() -> None:
        try:
            with transaction(engine) as conn:
                control.resume_campaign(conn, account.id, "spring", "test", time.time())
            resumed.set()
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    now = time.time()
    with transaction(engine) as conn:  # the tick's first steps, as in SchedulerLoop.tick
        assert set(control_sweeps.controlled_submissions(conn, now).values()) == {"paused"}
        fresh = control_sweeps.controlled_submissions(conn, now, now - CONTROL_SETTLE_S)
        thread = threading.Thread(target=resume)
        thread.start()
        assert not resumed.wait(1.0), "the resume did not wait for the tick's read"
        control_sweeps.apply_controls(conn, fresh, now)
    thread.join(30)
    assert not errors and resumed.is_set()
    with engine.connect() as conn:
        statuses = {r[0] for r in conn.execute(select(messages.c.status))}
        assert control.campaign_state(conn, account.id, "spring") == "running"
    assert "paused" not in statuses, statuses
