"""The headers of a signed webhook request (Standard Webhooks)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from smsdispatch_client.webhooks import signature

USER_AGENT = "smsdispatch-webhooks/1"


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """``webhook-signature``: one ``v1,…`` entry per secret, space-separated (rotation)."""
    if not secrets:
        raise ValueError("no secret to sign with")
    return " ".join(signature(s, msg_id, timestamp, body) for s in secrets)


def webhook_headers(
    msg_id: str, body: bytes, secrets: Sequence[str], now: float | None = None
) -> dict[str, str]:
    """Every header of the POST: content type, user agent, id, timestamp and signature(s).

    ``msg_id`` is the delivery id: it stays the same on every retry, so receivers can use it to
    ignore duplicates; the timestamp is the time of this attempt.
    """
    ts = int(time.time() if now is None else now)
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": signature_header(secrets, msg_id, ts, body),
    }
