"""The dashboard: the account's traffic as charts (server-rendered SVG): messages per hour or
day by status and by lane, delivery rate, time to delivery, failures by reason, and for
operators the traffic per carrier connection. Every role may look."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import Connection

from dispatcher.panel import charts
from dispatcher.panel.web import in_db, render, viewer
from dispatcher.store.dashboard import (
    GROUPS,
    delivery_times,
    failure_reasons,
    per_connection,
    volume,
)

router = APIRouter(prefix="/panel", include_in_schema=False)
# range → (bucket seconds, buckets, label format)
RANGES = {"24h": (3600, 24, "%H:00"), "7d": (86400, 7, "%a %d")}


def _labels(start: float, bucket_s: int, n: int, fmt: str) -> list[str]:
    return [time.strftime(fmt, time.gmtime(start + i * bucket_s)) for i in range(n)]


@router.get("/dashboard")
async def dashboard(request: Request, period: str = "24h") -> Response:
    """Charts of the last 24 hours (per hour) or 7 days (per day)."""
    who = await viewer(request)
    chosen = period if period in RANGES else "24h"
    bucket_s, n, fmt = RANGES[chosen]
    now = time.time()
    start = (now // bucket_s + 1) * bucket_s - n * bucket_s  # the current bucket is the last
    until = start + n * bucket_s
    account_id = who.user.account_id
    operator = who.is_operator

    def load(conn: Connection) -> dict[str, Any]:
        return {
            "volume": volume(conn, account_id, start, n, bucket_s),
            "times": delivery_times(conn, account_id, start, until),
            "reasons": failure_reasons(conn, account_id, start, until),
            "connections": per_connection(conn, start, until) if operator else None,
        }

    data = await in_db(request, load)
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
            "Messages per connection (every account)",
            list(connections),
            {g: [connections[c][g] for c in connections] for g in GROUPS},
        )
        if connections is not None
        else None,
    )
