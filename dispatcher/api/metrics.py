"""The API process's metrics: requests by route and status, accept latency, messages accepted.

Names follow Prometheus conventions: ``smsdispatch_`` prefix, base units (seconds), ``_total``
on counters, and bounded labels only: ``route`` is the route *template*
(``/v2.1/sms/{message_id}``, never a concrete id), ``lane`` and ``status`` come from the
contract's enums. With several uvicorn processes (``SMSDISPATCH_API_WORKERS`` > 1) each process
writes its values to ``PROMETHEUS_MULTIPROC_DIR`` (see :mod:`dispatcher.ops.metrics_dir`) and any
of them serves the sum on ``/metrics``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any, Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.registry import REGISTRY
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match

# Request durations of a JSON API: most answers take milliseconds, large sends up to seconds.
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED = "unmatched"

API_REQUESTS = Counter(
    "smsdispatch_api_requests",
    "HTTP requests answered by the API, by route template, method and status code.",
    ["route", "method", "status"],
)
API_REQUEST_DURATION = Histogram(
    "smsdispatch_api_request_duration_seconds",
    "Time from receiving an API request to the end of its answer, by route template.",
    ["route", "method"],
    buckets=REQUEST_BUCKETS,
)
MESSAGES_ACCEPTED = Counter(
    "smsdispatch_messages_accepted",
    "Messages accepted by the API and stored in the log, by lane and first status "
    "(queued, or scheduled for later).",
    ["lane", "status"],
)
RECIPIENTS_UNPAID = Counter(
    "smsdispatch_recipients_unpaid",
    "Recipients refused at accept by billing (docs/prices.md), by reason "
    "(our error code: insufficient_balance or no_price).",
    ["reason"],
)
ACCEPT_DURATION = Histogram(
    "smsdispatch_accept_duration_seconds",
    "Time to accept a send request (validate, commit, publish), by lane.",
    ["lane"],
    buckets=REQUEST_BUCKETS,
)


class _HasStatus(Protocol):
    status: str


def record_accepted(lane: str, messages: Iterable[_HasStatus], seconds: float) -> None:
    """Count messages a send request stored (not duplicates) and how long accepting took."""
    counts: dict[str, int] = {}
    for m in messages:
        counts[str(m.status)] = counts.get(str(m.status), 0) + 1
    for status, n in counts.items():
        MESSAGES_ACCEPTED.labels(lane, status).inc(n)
    ACCEPT_DURATION.labels(lane).observe(max(0.0, seconds))


def route_template(scope: dict[str, Any]) -> str:
    """The template of the route that handled (or would handle) the request."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    # Answered before routing (the request guard's 413/415): find the route it was meant for.
    app = scope.get("app")
    for candidate in getattr(getattr(app, "router", None), "routes", ()):
        try:
            match, _ = candidate.matches(scope)
        except (KeyError, TypeError):  # pragma: no cover - defensive: odd scopes
            continue
        if match == Match.FULL:
            return str(getattr(candidate, "path", UNMATCHED))
    return UNMATCHED


class MetricsMiddleware:
    """ASGI middleware counting requests and timing them; add it last so it is outermost."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = route_template(scope)
            method = str(scope.get("method", "GET"))
            API_REQUESTS.labels(route, method, str(status)).inc()
            API_REQUEST_DURATION.labels(route, method).observe(time.perf_counter() - started)


def registry() -> CollectorRegistry:
    """What ``/metrics`` serves: this process, or every process of the API when multiprocess."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return REGISTRY
    reg = CollectorRegistry()
    multiprocess.MultiProcessCollector(reg, path=path)
    return reg


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    return generate_latest(registry()), CONTENT_TYPE_LATEST


async def metrics_endpoint(_request: Request) -> Response:
    """``GET /metrics`` (mount with ``app.add_route("/metrics", metrics_endpoint, ...)``)."""
    body, content_type = render()
    return Response(body, media_type=content_type)


def record_unpaid(refused: Iterable[tuple[str, str]]) -> None:
    """Count recipients billing refused, by error code."""
    counts: dict[str, int] = {}
    for _phone, code in refused:
        counts[code] = counts.get(code, 0) + 1
    for code, n in counts.items():
        RECIPIENTS_UNPAID.labels(code).inc(n)
