"""Quiet hours with a clock the test controls (issue 20): the message log (a real database),
the scheduler's tick and its broker (a real Redis), and the sender's claim, each given the
time. A message whose recipient is at 23:00 local waits without spending an attempt and is
released at the window's start; OTPs and ``timeRestriction: ignore`` do not wait.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis
from sqlalchemy import Engine, select, update

from dispatcher.accounts.account import Account, create_account, find_account
from dispatcher.config import Settings
from dispatcher.contract import Lane, Status
from dispatcher.intake.broker import Broker
from dispatcher.intake.submit import RequestRefused, SendRequest, prepare
from dispatcher.ratelimit import AsyncLimiter, AsyncMemoryRateLimitBackend, Rate
from dispatcher.scheduler.loop import Scheduler
from dispatcher.store.messages import write_submissions
from dispatcher.store.progress import SendProgress
from dispatcher.store.schema import accounts, dispatch_batches, messages
from tests.support.carrier import AcceptingCarrier
from tests.support.services import fresh_redis
from tests.support.stack import ROOT
from workers.sending.retry import RetryPolicy
from workers.sending.sender import ChunkSender, Route, SenderOptions
from workers.sending.tokens import ConnectionTokens

pytestmark = pytest.mark.integration

WARSAW = ZoneInfo("Europe/Warsaw")
PL = "+48600111222"


def warsaw(year: int, month: int, day: int, hour: int, minute: int) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=WARSAW).timestamp()


AT_2300 = warsaw(2026, 12, 7, 23, 0)
OPENS = warsaw(2026, 12, 8, 8, 0)


@pytest.fixture
def quiet_account(engine: Engine) -> Account:
    """An account whose default send window is 08:00-21:00 (recipient's time)."""
    account, _ = create_account(engine, "quiet", priority=True, sender_policy="open")
    with engine.begin() as conn:
        conn.execute(
            update(accounts).where(accounts.c.id == account.id).values(send_window="08:00-21:00")
        )
    found = find_account(engine, "quiet")
    assert found is not None and found.send_window == "08:00-21:00"
    return found


def submit(engine: Engine, account: Account, now: float, **fields: Any) -> str:
    req = SendRequest("ACME", "Sale", [fields.pop("to", PL)], **fields)
    prepared = prepare(req, account, Settings.from_env({}), now)
    with engine.begin() as conn:
        write_submissions(conn, [prepared.submission], {"bulk": 500, "priority": 100})
    return prepared.submission.messages[0].id


def row(engine: Engine, mid: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(messages).where(messages.c.id == mid)).one()


def test_a_message_at_23_00_local_waits_for_08_00_and_is_released_then(
    engine: Engine, quiet_account: Account
) -> None:
    held = submit(engine, quiet_account, AT_2300)
    r = row(engine, held)
    assert r.status == Status.SCHEDULED and r.next_attempt_at == OPENS and r.attempts == 0
    assert (r.window_start, r.window_end) == (480, 1260)
    otp = submit(engine, quiet_account, AT_2300, priority=True)
    assert row(engine, otp).status == Status.QUEUED  # OTPs ignore quiet hours by default
    ignored = submit(engine, quiet_account, AT_2300, time_restriction="ignore")
    assert (
        row(engine, ignored).status == Status.QUEUED and row(engine, ignored).window_start is None
    )
    followed = submit(engine, quiet_account, AT_2300, priority=True, time_restriction="follow")
    assert row(engine, followed).status == Status.SCHEDULED  # an OTP that asked to follow
    # The request's window wins over the account's: 22:00-23:30 is open at 23:00.
    own = submit(engine, quiet_account, AT_2300, time_restriction_range="22:00-23:30")
    assert row(engine, own).status == Status.QUEUED
    with fresh_redis() as redis_url:
        broker = Broker(redis_url)
        client = redis.Redis.from_url(redis_url)
        # FIFO bulk lane: this tick publishes what it releases. With the fair lane the bulk
        # batch would wait for the admitter (its own tests: test_fair_admission_store.py).
        fifo = Settings.from_env({"SMSDISPATCH_BULK_FAIRNESS": "false"})
        scheduler = Scheduler(fifo, engine, broker, client)
        assert scheduler.tick(OPENS - 1).released == 0  # 07:59:59: still quiet
        assert row(engine, held).status == Status.SCHEDULED
        assert scheduler.tick(OPENS + 0.1).released == 2  # 08:00: released, both that waited
        assert row(engine, held).status == Status.QUEUED and row(engine, held).attempts == 0
        with engine.connect() as conn:
            batch = conn.execute(
                select(dispatch_batches).where(dispatch_batches.c.id == row(engine, held).batch_id)
            ).one()
        assert batch.lane == Lane.BULK and batch.enqueued_at is not None  # on its way
        assert broker.queue_lengths()[str(Lane.BULK)] >= 1
        client.close()
        broker.redis.close()


def test_a_bad_window_is_refused_naming_the_field(engine: Engine, quiet_account: Account) -> None:
    for fields, parameter in (
        ({"time_restriction_range": "8-21"}, "timeRestrictionRange"),
        ({"time_restriction": "sometimes"}, "timeRestriction"),
    ):
        with pytest.raises(RequestRefused) as refused:
            submit(engine, quiet_account, AT_2300, **fields)
        assert [e.parameter for e in refused.value.errors] == [parameter]


def test_a_queued_message_claimed_after_its_window_closed_waits_without_an_attempt(
    engine: Engine, quiet_account: Account
) -> None:
    """Queued at 20:59 (open); a backlog brings it to a worker at 21:30: handed back, the
    attempt refunded, until 08:00; at 08:00 the same claim sends it."""
    mid = submit(engine, quiet_account, warsaw(2026, 12, 7, 20, 59))
    assert row(engine, mid).status == Status.QUEUED
    carrier = AcceptingCarrier("recorder")
    store = SendProgress(engine)
    tokens = ConnectionTokens(AsyncLimiter(AsyncMemoryRateLimitBackend()), "c", Rate(1e6))
    policy = RetryPolicy(max_attempts=3, base_s=1.0, cap_s=60.0)
    r = row(engine, mid)
    payload: Any = {
        "id": mid,
        "account": quiet_account.id,
        "to": PL,
        "sender": "ACME",
        "text": "Sale",
        "parts": 1,
        "flash": False,
        "valid_until": r.valid_until,
        "attempt": 0,
    }

    def send_at(now: float) -> Any:
        route = Route("c", carrier, tokens)  # type: ignore[arg-type]
        sender = ChunkSender(store, route, policy, SenderOptions(), clock=lambda: now)
        return asyncio.run(sender.run([payload]))

    report = send_at(warsaw(2026, 12, 7, 21, 30))
    assert carrier.refs == [] and report.deferred == 1
    r = row(engine, mid)
    assert r.status == Status.RETRYING and r.next_attempt_at == OPENS and r.attempts == 0
    with engine.begin() as conn:  # the scheduler's release, at 08:00 (its query, our clock)
        conn.execute(update(messages).where(messages.c.id == mid).values(status="queued"))
    send_at(OPENS + 1)
    assert carrier.refs == [mid] and row(engine, mid).status == Status.SENT
    assert row(engine, mid).attempts == 1


def test_the_account_window_is_set_with_the_cli(engine: Engine, quiet_account: Account) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSDISPATCH_")}
    env.update(DATABASE_URL=str(engine.url.render_as_string(hide_password=False)), PYTHONPATH=ROOT)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "dispatcher.cli", "accounts", "send-window", *args]
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)

    shown = cli("quiet")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["send_window"] == "08:00-21:00"
    changed = cli("quiet", "9:00-20:30", "--json")
    assert json.loads(changed.stdout)["send_window"] == "09:00-20:30"
    account = find_account(engine, "quiet")
    assert account is not None and account.send_window == "09:00-20:30"
    bad = cli("quiet", "9-20")
    assert bad.returncode == 2 and "HH:MM-HH:MM" in bad.stderr
    cleared = cli("quiet", "none")
    assert json.loads(cleared.stdout)["send_window"] is None
    account = find_account(engine, "quiet")
    assert account is not None and account.send_window is None
    # Without a window a message at 23:00 goes at once.
    assert row(engine, submit(engine, account, AT_2300)).status == Status.QUEUED
