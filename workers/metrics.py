"""Worker-side metrics and the helpers that record them.

A Celery pool is one main process and several prefork children; the children do the work. With
``PROMETHEUS_MULTIPROC_DIR`` set before this module is imported (``workers.observability`` does
it in the main process, before the task modules are imported and the children forked) every
child writes its values to its own memory-mapped file, and the main process serves the sum of all
files on ``/metrics``. Imported without that variable (unit tests, one-off scripts) the metrics
are plain in-process values.

Labels are bounded: ``lane`` and ``status`` come from the contract, ``connection`` is a
configured carrier connection, ``reason``/``outcome``/``result`` are small fixed sets mapped
here from error codes and HTTP statuses (never the carrier's own free-form codes).

Longer than 400 lines on purpose: every worker metric in one registry, so their names and
labels (which the dashboards and alert rules query) are checked in one place.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import structlog
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import Engine

from dispatcher.ids import uuid7_time
from dispatcher.store import reports
from dispatcher.store.db import StoreUnavailable, transaction

log = structlog.get_logger(component="metrics")

# Accept → sent: the OTP objective lives below one second, so the buckets are fine-grained there.
LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    1.5,
    2.5,
    5.0,
    10.0,
)
CARRIER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Handset reports take seconds to hours.
DELIVERY_BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0)
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
TASK_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

MESSAGES_SENT = Counter(
    "smsdispatch_messages_sent",
    "Messages the carrier accepted, by lane and connection.",
    ["lane", "connection"],
)
MESSAGES_FAILED = Counter(
    "smsdispatch_messages_failed",
    "Messages that ended without being sent, by lane, connection and final status "
    "(rejected, failed, expired).",
    ["lane", "connection", "status"],
)
MESSAGES_REPORTED = Counter(
    "smsdispatch_messages_reported",
    "Messages made final by a handset report, by lane, connection and status "
    "(delivered, undelivered, expired, rejected).",
    ["lane", "connection", "status"],
)
RETRIES = Counter(
    "smsdispatch_retries",
    "Failed attempts that will be retried, by lane, connection and reason.",
    ["lane", "connection", "reason"],
)
RECONCILED = Counter(
    "smsdispatch_reconciled_messages",
    "Claims left by a crash resolved with the carrier, by result (found_sent, requeued, unknown).",
    ["result"],
)
SEND_LATENCY = Histogram(
    "smsdispatch_send_latency_seconds",
    "Time from acceptance (or the scheduled time) to the carrier accepting the message, by lane.",
    ["lane"],
    buckets=LATENCY_BUCKETS,
)
DELIVERY_LATENCY = Histogram(
    "smsdispatch_delivery_latency_seconds",
    "Time from acceptance (or the scheduled time) to a delivered handset report being applied.",
    ["lane"],
    buckets=DELIVERY_BUCKETS,
)
REPORT_LAG = Histogram(
    "smsdispatch_report_lag_seconds",
    "Time from the carrier posting a final report to the API, to it being applied in the log.",
    ["connection"],
    buckets=LAG_BUCKETS,
)
CARRIER_REQUESTS = Histogram(
    "smsdispatch_carrier_request_duration_seconds",
    "Carrier submit requests, by connection, endpoint (single, batch) and outcome.",
    ["connection", "endpoint", "outcome"],
    buckets=CARRIER_BUCKETS,
)
RATE_LIMIT_WAITS = Counter(
    "smsdispatch_rate_limit_waits",
    "Times a sender slept waiting for rate-limit tokens, by connection.",
    ["connection"],
)
RATE_LIMIT_WAIT_SECONDS = Counter(
    "smsdispatch_rate_limit_wait_seconds",
    "Seconds senders slept waiting for rate-limit tokens, by connection.",
    ["connection"],
)
RATE_LIMIT_GRANTED_PARTS = Counter(
    "smsdispatch_rate_limit_granted_parts",
    "SMS parts the global rate limiter let through, by connection (compare with the limit).",
    ["connection"],
)
RATE_LIMIT_DEFERRED = Counter(
    "smsdispatch_rate_limit_deferred_messages",
    "Messages parked because their connection's rate limit was saturated (no attempt spent).",
    ["lane", "connection"],
)
RATE_LIMIT = Gauge(
    "smsdispatch_rate_limit_parts_per_second",
    "Configured global rate limit of a connection, in SMS parts per second.",
    ["connection"],
    multiprocess_mode="livemax",
)
WEBHOOK_ATTEMPTS = Counter(
    "smsdispatch_webhook_attempts",
    "Customer webhook delivery attempts on one URL, by result (delivered, http_4xx, http_429, "
    "http_5xx, timeout, connect_error, refused, skipped, error).",
    ["result"],
)
WEBHOOK_LAG = Histogram(
    "smsdispatch_webhook_lag_seconds",
    "Time from a webhook event being created to the customer's endpoint accepting it.",
    buckets=LAG_BUCKETS,
)
INBOX_FAILURES = Counter(
    "smsdispatch_inbox_row_failures",
    "Rows of a shared inbox or outbox (kind: report, inbound, webhook) that failed to apply on "
    "their own, by what became of them: retried later, or dead (set aside after "
    "SMSDISPATCH_CALLBACK_MAX_FAILURES / SMSDISPATCH_WEBHOOK_MAX_FAILURES tries).",
    ["kind", "outcome"],
)
TASKS = Counter(
    "smsdispatch_worker_tasks",
    "Tasks a worker pool finished, by lane (the pool's), task name and final state.",
    ["lane", "task", "state"],
)
TASK_DURATION = Histogram(
    "smsdispatch_worker_task_duration_seconds",
    "Run time of tasks, by lane (the pool's) and task name.",
    ["lane", "task"],
    buckets=TASK_BUCKETS,
)
SLOTS = Gauge(
    "smsdispatch_worker_slots",
    "Worker processes (task slots) of a pool, by lane and state (busy, idle).",
    ["lane", "state"],
    multiprocess_mode="livesum",
)

BREAKER_STATE = Gauge(
    "smsdispatch_breaker_state",
    "Circuit breaker of a carrier connection: 1 for its current state (closed, open, "
    "half_open), 0 for the others, as most recently seen by a worker process.",
    ["connection", "state"],
    multiprocess_mode="livemostrecent",
)
BREAKER_TRANSITIONS = Counter(
    "smsdispatch_breaker_transitions",
    "Circuit breaker state changes of a carrier connection, by old and new state.",
    ["connection", "old", "new"],
)

FAILED_STATUSES = frozenset({"rejected", "failed", "expired"})
RETRYING = "retrying"


class _Failure(Protocol):
    """What :func:`record_failures` reads of :class:`dispatcher.store.progress.Failure`."""

    status: str
    code: str
    http_status: int | None


class _Result(Protocol):
    """What :func:`record_carrier_call` reads of :class:`workers.connectors.base.SubmitResult`."""

    http_status: int | None
    latency_ms: float
    error: Any


# -- sending --------------------------------------------------------------------------------------
def latency_origin(message: Mapping[str, Any]) -> float | None:
    """When a message's clock starts: ``due_at`` of the payload (acceptance, or the scheduled
    time), else the acceptance time inside its UUIDv7 id."""
    due = message.get("due_at")
    if isinstance(due, int | float):
        return float(due)
    return uuid7_time(str(message.get("id", "")))


def record_sent(
    lane: str, connection: str, sent: Sequence[Mapping[str, Any]], now: float | None = None
) -> None:
    """Messages (payload dicts) recorded as sent at ``now``: count and accept → sent latency."""
    if not sent:
        return
    now = time.time() if now is None else now
    MESSAGES_SENT.labels(lane, connection).inc(len(sent))
    hist = SEND_LATENCY.labels(lane)
    for m in sent:
        origin = latency_origin(m)
        if origin is not None:
            hist.observe(max(0.0, now - origin))


def record_failures(lane: str, connection: str, failures: Iterable[_Failure]) -> None:
    """Failed attempts: retries by reason, and messages that ended by final status."""
    for f in failures:
        if f.status == RETRYING:
            RETRIES.labels(lane, connection, retry_reason(f.code, f.http_status)).inc()
        elif f.status in FAILED_STATUSES:
            MESSAGES_FAILED.labels(lane, connection, f.status).inc()


def record_expired(lane: str, connection: str, n: int) -> None:
    """Messages whose validity passed before a worker could send them."""
    if n:
        MESSAGES_FAILED.labels(lane, connection, "expired").inc(n)


def record_deferred(lane: str, connection: str, n: int) -> None:
    """Messages parked because the connection's rate limit was saturated."""
    if n:
        RATE_LIMIT_DEFERRED.labels(lane, connection).inc(n)


