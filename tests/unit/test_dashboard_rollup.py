"""The dashboard's rollup gives exactly the numbers a live count of ``messages`` gives: counts
per status group and lane, failures by reason, delivery-time percentiles (as their bucket's
middle), for whole and partial ranges, before and after the scheduler's job rolls the hours,
and after statuses change late (a delivery report for a message still ``sent`` when its hour
was rolled, a real report replacing our ``report_timeout`` expiry, a late report before its
hour is rolled); a timely report writes nothing for the rollup. On SQLite by default, on
PostgreSQL with ``SMSD_TEST_DB=postgres``.
"""

from __future__ import annotations

import math
import random
import uuid
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select

from dispatcher.accounts.account import create_account
from dispatcher.contract import Status
from dispatcher.store import rollups
from dispatcher.store.dashboard import (
    GROUPS,
    PERCENTILES,
    Volume,
    delivery_times,
    failure_reasons,
    period_range,
    status_group,
    volume,
)
from dispatcher.store.reports import REPORT_TIMEOUT, ReportUpdate, apply_reports
from dispatcher.store.schema import dashboard_counts, dashboard_pending, messages

NOW = 1_800_000_000.0  # on the hour
HOUR = 3600.0
TOOK = (0.05, 0.4, 1.3, 2.0, 3.0, 3.0, 7.5, 31.0, 125.0, 4000.0)


def add(engine: Engine, account_id: int, created_at: float, status: str, **cols: Any) -> str:
    """One message as the send path leaves it in ``status``."""
    mid = str(uuid.uuid4())
    row = {
        "id": mid,
        "account_id": account_id,
        "submission_id": str(uuid.uuid4()),
        "external_id": mid[:8],
        "phone": "+48699000001",
        "sender": "ACME",
        "body": "hello",
        "parts": 1,
        "encoding": "gsm7",
        "flash": False,
        "lane": "bulk",
        "status": status,
        "created_at": created_at,
        "status_at": created_at + 1,
        "valid_until": created_at + 86400,
        "attempts": 1,
        **cols,
    }
    with engine.begin() as conn:
        conn.execute(insert(messages).values(**row))
    return mid


def populate(engine: Engine, account_id: int, seed: int, n: int = 500) -> None:
    """``n`` messages over the last 30 hours in every state the dashboard tells apart."""
    rnd = random.Random(seed)
    kinds: list[tuple[str, dict[str, Any]]] = [
        (Status.DELIVERED, {"report_stat": "DELIVRD"}),
        (Status.DELIVERED, {"report_stat": "DELIVRD"}),
        (Status.DELIVERED, {"report_stat": "DELIVRD"}),
        (Status.UNDELIVERED, {"error_code": "absent", "report_stat": "UNDELIV"}),
        (Status.UNDELIVERED, {"report_stat": "UNDELIV"}),
        (Status.EXPIRED, {"error_code": REPORT_TIMEOUT}),
        (Status.EXPIRED, {"report_stat": "EXPIRED"}),
        (Status.REJECTED, {"error_code": "invalid_number"}),
        (Status.FAILED, {}),
        (Status.SENT, {}),
        (Status.QUEUED, {}),
        (Status.SCHEDULED, {}),
        (Status.RETRYING, {}),
        (Status.CANCELLED, {}),
        (Status.PAUSED, {}),
    ]
    rows = []
    for _ in range(n):
        status, cols = rnd.choice(kinds)
        created = NOW - rnd.uniform(0, 30 * HOUR)
        row = dict(cols)
        row["lane"] = rnd.choice(("bulk", "bulk", "priority"))
        if status not in (Status.QUEUED, Status.SCHEDULED, Status.RETRYING, Status.PAUSED):
            row["connection"] = rnd.choice(("c1", "c2"))
            row["carrier_message_id"] = uuid.uuid4().hex
        if status in (Status.DELIVERED, Status.UNDELIVERED, Status.EXPIRED):
            row["final_at"] = created + rnd.choice(TOOK)
        rows.append((created, status, row))
    for created, status, row in rows:
        add(engine, account_id, created, status, **row)


def accounts(engine: Engine) -> tuple[int, int]:
    a, _ = create_account(engine, f"a-{uuid.uuid4().hex[:8]}")
    b, _ = create_account(engine, f"b-{uuid.uuid4().hex[:8]}")
    populate(engine, a.id, 1)
    populate(engine, b.id, 2, 200)
    return a.id, b.id


