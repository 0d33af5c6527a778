"""The panel's dashboard numbers: messages per hour or day by status and lane, delivery rate,
time to delivery, failures by reason, per connection (operators), a campaign's progress.

Every account query is bounded by the account and a time range. The hours the scheduler has
rolled up (:mod:`dispatcher.store.rollups`: counts per account, hour of creation, status, lane,
connection and failure reason, and a histogram of delivery times) are read from the rollup,
plus, live and by primary key, their messages that were still on their way when they were
rolled; a counted message that a late report changed since is taken off the counts as it was
counted and read live too. The rest of the range (the last hour or two, or anything before the
rollup's start) is read from ``messages`` on ``(account_id, created_at)``, grouped in the
database. All of it in one statement, so one snapshot: the numbers are exactly what a live
count of ``messages`` gives, whatever the scheduler has rolled (delivery-time percentiles are
given as the middle of their 4.7 %-wide bucket, rolled up or not). Timings on 1,000,000
messages: ``bench/panel_search.py`` (docs/panel.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, func, select, union_all

from dispatcher.contract import FINAL_STATUSES, Status
from dispatcher.store import rollups
from dispatcher.store.rollups import FAILED, HOUR
from dispatcher.store.schema import (
    accounts,
    dashboard_counts,
    dashboard_delivery,
    dashboard_pending,
    messages,
)

GROUPS = ("delivered", "in progress", "failed", "cancelled")
PERCENTILES = (50.0, 90.0, 99.0)


def status_group(status: str) -> str:
    """delivered | failed (final, not delivered) | cancelled (by the customer, never sent) |
    in progress (everything else)."""
    if status == Status.DELIVERED:
        return "delivered"
    if status == Status.CANCELLED:
        return "cancelled"
    return "failed" if status in FAILED else "in progress"


def period_range(now: float, bucket_s: float, buckets: int) -> tuple[float, float]:
    """The range the dashboard shows for ``buckets`` buckets of ``bucket_s`` ending with the
    one ``now`` is in (UTC boundaries)."""
    start = (now // bucket_s + 1) * bucket_s - buckets * bucket_s
    return start, start + buckets * bucket_s


@dataclass(frozen=True, slots=True)
class Parts:
    """How a range is read: ``live`` ranges from ``messages``, ``rolled`` hours (or None)
    from the rollup and its pending messages."""

    live: list[tuple[float, float]]
    rolled: tuple[float, float] | None


def parts(conn: Connection, start: float, until: float, use_rollup: bool = True) -> Parts:
    """Split ``[start, until)`` into rolled whole hours and live ranges."""
    w = rollups.window(conn) if use_rollup else None
    if w is not None:
        lo = math.ceil(max(start, w.rolled_from) / HOUR) * HOUR
        hi = rollups.floor_hour(min(until, w.rolled_until))
        if lo < hi:
            live = [(a, b) for a, b in ((start, lo), (hi, until)) if a < b]
            return Parts(live, (lo, hi))
    return Parts([(start, until)], None)


def _in(column: Any, lo: float, hi: float) -> Any:
    return and_(column >= lo, column < hi)


def _pending_messages(account_id: int, rolled: tuple[float, float]) -> Any:
    """``FROM dashboard_pending JOIN messages`` for the account's pending messages of the
    rolled hours (the caller adds its columns)."""
    p, m = dashboard_pending.c, messages.c
    return (
        select()
        .select_from(dashboard_pending.join(messages, m.id == p.message_id))
        .where(and_(p.account_id == account_id, _in(p.hour, *rolled)))
    )


def _reopened(account_id: int, rolled: tuple[float, float]) -> Any:
    """The account's pending rows of the rolled hours for messages the rollup counted and a
    report changed since: what they were counted as comes off the counts (the message itself
    is read live with the other pending ones)."""
    p = dashboard_pending.c
    return and_(p.account_id == account_id, _in(p.hour, *rolled), p.counted_status.is_not(None))


def _rows(conn: Connection, selects: list[Any]) -> list[Any]:
    """Run the parts as one statement (one snapshot: a message the scheduler moves from the
    pending list into the counts meanwhile is counted once)."""
    if len(selects) == 1:
        return list(conn.execute(selects[0]).all())
    return list(conn.execute(union_all(*selects)).all())


@dataclass
class Volume:
    """Messages per time bucket, by status group and by lane."""

    start: float
    bucket_s: float
    buckets: int
    by_group: dict[str, list[int]] = field(default_factory=dict)
    by_lane: dict[str, list[int]] = field(default_factory=dict)

    def rate(self) -> list[float | None]:
        """Delivered / final per bucket (``None`` where nothing is final yet)."""
        out: list[float | None] = []
        for i in range(self.buckets):
            ok = self.by_group["delivered"][i]
            final = ok + self.by_group["failed"][i]
            out.append(ok / final if final else None)
        return out

    @property
    def total(self) -> int:
        """Messages in the range."""
        return sum(sum(v) for v in self.by_group.values())


def volume(
    conn: Connection,
    account_id: int,
    start: float,
    buckets: int,
    bucket_s: float,
    use_rollup: bool = True,
) -> Volume:
    """Messages created in ``[start, start + buckets * bucket_s)`` per bucket. The rollup
    serves buckets of whole hours starting on the hour (the panel's)."""
    m, c = messages.c, dashboard_counts.c
    aligned = start % HOUR == 0 and bucket_s % HOUR == 0
    split = parts(conn, start, start + buckets * bucket_s, use_rollup and aligned)
    selects: list[Any] = []
    for lo, hi in split.live:
        b = func.floor((m.created_at - start) / bucket_s)
        selects.append(
            select(b.label("b"), m.status, m.lane, func.count().label("n"))
            .where(and_(m.account_id == account_id, _in(m.created_at, lo, hi)))
            .group_by(b, m.status, m.lane)
        )
    if split.rolled is not None:
        b = func.floor((c.hour - start) / bucket_s)
        selects.append(
            select(b, c.status, c.lane, func.sum(c.n))
            .where(and_(c.account_id == account_id, _in(c.hour, *split.rolled)))
            .group_by(b, c.status, c.lane)
        )
        b = func.floor((m.created_at - start) / bucket_s)
        selects.append(
            _pending_messages(account_id, split.rolled)
            .add_columns(b, m.status, m.lane, func.count())
            .group_by(b, m.status, m.lane)
        )
        p = dashboard_pending.c
        b = func.floor((p.hour - start) / bucket_s)
        selects.append(
            select(b, p.counted_status, p.counted_lane, -func.count())
            .where(_reopened(account_id, split.rolled))
            .group_by(b, p.counted_status, p.counted_lane)
        )
    out = Volume(start, bucket_s, buckets)
    out.by_group = {g: [0] * buckets for g in GROUPS}
    out.by_lane = {lane: [0] * buckets for lane in ("priority", "bulk")}
    for b, status, lane, n in _rows(conn, selects):
        i = int(b)
        if 0 <= i < buckets:
            out.by_group[status_group(status)][i] += int(n)
            out.by_lane.setdefault(lane, [0] * buckets)[i] += int(n)
    return out


def delivery_times(
    conn: Connection, account_id: int, start: float, until: float, use_rollup: bool = True
) -> dict[float, float]:
    """p50/p90/p99 seconds from acceptance to the delivery report, for messages delivered
    among those created in the range: nearest rank over the delivery-time buckets of
    :mod:`dispatcher.store.rollups`, each given as its bucket's middle (within 2.3 % of the
    exact percentile)."""
    m, d = messages.c, dashboard_delivery.c
    delivered = and_(m.status == Status.DELIVERED, m.final_at.is_not(None))
    split = parts(conn, start, until, use_rollup)
    selects: list[Any] = []
    for lo, hi in split.live:
        b = rollups.bucket(rollups.took(m))
        selects.append(
            select(b, func.count())
            .where(and_(m.account_id == account_id, _in(m.created_at, lo, hi), delivered))
            .group_by(b)
        )
    if split.rolled is not None:
        selects.append(
            select(d.bucket, func.sum(d.n))
            .where(and_(d.account_id == account_id, _in(d.hour, *split.rolled)))
            .group_by(d.bucket)
        )
        b = rollups.bucket(rollups.took(m))
        selects.append(
            _pending_messages(account_id, split.rolled)
            .add_columns(b, func.count())
            .where(delivered)
            .group_by(b)
        )
    hist: dict[int, int] = {}
    for b, n in _rows(conn, selects):
        hist[int(b)] = hist.get(int(b), 0) + int(n)
    return rollups.histogram_percentiles(hist, PERCENTILES)


def failure_reasons(
    conn: Connection,
    account_id: int,
    start: float,
    until: float,
    limit: int = 8,
    use_rollup: bool = True,
) -> list[tuple[str, int]]:
    """The commonest reasons of failed messages created in the range (most first, then by
    name): the error code, else the carrier's report status, else the status itself."""
    m, c = messages.c, dashboard_counts.c
    failed = m.status.in_(sorted(FAILED))
    split = parts(conn, start, until, use_rollup)
    selects: list[Any] = []
    for lo, hi in split.live:
        why = rollups.reason(m)
        selects.append(
            select(why, func.count())
            .where(and_(m.account_id == account_id, _in(m.created_at, lo, hi), failed))
            .group_by(why)
        )
    if split.rolled is not None:
        selects.append(
            select(c.reason, func.sum(c.n))
            .where(
                and_(
                    c.account_id == account_id,
                    _in(c.hour, *split.rolled),
                    c.status.in_(sorted(FAILED)),
                )
            )
            .group_by(c.reason)
        )
        why = rollups.reason(m)
        selects.append(
            _pending_messages(account_id, split.rolled)
            .add_columns(why, func.count())
            .where(failed)
            .group_by(why)
        )
        p = dashboard_pending.c
        selects.append(
            select(p.counted_reason, -func.count())
            .where(
                and_(
                    _reopened(account_id, split.rolled),
                    p.counted_status.in_(sorted(FAILED)),
                )
            )
            .group_by(p.counted_reason)
        )
    total: dict[str, int] = {}
    for why, n in _rows(conn, selects):
        total[str(why)] = total.get(str(why), 0) + int(n)
    found = [(why, n) for why, n in total.items() if n]
    return sorted(found, key=lambda kv: (-kv[1], kv[0]))[:limit]


def per_connection(conn: Connection, start: float, until: float) -> dict[str, dict[str, int]]:
    """For operators, every account: messages created in the range, per carrier connection
    and status group. Filtered account by account on ``(account_id, created_at)`` (the index
    every panel query uses; no index leads with the time alone), so a short range stays cheap
    however large the log."""
    m = messages.c
    ids = [int(i) for i in conn.execute(select(accounts.c.id)).scalars()]
    if not ids:
        return {}
    rows = conn.execute(
        select(m.connection, m.status, func.count())
        .where(
            and_(
                m.account_id.in_(ids),
                m.created_at >= start,
                m.created_at < until,
                m.connection.is_not(None),
            )
        )
        .group_by(m.connection, m.status)
    ).all()
    out: dict[str, dict[str, int]] = {}
    for connection, status, n in rows:
        groups = out.setdefault(str(connection), dict.fromkeys(GROUPS, 0))
        groups[status_group(status)] += int(n)
    return out


def campaign_curve(
    conn: Connection, account_id: int, submission_ids: Sequence[str], points: int = 40
) -> list[tuple[float, int, int]]:
    """A campaign's progress over time: ``(time, messages past the carrier, messages final)``
    cumulated at ``points`` moments from its first message to its last change."""
    if not submission_ids:
        return []
    m = messages.c
    where = and_(m.account_id == account_id, m.submission_id.in_(list(submission_ids)))
    first, last = conn.execute(
        select(func.min(m.created_at), func.max(m.status_at)).where(where)
    ).one()
    if first is None:
        return []
    span = max(float(last) - float(first), 1.0)
    step = span / points
    passed = func.coalesce(m.sent_at, m.final_at)
    rows = conn.execute(
        select(
            func.floor((passed - first) / step).label("b"),
            m.status.in_(sorted(FINAL_STATUSES)).label("is_final"),
            func.count(),
        )
        .where(and_(where, passed.is_not(None)))
        .group_by("b", "is_final")
    ).all()
    past = [0] * (points + 1)
    final = [0] * (points + 1)
    for b, is_final, n in rows:
        i = min(points, max(0, int(b)))
        past[i] += int(n)
        if is_final:
            final[i] += int(n)
    out = []
    run_past = run_final = 0
    for i in range(points + 1):
        run_past += past[i]
        run_final += final[i]
        out.append((float(first) + i * step, run_past, run_final))
    return out
