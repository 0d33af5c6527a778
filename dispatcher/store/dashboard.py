"""The panel's dashboard numbers: messages per hour or day by status and lane, delivery rate,
time to delivery, failures by reason, per connection (operators), a campaign's progress.

Every account query is bounded by the account and a time range on ``(account_id,
created_at)``, the index the message search uses, and groups in the database: the panel
fetches at most a few hundred rows whatever the volume. Timings on 1,000,000 messages:
``bench/panel_search.py`` (docs/panel.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, and_, func, select

from dispatcher.contract import FINAL_STATUSES, Status
from dispatcher.store.schema import accounts, messages

FAILED = frozenset(
    {Status.UNDELIVERED, Status.EXPIRED, Status.REJECTED, Status.FAILED}
)  # the final statuses that are not "delivered"
GROUPS = ("delivered", "in progress", "failed")


def status_group(status: str) -> str:
    """delivered | failed (final, not delivered) | in progress (everything else)."""
    if status == Status.DELIVERED:
        return "delivered"
    return "failed" if status in FAILED else "in progress"


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
    conn: Connection, account_id: int, start: float, buckets: int, bucket_s: float
) -> Volume:
    """Messages created in ``[start, start + buckets * bucket_s)`` per bucket."""
    m = messages.c
    bucket = func.floor((m.created_at - start) / bucket_s)
    rows = conn.execute(
        select(bucket.label("b"), m.status, m.lane, func.count())
        .where(
            and_(
                m.account_id == account_id,
                m.created_at >= start,
                m.created_at < start + buckets * bucket_s,
            )
        )
        .group_by(bucket, m.status, m.lane)
    ).all()
    out = Volume(start, bucket_s, buckets)
    out.by_group = {g: [0] * buckets for g in GROUPS}
    out.by_lane = {lane: [0] * buckets for lane in ("priority", "bulk")}
    for b, status, lane, n in rows:
        i = int(b)
        if 0 <= i < buckets:
            out.by_group[status_group(status)][i] += int(n)
            out.by_lane.setdefault(lane, [0] * buckets)[i] += int(n)
    return out


def percentiles(values: Sequence[float], wanted: Sequence[float]) -> dict[float, float]:
    """Nearest-rank percentiles of ``values`` (empty: nothing)."""
    if not values:
        return {}
    ordered = sorted(values)
    return {p: ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] for p in wanted}


def delivery_times(
    conn: Connection, account_id: int, start: float, until: float
) -> dict[float, float]:
    """p50/p90/p99 seconds from acceptance to the delivery report, for messages delivered
    among those created in the range (PostgreSQL computes them; elsewhere, Python)."""
    m = messages.c
    took = m.final_at - m.created_at
    where = and_(
        m.account_id == account_id,
        m.created_at >= start,
        m.created_at < until,
        m.status == Status.DELIVERED,
        m.final_at.is_not(None),
    )
    wanted = (50.0, 90.0, 99.0)
    if conn.dialect.name == "postgresql":
        row = conn.execute(
            select(*(func.percentile_disc(p / 100).within_group(took) for p in wanted)).where(where)
        ).one()
        return {p: float(v) for p, v in zip(wanted, row, strict=True) if v is not None}
    rows = conn.execute(select(took).where(where)).scalars()
    return percentiles([float(x) for x in rows], wanted)


def failure_reasons(
    conn: Connection, account_id: int, start: float, until: float, limit: int = 8
) -> list[tuple[str, int]]:
    """The commonest reasons of failed messages created in the range: the error code, else
    the carrier's report status, else the status itself."""
    m = messages.c
    reason = func.coalesce(m.error_code, m.report_stat, m.status)
    rows = conn.execute(
        select(reason, func.count().label("n"))
        .where(
            and_(
                m.account_id == account_id,
                m.created_at >= start,
                m.created_at < until,
                m.status.in_(sorted(FAILED)),
            )
        )
        .group_by(reason)
        .order_by(func.count().desc())
        .limit(limit)
    ).all()
    return [(str(r), int(n)) for r, n in rows]


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
