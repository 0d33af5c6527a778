"""An account's webhook settings as stored, for the operator's CLI and the panel: URLs, the
``sent`` option, the signing secret (create, rotate with an overlap), and resuming suspended or
disabled endpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, select, update

from dispatcher.store import accounts as stored_accounts
from dispatcher.store.schema import (
    accounts,
    webhook_attempts,
    webhook_deliveries,
    webhook_endpoints,
)
from dispatcher.store.webhooks import DeliveryState, EndpointState
from dispatcher.times import iso_ms
from dispatcher.webhooks.secrets import generate_secret

URL_COLUMNS = {
    "url": "webhook_url",
    "secondary": "webhook_url_secondary",
    "inbound_url": "inbound_webhook_url",
    "inbound_secondary": "inbound_webhook_url_secondary",
}
# Why a delivery was not attempted or ended because of its endpoint: --resume sends these again.
ENDPOINT_ERRORS = ("endpoint_suspended", "endpoint_disabled", "http_410")


class AccountNotFound(LookupError):
    """No account has that name."""


@dataclass(frozen=True)
class Resumed:
    """What ``--resume`` did."""

    endpoints: int
    requeued: int


def account_id(conn: Connection, name: str) -> int:
    """The id of the account called ``name``."""
    found = stored_accounts.account_id(conn, name)
    if found is None:
        raise AccountNotFound(name)
    return found


def set_options(
    conn: Connection, acct: int, urls: dict[str, str | None], on_sent: bool | None
) -> None:
    """Change URLs (keys of :data:`URL_COLUMNS`; ``None`` or ``""`` clears) and ``on_sent``."""
    values: dict[str, Any] = {URL_COLUMNS[k]: (v or None) for k, v in urls.items()}
    if on_sent is not None:
        values["webhook_on_sent"] = on_sent
    if values:
        conn.execute(update(accounts).where(accounts.c.id == acct).values(**values))


def ensure_secret(conn: Connection, acct: int) -> str | None:
    """Create the account's signing secret if it has none; the new secret, else ``None``."""
    a = accounts.c
    current = conn.execute(select(a.webhook_secret).where(a.id == acct)).scalar()
    if current:
        return None
    secret = generate_secret()
    conn.execute(
        update(accounts)
        .where(and_(a.id == acct, a.webhook_secret.is_(None)))
        .values(webhook_secret=secret)
    )
    stored = conn.execute(select(a.webhook_secret).where(a.id == acct)).scalar()
    return secret if stored == secret else None


def rotate_secret(conn: Connection, acct: int, now: float, overlap_s: float) -> str:
    """A new secret; the old one stays valid (we sign with both) for ``overlap_s`` seconds."""
    a = accounts.c
    old = conn.execute(select(a.webhook_secret).where(a.id == acct)).scalar()
    secret = generate_secret()
    conn.execute(
        update(accounts)
        .where(a.id == acct)
        .values(
            webhook_secret=secret,
            webhook_secret_previous=old if old and overlap_s > 0 else None,
            webhook_secret_previous_until=now + overlap_s if old and overlap_s > 0 else None,
        )
    )
    return secret


def current_secret(conn: Connection, acct: int) -> str | None:
    """The account's current signing secret."""
    value = conn.execute(select(accounts.c.webhook_secret).where(accounts.c.id == acct)).scalar()
    return str(value) if value else None


def resume(conn: Connection, acct: int, now: float, window_s: float) -> Resumed:
    """Suspended and disabled endpoints → active; deliveries of the last ``window_s`` that ended
    because of them go back to pending (sent again now)."""
    e = webhook_endpoints.c
    endpoints = conn.execute(
        update(webhook_endpoints)
        .where(and_(e.account_id == acct, e.state != EndpointState.ACTIVE))
        .values(
            state=EndpointState.ACTIVE,
            consecutive_failures=0,
            failing_since=None,
            changed_at=now,
            reason=f"resumed at {iso_ms(now)}",
        )
    ).rowcount
    d, t = webhook_deliveries.c, webhook_attempts.c
    because = select(t.delivery_id).where(
        and_(t.error.in_(ENDPOINT_ERRORS), t.at >= now - window_s)
    )
    requeued = conn.execute(
        update(webhook_deliveries)
        .where(
            and_(
                d.account_id == acct,
                d.state.in_([DeliveryState.FAILED, DeliveryState.DISABLED]),
                d.created_at >= now - window_s,
                d.id.in_(because.scalar_subquery()),
            )
        )
        .values(state=DeliveryState.PENDING, next_attempt_at=now)
    ).rowcount
    return Resumed(int(endpoints), int(requeued))


def view(conn: Connection, acct: int, now: float) -> dict[str, Any]:
    """The account's webhook settings and endpoint health (never the secret)."""
    a = accounts.c
    row = conn.execute(select(accounts).where(a.id == acct)).one()
    until = row.webhook_secret_previous_until
    e = webhook_endpoints.c
    endpoints = [
        {
            "url": r.url,
            "state": r.state,
            "consecutiveFailures": r.consecutive_failures,
            "failingSince": iso_ms(r.failing_since) if r.failing_since else None,
            "changedAt": iso_ms(r.changed_at),
            "reason": r.reason,
        }
        for r in conn.execute(select(webhook_endpoints).where(e.account_id == acct).order_by(e.id))
    ]
    return {
        "account": row.name,
        "webhookUrl": row.webhook_url,
        "webhookUrlSecondary": row.webhook_url_secondary,
        "inboundWebhookUrl": row.inbound_webhook_url,
        "inboundWebhookUrlSecondary": row.inbound_webhook_url_secondary,
        "onSent": bool(row.webhook_on_sent),
        "hasSecret": bool(row.webhook_secret),
        "previousSecretValidUntil": iso_ms(until)
        if row.webhook_secret_previous and until and until > now
        else None,
        "endpoints": endpoints,
    }