def retry_reason(code: str, http_status: int | None) -> str:
    """A bounded reason for a retryable failure (carriers' own codes are not label values)."""
    if http_status == 429 or code == "carrier_throttled":
        return "throttled"
    if http_status is not None and http_status >= 500:
        return "server_error"
    if http_status in (408, 425) or code == "carrier_timeout":
        return "timeout"
    if code == "carrier_unreachable":
        return "unreachable"
    if code in ("carrier_disconnected", "carrier_io_error"):
        return "connection_lost"
    if code in ("carrier_bad_response", "carrier_missing_result"):
        return "bad_response"
    return "other"


def carrier_outcome(result: _Result) -> str | None:
    """The outcome of one carrier request from its result; ``None`` when no request was made."""
    status = result.http_status
    if status is None:
        if result.error is None:  # accepted over a connection without HTTP (SMPP)
            return "ok"
        code = getattr(result.error, "code", "")
        if code == "claim_expired":
            return None
        if code == "carrier_timeout":
            return "timeout"
        if code == "carrier_unreachable":
            return "unreachable"
        return "connection_lost"
    if 200 <= status < 300:
        return "ok"
    if status == 429:
        return "throttled"
    if status >= 500:
        return "server_error"
    return "rejected"


_CARRIER_CHILDREN: dict[tuple[str, str, str], Any] = {}


