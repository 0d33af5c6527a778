"""The dashboard: the account's traffic as charts (server-rendered SVG): messages per hour or
day by status and by lane, delivery rate, time to delivery, failures by reason, and for
operators the traffic per carrier connection. Every role may look."""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from redis.exceptions import RedisError
from sqlalchemy import Connection

from dispatcher.panel import charts
from dispatcher.panel.sessions import PREFIX
from dispatcher.panel.web import in_db, render, state, viewer
from dispatcher.store.dashboard import (
    GROUPS,
    Volume,
    delivery_times,
    failure_reasons,
    per_connection,
    period_range,
    volume,
)

router = APIRouter(prefix="/panel", include_in_schema=False)
# range → (bucket seconds, buckets, label format)
RANGES = {"24h": (3600, 24, "%H:00"), "7d": (86400, 7, "%a %d")}
# How long a computed dashboard is reused. The 24-hour view is always fresh; the 7-day view is
# computed at most every 10 minutes per account: it reads the scheduler's hourly rollup
# (dispatcher/store/rollups.py), but reads a week of messages when the rollup is not kept
# (no scheduler running), about 0.5-1 s on an account of 1,000,000 messages a month
# (docs/panel.md).
CACHE_S = {"24h": 0, "7d": 600}


async def _cached(request: Request, key: str, ttl: int) -> dict[str, Any] | None:
    if not ttl:
        return None
    try:
        raw = await state(request).redis.get(key)
    except RedisError:
        return None  # the cache is an optimisation: compute instead
    if raw is None:
        return None
    data = orjson.loads(raw)
    data["volume"] = Volume(**data["volume"])
    data["times"] = {float(k): v for k, v in data["times"].items()}
    data["reasons"] = [tuple(r) for r in data["reasons"]]
    data["cached"] = True
    return dict(data)


async def _store(request: Request, key: str, ttl: int, data: dict[str, Any]) -> None:
    if not ttl:
        return
    plain = {
        **data,
        "volume": asdict(data["volume"]),
        "times": {str(k): v for k, v in data["times"].items()},
    }
    with contextlib.suppress(RedisError):
        await state(request).redis.set(key, orjson.dumps(plain), ex=ttl)


def _labels(start: float, bucket_s: int, n: int, fmt: str) -> list[str]:
    return [time.strftime(fmt, time.gmtime(start + i * bucket_s)) for i in range(n)]


@router.get("/dashboard")
async def dashboard(request: Request, period: str = "24h") -> Response:
    """Charts of the last 24 hours (per hour) or 7 days (per day)."""
    who = await viewer(request)
    chosen = period if period in RANGES else "24h"
    bucket_s, n, fmt = RANGES[chosen]
    now = time.time()
    start, until = period_range(now, bucket_s, n)  # the current bucket is the last
    account_id = who.user.account_id
    operator = who.is_operator

    def load(conn: Connection) -> dict[str, Any]:
        return {
            "volume": volume(conn, account_id, start, n, bucket_s),
            "times": delivery_times(conn, account_id, start, until),
            "reasons": failure_reasons(conn, account_id, start, until),
            # The last hour only: every account's messages.
            "connections": per_connection(conn, now - 3600, now) if operator else None,
        }

    cache_key = f"{PREFIX}dash:{account_id}:{chosen}:{int(start)}:{int(operator)}"
    data = await _cached(request, cache_key, CACHE_S[chosen])
    if data is None:
        data = await in_db(request, load)
        await _store(request, cache_key, CACHE_S[chosen], data)
    vol = data["volume"]
    labels = _labels(start, bucket_s, n, fmt)
    per = "hour" if chosen == "24h" else "day"
    connections = data["connections"]
    return render(
        request,
        "dashboard.html",
        who=who,
        title="Dashboard",
        chosen=chosen,
        ranges=list(RANGES),
        total=vol.total,
        cached=data.get("cached", False),
        times=data["times"],
        by_status=charts.stacked_bars(
            f"Messages per {per} by status", labels, {g: vol.by_group[g] for g in GROUPS}
        ),
        by_lane=charts.stacked_bars(f"Messages per {per} by lane", labels, vol.by_lane),
        rate=charts.lines(
            f"Delivery rate per {per}",
            labels,
            {"delivered": vol.rate()},
            "delivered / final",
            percent=True,
            y_max=1.0,
        ),
        reasons=charts.hbars("Failures by reason", data["reasons"]),
        by_connection=charts.stacked_bars(
            "Messages per connection in the last hour (every account)",
            list(connections),
            {g: [connections[c][g] for c in connections] for g in GROUPS},
        )
        if connections is not None
        else None,
    )
