"""Delivery reports from an upstream smsdispatch / MessageFlow (a ``messageflow`` connection).

The upstream reports by its customer webhooks: Standard Webhooks-signed ``message.status``
events (``docs/webhooks.md``), posted to our ``/carrier/{connection}/reports``. The endpoint
verifies the signature with the connection's ``webhook_secret`` and turns each event into the
generic report form the dlr lane reads (``{"id", "stat", "err", "done_at"}``), keyed by the
upstream's message id, which is what we recorded as the carrier message id.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

# The upstream's status → the SMPP-style word of the generic form.
STATUS_WORDS = {
    "delivered": "DELIVRD",
    "undelivered": "UNDELIV",
    "expired": "EXPIRED",
    "rejected": "REJECTD",
    "failed": "UNDELIV",  # it gave up: for us the handset never got it
    "sent": "ACCEPTD",  # non-final: on the timeline only
}


def report_from_status_event(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """The generic report of one ``message.status`` event; ``None`` for other events."""
    if event.get("type") != "message.status":
        return None
    word = STATUS_WORDS.get(str(event.get("statusName", "")))
    if word is None or not event.get("id"):
        return None
    report: dict[str, Any] = {"id": str(event["id"]), "stat": word}
    error = event.get("error")
    if isinstance(error, Mapping) and error.get("code"):
        report["err"] = str(error["code"])[:32]
    when = event.get("statusTime")
    if isinstance(when, str):
        with contextlib.suppress(ValueError):  # no time: the dlr lane uses its own clock
            report["done_at"] = datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp()
    return report