def record_carrier_call(connection: str, endpoint: str, results: Sequence[_Result]) -> None:
    """One carrier request (``endpoint`` is ``single`` or ``batch``) and its results."""
    if not results:
        return
    first = results[0]
    outcome = carrier_outcome(first)
    if outcome is None:
        return
    key = (connection, endpoint, outcome)
    child = _CARRIER_CHILDREN.get(key)
    if child is None:  # labels() once per key: SMPP records a call per message
        child = _CARRIER_CHILDREN[key] = CARRIER_REQUESTS.labels(*key)
    child.observe(max(0.0, first.latency_ms / 1000.0))


# -- rate limiter ---------------------------------------------------------------------------------
def record_rate_wait(connection: str, seconds: float) -> None:
    """The limiter's ``on_wait`` hook: a sender sleeps ``seconds`` for tokens."""
    RATE_LIMIT_WAITS.labels(connection).inc()
    RATE_LIMIT_WAIT_SECONDS.labels(connection).inc(max(0.0, seconds))


def record_granted(connection: str, parts: Iterable[int]) -> None:
    """SMS parts the limiter granted (the rate the carrier sees)."""
    total = sum(parts)
    if total:
        RATE_LIMIT_GRANTED_PARTS.labels(connection).inc(total)


def set_rate_limit(connection: str, parts_per_second: float) -> None:
    """Publish a connection's configured limit (for dashboards: rate against limit)."""
    RATE_LIMIT.labels(connection).set(parts_per_second)


def set_breaker_state(connection: str, state: str) -> None:
    """Publish a connection's breaker state (``closed``, ``open``, ``half_open``)."""
    for name in ("closed", "open", "half_open"):
        BREAKER_STATE.labels(connection, name).set(1 if name == state else 0)


def record_breaker_transition(connection: str, old: str, new: str) -> None:
    """Count a breaker state change and publish the new state."""
    BREAKER_TRANSITIONS.labels(connection, old, new).inc()
    set_breaker_state(connection, new)


