"""The dashboard's rollups, kept by the scheduler: per account and hour of creation, how many
messages ended in each (status, lane, connection, failure reason), and how long the delivered
ones took (a histogram), so the dashboard's 7-day view reads a few thousand rollup rows instead
of every message of the week (docs/panel.md, "Speed on 1,000,000 messages").

Exact, although statuses change long after a message's hour has closed (a delivery report
comes minutes or days later; a ``report_timeout`` expiry is replaced by a late handset report;
a scheduled or paused message waits for days):

- an hour is rolled once it has been closed for :data:`SETTLE_DELAY_S`: its messages past the
  carrier (final, or ``sent``) are counted; those still on their way (scheduled, queued,
  retrying, paused, sending) are listed by id in ``dashboard_pending``, and the dashboard reads
  them live from ``messages`` (by primary key) until the scheduler counts them
  (:func:`settle_pending`, at most every minute, in one transaction);
- a counted message changes only through a delivery report (``sent`` → final, or a real report
  replacing our ``report_timeout`` expiry) or our expiry of an unreported ``sent`` message
  (:mod:`dispatcher.store.reports`). Those write, in their own transaction and only for
  messages created more than :data:`REOPEN_AFTER_S` before (late reports: rare, reports come
  within seconds), a pending row that says what the message was counted as
  (:func:`reopen`); the dashboard takes that off the counts and reads the message live, until
  the scheduler counts it again. The roll's delay (an hour after the close) exceeds
  :data:`REOPEN_AFTER_S` by 30 minutes: a report committed after an hour's roll started was
  applied at most 30 minutes before, so it reopens what the roll counted;
- hours not rolled yet, and those before the rollup's start, are read from ``messages``.

Each job runs in one ``REPEATABLE READ`` transaction on PostgreSQL (one snapshot: a message is
either counted or pending, never both or neither; a pending row a report touches meanwhile
makes the job fail and run again), and opens with a compare-and-set on the one
``dashboard_rollup`` row, so two schedulers (a lease handed over mid-run) cannot roll an hour
or count a message twice. The send path writes nothing for this: no trigger, no extra row or
index entry per message.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Integer,
    and_,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    not_,
    select,
    update,
)

from dispatcher.contract import FINAL_STATUSES, Status
from dispatcher.store.db import translated
from dispatcher.store.schema import (
    accounts,
    dashboard_counts,
    dashboard_delivery,
    dashboard_pending,
    dashboard_rollup,
    messages,
)
from dispatcher.store.sql import dialect_insert

HOUR = 3600.0
# An hour is rolled this long after it closed: its messages have mostly become final, and a
# message's created_at is its acceptance time, committed within seconds.
SETTLE_DELAY_S = 3600.0
# A new rollup starts this far back: the dashboard's longest view is 7 days (older hours
# are read from the messages, as before).
BACKFILL_S = 8 * 86400.0
# A report or expiry that changes a message created more than this long before it reopens it
# (must stay below SETTLE_DELAY_S by more than any writer's transaction takes).
REOPEN_AFTER_S = 1800.0
# Pending messages are re-checked at most this often, this many at a time.
RECHECK_EVERY_S = 60.0
RECHECK_LIMIT = 20_000
# Our own guess after the report grace period (dispatcher/store/reports.py); a real report
# still replaces it.
REPORT_TIMEOUT = "report_timeout"
# Time-to-delivery buckets: bucket 0 is under 0.1 s, bucket b >= 1 is
# [0.1 * 10^((b-1)/50), 0.1 * 10^(b/50)) seconds (4.7 % wide; its middle is within 2.3 % of
# anything in it).
MIN_S = 0.1
PER_DECADE = 50
ROW = 1  # the id of the one dashboard_rollup row
FAILED = frozenset({Status.UNDELIVERED, Status.EXPIRED, Status.REJECTED, Status.FAILED})


def counted(m: Any = messages.c) -> ColumnElement[bool]:
    """Messages the rollup counts: past the carrier (final, or ``sent``). What changes them
    afterwards reopens them (:func:`reopen`); the others are read live."""
    return m.status.in_(sorted({*FINAL_STATUSES, Status.SENT}))


def reason(m: Any = messages.c) -> ColumnElement[str]:
    """The failure reason the dashboard shows: error code, else the carrier's report status,
    else the status; "" for statuses that are not failures."""
    return case(
        (m.status.in_(sorted(FAILED)), func.coalesce(m.error_code, m.report_stat, m.status)),
        else_=literal(""),
    )


def took(m: Any = messages.c) -> ColumnElement[float]:
    """Seconds from acceptance to the delivery report."""
    return m.final_at - m.created_at


def bucket(seconds: ColumnElement[float]) -> ColumnElement[int]:
    """The time-to-delivery bucket of ``seconds``, in SQL (both dialects have ``log10``)."""
    return case(
        (seconds < MIN_S, 0),
        else_=cast(1 + func.floor(func.log10(seconds / MIN_S) * PER_DECADE), Integer),
    )


def representative(b: int) -> float:
    """The value a bucket stands for: its geometric middle (half of 0.1 s for bucket 0)."""
    if b <= 0:
        return MIN_S / 2
    return MIN_S * 10 ** ((b - 0.5) / PER_DECADE)


def histogram_percentiles(hist: dict[int, int], wanted: tuple[float, ...]) -> dict[float, float]:
    """Nearest-rank percentiles of the values a bucket histogram counts, each as its bucket's
    representative (empty histogram: nothing)."""
    total = sum(hist.values())
    if not total:
        return {}
    out: dict[float, float] = {}
    order = sorted(b for b, n in hist.items() if n)
    for p in wanted:
        rank = max(1, math.ceil(p / 100 * total))
        run = 0
        for b in order:
            run += hist[b]
            if run >= rank:
                out[p] = representative(b)
                break
    return out


@dataclass(frozen=True, slots=True)
class Window:
    """The hours ``[rolled_from, rolled_until)`` that are rolled up, for every account."""

    rolled_from: float
    rolled_until: float


def window(conn: Connection) -> Window | None:
    """What is rolled up (``None`` before the scheduler's first run or when nothing is yet)."""
    r = dashboard_rollup.c
    row = conn.execute(select(r.rolled_from, r.rolled_until).where(r.id == ROW)).first()
    if row is None or row.rolled_until <= row.rolled_from:
        return None
    return Window(float(row.rolled_from), float(row.rolled_until))


def floor_hour(t: float) -> float:
    """The start of the hour ``t`` is in."""
    return math.floor(t / HOUR) * HOUR


@dataclass
class RollupRun:
    """What one run of the scheduler's rollup job did."""

    hours: int = 0  # hours rolled (every account)
    settled: int = 0  # pending messages moved into the counts
    behind_s: float = 0.0  # now − the end of the rolled hours


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A transaction that sees one snapshot of the log (PostgreSQL ``REPEATABLE READ``; a
    SQLite write transaction holds the database's one write lock, which is as good)."""
    with translated(), engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


def ensure_started(conn: Connection, now: float) -> Window:
    """The rollup's row, created at the first run: nothing rolled, starting
    :data:`BACKFILL_S` back."""
    r = dashboard_rollup.c
    row = conn.execute(select(r.rolled_from, r.rolled_until).where(r.id == ROW)).first()
    if row is None:
        start = floor_hour(now - BACKFILL_S)
        conn.execute(
            dialect_insert(conn, dashboard_rollup)
            .values(id=ROW, rolled_from=start, rolled_until=start, checked_at=0.0)
            .on_conflict_do_nothing(index_elements=["id"])
        )
        row = conn.execute(select(r.rolled_from, r.rolled_until).where(r.id == ROW)).one()
    return Window(float(row.rolled_from), float(row.rolled_until))


def roll_hour(conn: Connection, hour: float) -> bool:
    """Roll ``[hour, hour + 1 h)`` for every account, in the caller's snapshot transaction:
    messages past the carrier into the counts and the histogram, the others into the pending
    list. False (and nothing done) when ``hour`` is not the next one to roll."""
    r = dashboard_rollup.c
    moved = conn.execute(
        update(dashboard_rollup)
        .where(and_(r.id == ROW, r.rolled_until == hour))
        .values(rolled_until=hour + HOUR)
    ).rowcount
    if not moved:
        return False
    # Reopened before their hour was rolled: counted below as they are now (a report that
    # commits after this snapshot writes its row anew, unseen here).
    conn.execute(delete(dashboard_pending).where(dashboard_pending.c.hour == hour))
    # Every message belongs to an account (they are never deleted).
    ids = [int(i) for i in conn.execute(select(accounts.c.id)).scalars()]
    if not ids:
        return True
    m = messages.c
    # The (account_id, created_at) index, account by account (no index leads with the time).
    in_hour = and_(m.account_id.in_(ids), m.created_at >= hour, m.created_at < hour + HOUR)
    connection = func.coalesce(m.connection, "")
    why = reason(m)
    conn.execute(
        insert(dashboard_counts).from_select(
            ["account_id", "hour", "status", "lane", "connection", "reason", "n"],
            select(m.account_id, literal(hour), m.status, m.lane, connection, why, func.count())
            .where(and_(in_hour, counted(m)))
            .group_by(m.account_id, m.status, m.lane, connection, why),
        )
    )
    b = bucket(took(m))
    conn.execute(
        insert(dashboard_delivery).from_select(
            ["account_id", "hour", "bucket", "n"],
            select(m.account_id, literal(hour), b, func.count())
            .where(and_(in_hour, m.status == Status.DELIVERED, m.final_at.is_not(None)))
            .group_by(m.account_id, b),
        )
    )
    conn.execute(
        insert(dashboard_pending).from_select(
            ["message_id", "account_id", "hour"],
            select(m.id, m.account_id, literal(hour)).where(and_(in_hour, not_(counted(m)))),
        )
    )
    return True


@dataclass(frozen=True, slots=True)
class Changed:
    """A message a report or our expiry moved, as it was before."""

    id: str
    account_id: int
    created_at: float
    lane: str
    connection: str | None
    status: str
    error_code: str | None
    report_stat: str | None


def reopen(conn: Connection, changed: list[Changed], now: float) -> int:
    """In the writer's transaction: list the messages created more than
    :data:`REOPEN_AFTER_S` before ``now`` as pending, with what they were counted as (an
    hour not rolled yet drops the row when it is rolled). A message already pending keeps its
    row (touched, so a scheduler job reading it meanwhile fails and runs again). How many."""
    late = [c for c in changed if c.created_at < now - REOPEN_AFTER_S]
    if not late:
        return 0
    rows = [
        {
            "message_id": c.id,
            "account_id": c.account_id,
            "hour": floor_hour(c.created_at),
            "counted_status": c.status,
            "counted_lane": c.lane,
            "counted_connection": c.connection or "",
            "counted_reason": (c.error_code or c.report_stat or c.status)
            if c.status in FAILED
            else "",
        }
        for c in late
    ]
    stmt = dialect_insert(conn, dashboard_pending)
    stmt = stmt.on_conflict_do_update(
        index_elements=["message_id"], set_={"hour": stmt.excluded.hour}
    )
    conn.execute(stmt, rows)
    return len(rows)


def settle_pending(conn: Connection, now: float, limit: int = RECHECK_LIMIT) -> int:
    """Count the pending messages of rolled hours that are past the carrier now (taking off
    what a reopened one was counted as), in the caller's snapshot transaction; how many.
    Nothing when another run checked less than :data:`RECHECK_EVERY_S` ago."""
    r = dashboard_rollup.c
    turn = conn.execute(
        update(dashboard_rollup)
        .where(and_(r.id == ROW, r.checked_at <= now - RECHECK_EVERY_S))
        .values(checked_at=now)
    ).rowcount
    if not turn:
        return 0
    state = conn.execute(select(r.rolled_from, r.rolled_until).where(r.id == ROW)).one()
    p, m = dashboard_pending.c, messages.c
    delivered = and_(m.status == Status.DELIVERED, m.final_at.is_not(None))
    rows = conn.execute(
        select(
            p.message_id,
            p.account_id,
            p.hour,
            p.counted_status,
            p.counted_lane,
            p.counted_connection,
            p.counted_reason,
            m.status,
            m.lane,
            func.coalesce(m.connection, ""),
            reason(m),
            case((delivered, bucket(took(m))), else_=None),
        )
        .select_from(dashboard_pending.join(messages, m.id == p.message_id))
        .where(and_(p.hour < state.rolled_until, counted(m)))
        .limit(limit)
    ).all()
    if not rows:
        return 0
    counts: dict[tuple[Any, ...], int] = {}
    hist: dict[tuple[Any, ...], int] = {}
    for row in rows:
        (_id, account_id, hour, was, was_lane, was_conn, was_why, status, lane, conn_, why, b) = row
        if hour < state.rolled_from:
            continue  # an hour never rolled: nothing counted, only the row goes
        base = (int(account_id), float(hour))
        if was is not None:
            key = (*base, was, was_lane, was_conn, was_why)
            counts[key] = counts.get(key, 0) - 1
        key = (*base, status, lane, conn_, why)
        counts[key] = counts.get(key, 0) + 1
        if b is not None:
            hkey = (*base, int(b))
            hist[hkey] = hist.get(hkey, 0) + 1
    _add(
        conn,
        dashboard_counts,
        ["account_id", "hour", "status", "lane", "connection", "reason"],
        {k: n for k, n in counts.items() if n},
    )
    _add(conn, dashboard_delivery, ["account_id", "hour", "bucket"], hist)
    ids = [row[0] for row in rows]
    for i in range(0, len(ids), 500):
        conn.execute(delete(dashboard_pending).where(p.message_id.in_(ids[i : i + 500])))
    return len(ids)


def _add(conn: Connection, table: Any, keys: list[str], counts: dict[tuple[Any, ...], int]) -> None:
    """``n += count`` per key (inserted when new)."""
    if not counts:
        return
    stmt = dialect_insert(conn, table)
    stmt = stmt.on_conflict_do_update(index_elements=keys, set_={"n": table.c.n + stmt.excluded.n})
    conn.execute(stmt, [{**dict(zip(keys, k, strict=True)), "n": n} for k, n in counts.items()])


def run(engine: Engine, now: float, budget_s: float = 0.5) -> RollupRun:
    """The scheduler's rollup job: roll the hours that closed :data:`SETTLE_DELAY_S` ago
    (one transaction each, for up to ``budget_s`` after the first), then settle pending
    messages (at most every :data:`RECHECK_EVERY_S`)."""
    out = RollupRun()
    with snapshot(engine) as conn:
        until = ensure_started(conn, now).rolled_until
    deadline = time.monotonic() + budget_s
    while until + HOUR + SETTLE_DELAY_S <= now:
        with snapshot(engine) as conn:
            if not roll_hour(conn, until):
                break  # another scheduler is rolling
        out.hours += 1
        until += HOUR
        if time.monotonic() > deadline:
            break
    with snapshot(engine) as conn:
        out.settled = settle_pending(conn, now)
    out.behind_s = max(0.0, now - until)
    return out
