"""The JSON bodies of our webhooks, built once when the delivery is created and stored as the
exact text that is signed and sent (so every retry sends the same bytes).

``message.status`` (one per final status of an outgoing message, and ``sent`` when the account
asks for it)::

    {"type": "message.status", "id": "…", "externalId": "…", "phoneNumber": "+48…",
     "sender": "ACME", "status": "Delivered", "statusName": "delivered", "statusCode": 21,
     "isFinal": true, "statusTime": "2026-11-26T13:57:35.977Z", "numberOfParts": 1,
     "error": null}

``message.inbound`` (a message received on one of the account's numbers)::

    {"type": "message.inbound", "id": "…", "from": "+48…", "to": "+48…", "text": "…",
     "parts": 1, "receivedAt": "2026-11-26T13:57:35.977Z", "keyword": null}

See ``docs/webhooks.md`` for every field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from dispatcher.contract import (
    EVENT_MESSAGE_INBOUND,
    EVENT_MESSAGE_STATUS,
    STATUS_CODES,
    Status,
    is_final,
)
from dispatcher.times import iso_ms

# The status in the words of the original API's reports.
STATUS_WORDS: dict[str, str] = {
    Status.SENT: "Sent",
    Status.DELIVERED: "Delivered",
    Status.UNDELIVERED: "Undelivered",
    Status.EXPIRED: "Expired",
    Status.REJECTED: "Rejected",
    Status.FAILED: "Failed",
}


def dumps(payload: Mapping[str, Any]) -> str:
    """Compact JSON text (UTF-8, not ASCII-escaped): what is stored, signed and sent."""
    return orjson.dumps(payload).decode("utf-8")


def status_payload(m: Mapping[str, Any]) -> dict[str, Any]:
    """The ``message.status`` body of a message row (``messages`` column names)."""
    status = str(m["status"])
    error = None
    if m.get("error_code"):
        permanent = m.get("error_permanent")
        error = {
            "code": m["error_code"],
            "description": m.get("error_description"),
            "permanent": None if permanent is None else bool(permanent),
        }
    return {
        "type": EVENT_MESSAGE_STATUS,
        "id": m["id"],
        "externalId": m["external_id"],
        "phoneNumber": m["phone"],
        "sender": m["sender"],
        "status": STATUS_WORDS.get(status, status.capitalize()),
        "statusName": status,
        "statusCode": STATUS_CODES[Status(status)],
        "isFinal": is_final(status),
        "statusTime": iso_ms(float(m["status_at"])),
        "numberOfParts": int(m["parts"]),
        "error": error,
    }


def inbound_payload(inbound: Mapping[str, Any]) -> dict[str, Any]:
    """The ``message.inbound`` body of an inbound message (``inbound_messages`` columns)."""
    return {
        "type": EVENT_MESSAGE_INBOUND,
        "id": inbound["id"],
        "from": inbound["phone"],
        "to": inbound["number"],
        "text": inbound["body"],
        "parts": int(inbound["parts"]),
        "receivedAt": iso_ms(float(inbound["received_at"])),
        "keyword": inbound.get("keyword"),
    }