# -- reports and reconciliation -------------------------------------------------------------------
def record_reports(
    engine: Engine,
    connection: str,
    applied: Sequence[str],
    received_at: float | Mapping[str, float],
    now: float | None = None,
) -> None:
    """Messages a batch of handset reports made final: counts by status, report lag (from
    ``received_at``, one time for the batch or one per message id) and accept → delivered
    latency. One read by primary key, after the batch committed; a database error here only
    loses these observations, never the task."""
    if not applied:
        return
    now = time.time() if now is None else now
    try:
        with transaction(engine) as conn:
            rows = reports.reported(conn, applied)
    except StoreUnavailable as exc:
        log.warning("metrics.reports_unread", error=str(exc))
        return
    lag = REPORT_LAG.labels(connection)
    counts: dict[tuple[str, str], int] = {}
    latency: dict[str, Any] = {}  # lane → its child: labels() once per batch, not per report
    for r in rows:
        counts[(r.lane, r.status)] = counts.get((r.lane, r.status), 0) + 1
        arrived = received_at if isinstance(received_at, float | int) else received_at[r.id]
        lag.observe(max(0.0, now - arrived))
        if r.status == "delivered":
            origin = max(r.created_at, r.scheduled_at or 0.0)
            child = latency.get(r.lane)
            if child is None:
                child = latency[r.lane] = DELIVERY_LATENCY.labels(r.lane)
            child.observe(max(0.0, now - origin))
    for (lane, status), n in counts.items():
        MESSAGES_REPORTED.labels(lane, connection, status).inc(n)


def record_inbox_failures(kind: str, failed: int, dead: int) -> None:
    """Count rows that failed on their own (``failed``), of which ``dead`` were set aside."""
    if failed - dead > 0:
        INBOX_FAILURES.labels(str(kind), "retried").inc(failed - dead)
    if dead > 0:
        INBOX_FAILURES.labels(str(kind), "dead").inc(dead)


def record_reconcile(found_sent: int, requeued: int, unknown: int) -> None:
    """Results of one reconciliation of stale claims."""
    for result, n in (("found_sent", found_sent), ("requeued", requeued), ("unknown", unknown)):
        if n:
            RECONCILED.labels(result).inc(n)


# -- webhooks -------------------------------------------------------------------------------------
WEBHOOK_RESULTS = (
    "delivered",
    "http_4xx",
    "http_429",
    "http_5xx",
    "timeout",
    "connect_error",
    "refused",
    "skipped",
    "error",
)


def webhook_result(status_code: int | None, error: str | None = None, called: bool = True) -> str:
    """A bounded result for one webhook attempt on one URL."""
    if not called:
        # Not sent: the endpoint is suspended/disabled, or the URL is refused.
        return "refused" if error == "url_refused" else "skipped"
    if status_code is not None:
        if 200 <= status_code < 300:
            return "delivered"
        if status_code == 429:
            return "http_429"
        if status_code >= 500:
            return "http_5xx"
        return "http_4xx"
    err = (error or "").lower()
    if "timeout" in err:
        return "timeout"
    if "connect" in err or "refused" in err:
        return "connect_error"
    return "error"


class _WebhookAttempt(Protocol):
    status_code: int | None
    error: str | None
    called: bool


class _WebhookClaim(Protocol):
    created_at: float


class _WebhookOutcome(Protocol):
    """What :func:`record_webhook_outcomes` reads of :class:`workers.webhooks.records.Outcome`."""

    @property
    def claimed(self) -> _WebhookClaim: ...
    @property
    def attempts(self) -> Sequence[_WebhookAttempt]: ...
    @property
    def delivered_at(self) -> float | None: ...


def record_webhook_attempt(status_code: int | None, error: str | None = None) -> None:
    """One delivery attempt to a customer's endpoint."""
    WEBHOOK_ATTEMPTS.labels(webhook_result(status_code, error)).inc()


def record_webhook_delivered(created_at: float, now: float | None = None) -> None:
    """A webhook the customer's endpoint accepted; lag from the event's creation."""
    now = time.time() if now is None else now
    WEBHOOK_LAG.observe(max(0.0, now - created_at))


def record_webhook_outcomes(outcomes: Iterable[_WebhookOutcome]) -> None:
    """Every attempt of a round of deliveries by result, and the lag of those delivered."""
    for o in outcomes:
        for a in o.attempts:
            WEBHOOK_ATTEMPTS.labels(webhook_result(a.status_code, a.error, a.called)).inc()
        if o.delivered_at is not None:
            record_webhook_delivered(o.claimed.created_at, o.delivered_at)
