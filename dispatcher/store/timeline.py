"""A message's timeline: the row's own milestones merged with its recorded events.

The common path writes no event rows (the successful attempt lives on the message row, so a
bulk send writes one row per message); this puts the milestones back in order for the API and
the support panel.
"""

from __future__ import annotations

from typing import Any


def build_timeline(row: dict[str, Any], events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Milestones and events, oldest first: ``{at, kind, status, detail}``."""
    out: list[dict[str, Any]] = [
        {
            "at": row["created_at"],
            "kind": "accepted",
            "status": None,
            "detail": {"lane": row["lane"], "parts": row["parts"], "encoding": row["encoding"]},
        },
    ]
    if row.get("scheduled_at"):
        out.append(
            {
                "at": row["created_at"],
                "kind": "scheduled",
                "status": "scheduled",
                "detail": {"for": row["scheduled_at"]},
            }
        )
    if row.get("queued_at"):
        out.append(
            {
                "at": row["queued_at"],
                "kind": "queued",
                "status": "queued",
                "detail": {"batch": row.get("batch_id")},
            }
        )
    out.extend(
        {"at": e["at"], "kind": e["kind"], "status": e["status"], "detail": e["detail"]}
        for e in events
    )
    if row.get("sent_at"):
        out.append(
            {
                "at": row["sent_at"],
                "kind": "sent",
                "status": "sent",
                "detail": {
                    "connection": row.get("connection"),
                    "carrier_message_id": row.get("carrier_message_id"),
                    "http_status": row.get("http_status"),
                    "latency_ms": row.get("latency_ms"),
                    "attempt": row.get("attempts"),
                },
            }
        )
    if row.get("final_at") and not any(e["status"] == row["status"] for e in events):
        out.append(
            {
                "at": row["final_at"],
                "kind": "final",
                "status": row["status"],
                "detail": {
                    "code": row.get("error_code"),
                    "description": row.get("error_description"),
                },
            }
        )
    out.sort(key=lambda e: e["at"])
    return out