def nearest_rank(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def expected(
    engine: Engine, account_id: int, start: float, until: float, bucket_s: float
) -> dict[str, Any]:
    """The dashboard's numbers computed here, in Python, from every message row."""
    m = messages.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(messages).where(
                (m.account_id == account_id) & (m.created_at >= start) & (m.created_at < until)
            )
        ).all()
    n = math.ceil((until - start) / bucket_s)
    by_group = {g: [0] * n for g in GROUPS}
    by_lane = {lane: [0] * n for lane in ("priority", "bulk")}
    reasons: Counter[str] = Counter()
    took: list[float] = []
    for r in rows:
        i = int((r.created_at - start) // bucket_s)
        by_group[status_group(r.status)][i] += 1
        by_lane[r.lane][i] += 1
        if r.status in rollups.FAILED:
            reasons[r.error_code or r.report_stat or r.status] += 1
        if r.status == Status.DELIVERED and r.final_at is not None:
            took.append(r.final_at - r.created_at)
    return {
        "by_group": by_group,
        "by_lane": by_lane,
        "reasons": sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:8],
        "took": {p: nearest_rank(took, p) for p in PERCENTILES} if took else {},
    }


def check(engine: Engine, account_id: int, start: float, until: float, bucket_s: float) -> None:
    """The dashboard (rolled and live) equals the Python count; percentiles rolled = live and
    within half a bucket of the exact ones."""
    want = expected(engine, account_id, start, until, bucket_s)
    n = math.ceil((until - start) / bucket_s)
    with engine.connect() as conn:
        for use_rollup in (True, False):
            vol = volume(conn, account_id, start, n, bucket_s, use_rollup=use_rollup)
            assert vol.by_group == want["by_group"], use_rollup
            assert vol.by_lane == want["by_lane"], use_rollup
            got = failure_reasons(conn, account_id, start, until, use_rollup=use_rollup)
            assert got == want["reasons"], use_rollup
        rolled = delivery_times(conn, account_id, start, until)
        live = delivery_times(conn, account_id, start, until, use_rollup=False)
    assert rolled == live
    assert rolled.keys() == want["took"].keys()
    for p, exact in want["took"].items():
        assert rolled[p] == pytest.approx(exact, rel=0.024), p


def views() -> list[tuple[float, float, float]]:
    """(start, until, bucket) as the panel asks (24 h by hour, 7 days by day) and ranges that
    start and end inside an hour."""
    day = period_range(NOW - 1, 86400, 7)
    return [
        (NOW - 24 * HOUR, NOW, HOUR),
        (day[0], day[1], 86400.0),
        (NOW - 20.5 * HOUR, NOW - 3.5 * HOUR, 1800.0),
        (NOW - 29 * HOUR, NOW - 5 * HOUR, 2 * HOUR),
    ]


def pending_ids(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(dashboard_pending.c.message_id)).scalars())


def counted(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.sum(dashboard_counts.c.n), 0))).scalar())


def test_rolled_numbers_equal_the_live_count_for_every_view(engine: Engine) -> None:
    a, b = accounts(engine)
    for start, until, bucket_s in views():  # before any rollup: all live
        check(engine, a, start, until, bucket_s)
    run = rollups.run(engine, NOW, budget_s=600)
    assert run.hours == 8 * 24 - 1  # every hour closed for an hour, from 8 days back
    with engine.connect() as conn:
        window = rollups.window(conn)
    assert window is not None and window.rolled_until == NOW - HOUR
    # Every message of a rolled hour is either counted or pending, once.
    m = messages.c
    with engine.connect() as conn:
        in_rolled = conn.execute(select(func.count()).where(m.created_at < NOW - HOUR)).scalar_one()
        unsettled = set(
            conn.execute(
                select(m.id).where((m.created_at < NOW - HOUR) & ~rollups.counted(m))
            ).scalars()
        )
    assert counted(engine) + len(pending_ids(engine)) == in_rolled
    assert pending_ids(engine) == unsettled and unsettled
    for account in (a, b):
        for start, until, bucket_s in views():
            check(engine, account, start, until, bucket_s)
    assert rollups.run(engine, NOW + 59).hours == 0  # nothing new to roll: nothing counted twice
    assert counted(engine) + len(pending_ids(engine)) == in_rolled
    with rollups.snapshot(engine) as conn:
        assert not rollups.roll_hour(conn, NOW - 5 * HOUR)  # not the next hour: refused


