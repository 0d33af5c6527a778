"""The dashboard's rollup in the pipeline, with a clock the test controls: messages accepted
by the intake's own code, sent by the sender to a carrier that accepts everything, made final
by delivery reports (``apply_reports``, the dlr lane's code), and the scheduler's tick (a real
Redis) rolling their hour up, expiring the unreported ones and re-checking pending messages.
At each step the dashboard's numbers, rolled, equal the live count, including after reports
that come once the hour is rolled and our expiry of unreported messages (the PostgreSQL pass
is the one that matters: production's ``REPEATABLE READ`` snapshot and the one-statement
reads).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, select

from dispatcher.accounts.account import Account, create_account
from dispatcher.config import Settings
from dispatcher.contract import Status
from dispatcher.intake.broker import Broker
from dispatcher.intake.submit import SendRequest, prepare
from dispatcher.ratelimit import AsyncLimiter, AsyncMemoryRateLimitBackend, Rate
from dispatcher.scheduler.loop import Scheduler
from dispatcher.store import rollups
from dispatcher.store.dashboard import delivery_times, failure_reasons, volume
from dispatcher.store.messages import write_submissions
from dispatcher.store.progress import SendProgress
from dispatcher.store.reports import REPORT_TIMEOUT, ReportUpdate, apply_reports
from dispatcher.store.schema import dashboard_pending, messages
from tests.support.carrier import AcceptingCarrier
from tests.support.services import fresh_redis
from workers.sending.retry import RetryPolicy
from workers.sending.sender import ChunkSender, Route, SenderOptions
from workers.sending.tokens import ConnectionTokens

pytestmark = [pytest.mark.integration, pytest.mark.pgbouncer]

HOUR = 3600.0
T0 = 1_800_000_000.0 + 600  # ten minutes into an hour
PHONES = [f"+4860011{n:04d}" for n in range(20)]


def accept_and_send(engine: Engine, account: Account) -> list[str]:
    """20 messages accepted at T0 (validity 60 min) and taken by the carrier a second later."""
    req = SendRequest("ACME", "Sale", PHONES, validity=60)
    prepared = prepare(req, account, Settings.from_env({}), T0)
    with engine.begin() as conn:
        write_submissions(conn, [prepared.submission], {"bulk": 500, "priority": 100})
    ids = [m.id for m in prepared.submission.messages]
    with engine.connect() as conn:
        rows = conn.execute(select(messages).where(messages.c.id.in_(ids))).all()
    payloads: list[Any] = [
        {
            "id": r.id,
            "account": account.id,
            "to": r.phone,
            "sender": r.sender,
            "text": r.body,
            "parts": r.parts,
            "flash": False,
            "valid_until": r.valid_until,
            "attempt": 0,
        }
        for r in rows
    ]
    tokens = ConnectionTokens(AsyncLimiter(AsyncMemoryRateLimitBackend()), "c", Rate(1e6))
    route = Route("c", AcceptingCarrier(), tokens)  # type: ignore[arg-type]
    policy = RetryPolicy(max_attempts=3, base_s=1.0, cap_s=60.0)
    sender = ChunkSender(SendProgress(engine), route, policy, SenderOptions(), clock=lambda: T0 + 1)
    asyncio.run(sender.run(payloads))
    return sorted(ids)


def report(engine: Engine, ids: list[str], status: str, stat: str, now: float) -> None:
    """Handset reports for ``ids``, as the dlr lane applies them."""
    code = None if status == Status.DELIVERED else "absent"
    with engine.begin() as conn:
        result = apply_reports(
            conn, "c", [ReportUpdate(f"c-{i}", None, status, stat, code, T0 + 5) for i in ids], now
        )
    assert sorted(result.applied) == sorted(ids)


def numbers(engine: Engine, account_id: int, use_rollup: bool) -> dict[str, Any]:
    """What the dashboard shows for the hours around T0 (by hour) and the week (by day)."""
    hour = T0 // HOUR * HOUR
    week = hour - 6 * 86400
    with engine.connect() as conn:
        by_hour = volume(conn, account_id, hour - 2 * HOUR, 4, HOUR, use_rollup=use_rollup)
        by_day = volume(conn, account_id, week // 86400 * 86400, 8, 86400, use_rollup=use_rollup)
        return {
            "by_hour": (by_hour.by_group, by_hour.by_lane),
            "by_day": (by_day.by_group, by_day.by_lane),
            "reasons": failure_reasons(conn, account_id, week, hour + 86400, use_rollup=use_rollup),
            "took": delivery_times(conn, account_id, week, hour + 86400, use_rollup=use_rollup),
        }


def shown(engine: Engine, account_id: int) -> dict[str, Any]:
    """The rolled numbers, checked equal to the live ones."""
    rolled = numbers(engine, account_id, True)
    assert rolled == numbers(engine, account_id, False)
    return rolled


def groups_at_t0(engine: Engine, account_id: int) -> dict[str, int]:
    by_group = shown(engine, account_id)["by_hour"][0]
    return {g: counts[2] for g, counts in by_group.items()}  # the bucket holding T0


def pending(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(dashboard_pending.c.message_id)).scalars())


def tick_until_rolled(scheduler: Scheduler, now: float, hour: float) -> int:
    """Slow ticks at ``now`` until ``hour`` is rolled (the first runs backfill 8 days, half a
    second of hours per tick); the hours rolled."""
    rolled = 0
    for _ in range(60):
        rolled += scheduler.tick(now, force_slow=True).rolled_hours
        with scheduler.engine.connect() as conn:
            window = rollups.window(conn)
        if window is not None and window.rolled_until > hour:
            return rolled
    raise AssertionError("the scheduler did not roll the hour up")


def test_the_scheduler_rolls_up_and_late_reports_still_count(engine: Engine) -> None:
    account, _ = create_account(engine, "rollup", sender_policy="open")
    ids = accept_and_send(engine, account)
    report(engine, ids[:10], Status.DELIVERED, "DELIVRD", T0 + 10)
    report(engine, ids[10:13], Status.UNDELIVERED, "UNDELIV", T0 + 10)
    assert groups_at_t0(engine, account.id) == {
        "delivered": 10,
        "in progress": 7,
        "failed": 3,
        "cancelled": 0,
    }
    with fresh_redis() as redis_url:
        broker = Broker(redis_url)
        client = redis.Redis.from_url(redis_url)
        scheduler = Scheduler(
            Settings.from_env({"SMSDISPATCH_BULK_FAIRNESS": "false"}), engine, broker, client
        )
        hour = T0 // HOUR * HOUR
        now = hour + 2 * HOUR + 10  # the hour closed an hour ago: rolled now
        assert tick_until_rolled(scheduler, now, hour) > 0
        assert pending(engine) == set()  # all 20 past the carrier: counted (7 as "sent")
        assert groups_at_t0(engine, account.id) == {
            "delivered": 10,
            "in progress": 7,
            "failed": 3,
            "cancelled": 0,
        }
        # Reports after the roll-up reopen their messages: counted at once, live.
        report(engine, ids[13:16], Status.DELIVERED, "DELIVRD", now + 30)
        assert pending(engine) == set(ids[13:16])
        assert groups_at_t0(engine, account.id)["delivered"] == 13
        # The next re-check counts them again as they are; the numbers do not move.
        assert scheduler.tick(now + 90, force_slow=True).rollup_settled == 3
        assert pending(engine) == set()
        assert groups_at_t0(engine, account.id) == {
            "delivered": 13,
            "in progress": 4,
            "failed": 3,
            "cancelled": 0,
        }
        # Validity (60 min) + grace (72 h) later the scheduler expires the unreported four
        # (reopened, then counted again as expired in the same tick).
        later = T0 + HOUR + 72 * HOUR + 60
        assert scheduler.tick(later, force_slow=True).report_timeouts == 4
        with engine.connect() as conn:
            codes = set(
                conn.execute(
                    select(messages.c.error_code).where(messages.c.id.in_(ids[16:]))
                ).scalars()
            )
        assert codes == {REPORT_TIMEOUT}
        assert groups_at_t0(engine, account.id) == {
            "delivered": 13,
            "in progress": 0,
            "failed": 7,
            "cancelled": 0,
        }
        # A real report replaces one guess days later: counted right at once, and after.
        report(engine, ids[16:17], Status.DELIVERED, "DELIVRD", later + 30)
        assert pending(engine) == set(ids[16:17])
        assert groups_at_t0(engine, account.id)["delivered"] == 14
        scheduler.tick(later + 120, force_slow=True)
        assert pending(engine) == set()
        numbers_now = shown(engine, account.id)
        assert {g: c[2] for g, c in numbers_now["by_hour"][0].items()} == {
            "delivered": 14,
            "in progress": 0,
            "failed": 6,
            "cancelled": 0,
        }
        assert dict(numbers_now["reasons"]) == {"absent": 3, REPORT_TIMEOUT: 3}
        assert numbers_now["took"][50] == pytest.approx(5.0, rel=0.024)  # T0 → report at T0 + 5
        client.close()
        broker.redis.close()
