"""Webhook deliveries in the message log (an outbox: created in the same transaction as the
status change they report, delivered by the webhooks lane). Owned by the webhooks work."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection


def create_status_webhooks(conn: Connection, message_ids: Sequence[str], now: float) -> int:
    """Create one delivery per message that reached a final status and has a webhook URL.

    Called in the transaction that made the status final; returns how many were created.
    """
    raise NotImplementedError("webhooks: in progress")