def test_a_late_status_change_after_the_rollup_is_counted_at_once(engine: Engine) -> None:
    a, _ = accounts(engine)
    hour = NOW - 6 * HOUR
    sent = add(engine, a, hour + 60, Status.SENT, connection="c1", carrier_message_id="k1")
    guessed = add(
        engine,
        a,
        hour + 120,
        Status.EXPIRED,
        connection="c1",
        carrier_message_id="k2",
        error_code=REPORT_TIMEOUT,
        final_at=hour + 90000,
    )
    fresh = add(engine, a, NOW - 600, Status.SENT, connection="c1", carrier_message_id="k4")
    unrolled = add(engine, a, NOW - 3000, Status.SENT, connection="c1", carrier_message_id="k5")
    rollups.run(engine, NOW, budget_s=600)
    assert not {sent, guessed} & pending_ids(engine)  # counted as they were
    before = pending_ids(engine)
    # Hours after the rollup: the handset reports come (one for our own expiry guess); and
    # two for messages whose hour is not rolled yet, one 10 minutes old, one 50.
    with engine.begin() as conn:
        result = apply_reports(
            conn,
            "c1",
            [
                ReportUpdate("k1", None, Status.DELIVERED, "DELIVRD", None, hour + 65),
                ReportUpdate("k2", None, Status.UNDELIVERED, "UNDELIV", "absent", hour + 200),
                ReportUpdate("k4", None, Status.DELIVERED, "DELIVRD", None, NOW - 590),
                ReportUpdate("k5", None, Status.DELIVERED, "DELIVRD", None, NOW - 2990),
            ],
            NOW,
        )
    assert sorted(result.applied) == sorted([sent, guessed, fresh, unrolled])
    # The late ones are reopened; the timely one writes nothing for the rollup.
    assert pending_ids(engine) == before | {sent, guessed, unrolled}
    for start, until, bucket_s in views():  # reflected before the scheduler runs again
        check(engine, a, start, until, bucket_s)
    run = rollups.run(engine, NOW + 120)  # the re-check counts them again as they are now
    assert run.settled == 2 and pending_ids(engine) == before | {unrolled}
    for start, until, bucket_s in views():
        check(engine, a, start, until, bucket_s)
    # Their hour rolled: the one reopened before is counted as it is now, once.
    assert rollups.run(engine, NOW + HOUR + 60).hours == 1
    assert unrolled not in pending_ids(engine) and before <= pending_ids(engine)
    for start, until, bucket_s in views():
        check(engine, a, start, until, bucket_s)
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).where(messages.c.created_at < NOW)).scalar_one()
    assert counted(engine) + len(pending_ids(engine)) == total


def test_an_expiry_guess_replaced_days_later_is_reflected(engine: Engine) -> None:
    """A ``report_timeout`` expiry is counted; the real report that replaces it days later
    reopens it: the numbers change at once."""
    a, _ = accounts(engine)
    guessed = add(
        engine,
        a,
        NOW - 10 * HOUR,
        Status.EXPIRED,
        connection="c2",
        carrier_message_id="k3",
        error_code=REPORT_TIMEOUT,
        final_at=NOW - 1,
    )
    rollups.run(engine, NOW, budget_s=600)
    rollups.run(engine, NOW + 3 * 86400)  # days later: counted as expired
    assert guessed not in pending_ids(engine)
    with engine.begin() as conn:
        apply_reports(
            conn,
            "c2",
            [ReportUpdate("k3", None, Status.DELIVERED, "DELIVRD", None, NOW - 10 * HOUR + 4)],
            NOW + 3 * 86400,
        )
    assert guessed in pending_ids(engine)
    for start, until, bucket_s in views():
        check(engine, a, start, until, bucket_s)
    rollups.run(engine, NOW + 3 * 86400 + 120)
    assert guessed not in pending_ids(engine)
    for start, until, bucket_s in views():
        check(engine, a, start, until, bucket_s)


def test_percentiles_from_buckets() -> None:
    assert rollups.histogram_percentiles({}, PERCENTILES) == {}
    values = [0.05, *[1.0] * 50, *[2.0] * 40, *[30.0] * 9, 3600.0]
    hist: Counter[int] = Counter()
    for v in values:
        b = 0 if v < rollups.MIN_S else 1 + math.floor(math.log10(v / rollups.MIN_S) * 50)
        hist[b] += 1
    got = rollups.histogram_percentiles(dict(hist), PERCENTILES)
    for p in PERCENTILES:
        assert got[p] == pytest.approx(nearest_rank(values, p), rel=0.024)
    assert rollups.representative(0) == 0.05
    # Consecutive buckets are 10^(1/50) apart: the middle is within 2.3 % of either edge.
    assert rollups.representative(11) / rollups.representative(10) == pytest.approx(10**0.02)


def test_cancelled_messages_have_a_group_of_their_own() -> None:
    """A cancelled message is neither in progress nor failed, and the delivery rate leaves it
    out (it never went to a carrier)."""
    assert status_group(Status.CANCELLED) == "cancelled"
    assert [status_group(s) for s in (Status.SENT, Status.QUEUED, Status.PAUSED)] == [
        "in progress"
    ] * 3
    vol = Volume(0.0, 3600.0, 1, {g: [0] for g in GROUPS})
    vol.by_group["delivered"][0], vol.by_group["failed"][0] = 3, 1
    vol.by_group["cancelled"][0] = 100
    assert vol.rate() == [0.75] and vol.total == 104
