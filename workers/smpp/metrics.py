"""Metrics of the session holder, per connection (served on its own ``/metrics``).

Labels are bounded: ``connection`` is configured, ``lane`` is priority or bulk,
``command_status`` is an SMPP status name (a fixed table; vendor codes go as ``other``),
``kind`` is receipt or inbound.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from workers.smpp.constants import STATUS_NAMES, status_name

SUBMIT_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

BINDS_UP = Gauge(
    "smsdispatch_smpp_binds_up", "SMPP binds up in this holder process.", ["connection"]
)
BINDS_ALLOWED = Gauge(
    "smsdispatch_smpp_binds_allowed",
    "Binds the operator allows for the connection (over every holder).",
    ["connection"],
)
WINDOW_IN_USE = Gauge(
    "smsdispatch_smpp_window_in_use",
    "Outstanding submit_sm of this holder, by lane.",
    ["connection", "lane"],
)
SUBMIT_LATENCY = Histogram(
    "smsdispatch_smpp_submit_seconds",
    "submit_sm written → submit_sm_resp read.",
    ["connection"],
    buckets=SUBMIT_BUCKETS,
)
RESPONSES = Counter(
    "smsdispatch_smpp_responses",
    "submit_sm answers by command_status (unanswered ones as 'unanswered').",
    ["connection", "command_status"],
)
THROTTLED = Counter(
    "smsdispatch_smpp_throttled",
    "ESME_RTHROTTLED / ESME_RMSGQFUL answers that slowed the connection down.",
    ["connection"],
)
RATE_SHARE = Gauge(
    "smsdispatch_smpp_rate_share",
    "Share of the connection's tps the limiter grants while the SMSC throttles (1 = all).",
    ["connection"],
)
DELIVERIES = Counter(
    "smsdispatch_smpp_deliveries",
    "deliver_sm committed and answered, by kind (receipt, inbound).",
    ["connection", "kind"],
)
BIND_FAILURES = Counter(
    "smsdispatch_smpp_bind_failures",
    "Binds the SMSC refused, by status name.",
    ["connection", "command_status"],
)


def status_label(status: int) -> str:
    """A bounded label for an SMPP status."""
    return status_name(status) if status in STATUS_NAMES else "other"
