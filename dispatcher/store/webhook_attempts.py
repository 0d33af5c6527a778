"""The webhooks lane's rows in the message log: claim deliveries, record their attempts, keep
each endpoint's health. Each function takes the caller's connection (one transaction: see
``workers/webhooks/store.py``, which runs them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from dispatcher.store.schema import webhook_attempts, webhook_deliveries, webhook_endpoints
from dispatcher.store.webhooks import DeliveryState, EndpointState, signing_secrets
from dispatcher.times import iso_ms
from dispatcher.webhooks.records import AttemptRecord, Claimed, Outcome, Verdict

FAILURES = frozenset({Verdict.RETRY, Verdict.REJECTED, Verdict.GONE})


def claim(conn: Connection, ids: Sequence[str], now: float, lease_s: float) -> list[Claimed]:
    """queued (or due pending) → sending, compare-and-set; the claims this caller won.

    ``next_attempt_at`` becomes the claim's deadline: a claim still ``sending`` after it is
    taken back by :func:`dispatcher.store.webhooks.recover_stale_deliveries`.
    """
    if not ids:
        return []
    d = webhook_deliveries.c
    rows = conn.execute(
        update(webhook_deliveries)
        .where(
            and_(
                d.id.in_(list(ids)),
                or_(
                    d.state == DeliveryState.QUEUED,
                    and_(d.state == DeliveryState.PENDING, d.next_attempt_at <= now),
                ),
            )
        )
        .values(state=DeliveryState.SENDING, attempts=d.attempts + 1, next_attempt_at=now + lease_s)
        .returning(
            d.id, d.account_id, d.event, d.url, d.url_secondary, d.payload, d.attempts, d.created_at
        )
    ).all()
    if not rows:
        return []
    secrets = signing_secrets(conn, {r.account_id for r in rows}, now)
    urls = {u for r in rows for u in (r.url, r.url_secondary) if u}
    e = webhook_endpoints.c
    known: dict[tuple[int, str], tuple[str, str | None]] = {
        (x.account_id, x.url): (x.state, x.reason)
        for x in conn.execute(
            select(e.account_id, e.url, e.state, e.reason).where(
                and_(e.account_id.in_({r.account_id for r in rows}), e.url.in_(urls))
            )
        )
    }
    out = []
    for r in rows:
        c = Claimed(
            r.id,
            r.account_id,
            r.event,
            r.url,
            r.url_secondary,
            r.payload,
            r.attempts,
            r.created_at,
            secrets[r.account_id],
        )
        c.endpoints = {u: known[(r.account_id, u)] for u in c.urls() if (r.account_id, u) in known}
        out.append(c)
    return out


def _insert_endpoints(conn: Connection, keys: set[tuple[int, str]], now: float) -> None:
    rows = [
        {
            "account_id": a,
            "url": u,
            "state": EndpointState.ACTIVE,
            "consecutive_failures": 0,
            "changed_at": now,
        }
        for a, u in sorted(keys)
    ]
    ins: Any = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(ins(webhook_endpoints).values(rows).on_conflict_do_nothing())


def _update_endpoint(
    conn: Connection,
    key: tuple[int, str],
    tries: list[AttemptRecord],
    now: float,
    suspend_after_s: float,
) -> None:
    """Apply this batch's results for one endpoint, oldest first."""
    e = webhook_endpoints.c
    where = and_(e.account_id == key[0], e.url == key[1])
    tries.sort(key=lambda t: t.at)
    last_ok = max((i for i, t in enumerate(tries) if t.verdict == Verdict.DELIVERED), default=-1)
    failed = [t for t in tries[last_ok + 1 :] if t.verdict in FAILURES]
    first_failure = failed[0].at if failed else None
    if last_ok >= 0:
        conn.execute(
            update(webhook_endpoints)
            .where(where)
            .values(consecutive_failures=len(failed), failing_since=first_failure)
        )
    elif failed:
        conn.execute(
            update(webhook_endpoints)
            .where(where)
            .values(
                consecutive_failures=e.consecutive_failures + len(failed),
                failing_since=func.coalesce(e.failing_since, first_failure),
            )
        )
    if any(t.verdict == Verdict.GONE for t in failed):
        conn.execute(
            update(webhook_endpoints)
            .where(and_(where, e.state != EndpointState.DISABLED))
            .values(
                state=EndpointState.DISABLED,
                changed_at=now,
                reason=f"answered 410 Gone at {iso_ms(now)}",
            )
        )
    elif failed:
        last = failed[-1]
        conn.execute(
            update(webhook_endpoints)
            .where(
                and_(
                    where,
                    e.state == EndpointState.ACTIVE,
                    e.failing_since <= now - suspend_after_s,
                )
            )
            .values(
                state=EndpointState.SUSPENDED,
                changed_at=now,
                reason=(
                    f"suspended at {iso_ms(now)}: no success for {suspend_after_s / 3600:g} h "
                    f"(last: {last.error or last.status_code})"
                ),
            )
        )


def record(
    conn: Connection, outcomes: Sequence[Outcome], now: float, suspend_after_s: float
) -> int:
    """Store the attempts, move the deliveries (only claims still ours), update endpoint
    health. Returns how many deliveries moved."""
    if not outcomes:
        return 0
    attempt_rows = [
        {
            "delivery_id": o.claimed.id,
            "at": a.at,
            "url": a.url,
            "status_code": a.status_code,
            "latency_ms": None if a.latency_ms is None else round(a.latency_ms, 2),
            "error": a.error[:64] if a.error else None,
            "body": a.body[:512] if a.body is not None else None,
        }
        for o in outcomes
        for a in o.attempts
    ]
    if attempt_rows:
        conn.execute(insert(webhook_attempts), attempt_rows)
    d = webhook_deliveries.c
    moved = 0
    for o in outcomes:
        moved += conn.execute(
            update(webhook_deliveries)
            .where(
                and_(
                    d.id == o.claimed.id,
                    d.state == DeliveryState.SENDING,
                    d.attempts == o.claimed.attempts,
                )
            )
            .values(
                state=o.state,
                next_attempt_at=o.next_attempt_at,
                delivered_at=o.delivered_at,
                last_status_code=o.last_status_code,
            )
        ).rowcount
    per_endpoint: dict[tuple[int, str], list[AttemptRecord]] = {}
    for o in outcomes:
        for a in o.attempts:
            if a.called and a.verdict != Verdict.REFUSED:
                per_endpoint.setdefault((o.claimed.account_id, a.url), []).append(a)
    if per_endpoint:
        _insert_endpoints(conn, set(per_endpoint), now)
        for key, tries in per_endpoint.items():
            _update_endpoint(conn, key, tries, now, suspend_after_s)
    return moved
