"""Changes to an account that both the panel and the CLI make, each with its audit entry in the
same transaction: one implementation for both doors, so the log reads the same whoever acted
and no door forgets it (tests/integration/test_audit_doors.py walks every command and the
API's state-changing endpoints).

``actor`` is ``panel:<username>``, ``cli:<login>`` (or what ``--by`` said) or, for the API,
``api:key#<id> <key name>`` (never the key itself); ``target`` is
the account's name as people know it. Details name amounts, hosts and settings, never a
secret, a key or a message text (:mod:`dispatcher.store.audit`).
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection

from dispatcher.billing.money import currency_name, format_minor
from dispatcher.billing.pricebook import PriceEntry
from dispatcher.store import audit, balances, prices, webhook_settings
from dispatcher.store.senders import SenderName, request_name
from dispatcher.store.suppressions import remove_suppression as _remove_suppression
from dispatcher.webhooks.urls import safe_host

# The view keys of webhook_settings.view, by the option names the panel and the CLI use.
WEBHOOK_VIEW_KEYS = {
    "url": "webhookUrl",
    "secondary": "webhookUrlSecondary",
    "inbound_url": "inboundWebhookUrl",
    "inbound_secondary": "inboundWebhookUrlSecondary",
}


def post_balance(
    conn: Connection,
    account_id: int,
    target: str,
    kind: str,
    amount: int,
    currency: int,
    actor: str,
    note: str | None,
    now: float,
) -> int:
    """:func:`~dispatcher.store.balances.post` (a top-up or an adjustment); the new balance."""
    after = balances.post(conn, account_id, kind, amount, currency, actor, note, now=now)
    alpha = currency_name(currency)
    detail = f"{format_minor(amount, currency)} {alpha}, balance {format_minor(after, currency)}"
    detail += f": {note}" if note else ""
    action = "balance.topup" if kind == "topup" else "balance.adjust"
    audit.record(conn, account_id, actor, action, target, detail[:255], now=now)
    return after


def set_balance_limits(
    conn: Connection,
    account_id: int,
    target: str,
    currency: int,
    actor: str,
    now: float,
    *,
    credit_limit: int | balances.Keep | None = balances.Keep.KEEP,
    low_balance: int | balances.Keep | None = balances.Keep.KEEP,
) -> balances.Balance:
    """:func:`~dispatcher.store.balances.set_limits`; the balance as it is now."""
    b = balances.set_limits(
        conn, account_id, currency, credit_limit=credit_limit, low_balance=low_balance, now=now
    )
    shown = "unlimited" if b.credit_limit is None else format_minor(b.credit_limit, b.currency)
    low = "off" if b.low_balance is None else format_minor(b.low_balance, b.currency)
    detail = f"credit limit {shown}, low balance {low} {currency_name(b.currency)}"
    audit.record(conn, account_id, actor, "balance.limits", target, detail, now=now)
    return b


def add_price(
    conn: Connection,
    account_id: int | None,
    target: str | None,
    new: prices.NewPrice,
    actor: str,
    now: float,
) -> PriceEntry:
    """:func:`~dispatcher.store.prices.add_price` to an account's list (``account_id``
    ``None``: the platform default, a platform entry in the log)."""
    entry = prices.add_price(conn, account_id, new, actor, now=now)
    price = f"{format_minor(entry.price, entry.currency)} {currency_name(entry.currency)}"
    since = time.strftime("%Y-%m-%d %H:%M", time.gmtime(entry.valid_from))
    detail = f"{entry.destination} {price} per part from {since} UTC"
    audit.record(conn, account_id, actor, "price.set", target or "default list", detail, now=now)
    return entry


def remove_price(
    conn: Connection,
    account_id: int | None,
    target: str | None,
    destination: str,
    actor: str,
    now: float,
) -> int:
    """:func:`~dispatcher.store.prices.remove_price`; how many entries went (none: no entry)."""
    removed = prices.remove_price(conn, account_id, destination)
    if removed:
        detail = f"{destination}: {removed} entr{'ies' if removed != 1 else 'y'}"
        list_name = target or "default list"
        audit.record(conn, account_id, actor, "price.remove", list_name, detail, now=now)
    return removed


def set_webhooks(
    conn: Connection,
    account_id: int,
    urls: dict[str, str | None],
    on_sent: bool | None,
    actor: str,
    now: float,
    *,
    create_secret: bool,
) -> str | None:
    """Change webhook URLs (keys of :data:`WEBHOOK_VIEW_KEYS`; ``None`` clears) and the
    ``sent`` option, one entry per thing that changed; with ``create_secret``, the signing
    secret is created if the account has none. The new secret, else ``None``."""
    before = webhook_settings.view(conn, account_id, now)
    webhook_settings.set_options(conn, account_id, urls, on_sent)
    secret = webhook_settings.ensure_secret(conn, account_id) if create_secret else None
    if secret is not None:
        audit.record(conn, account_id, actor, "webhook.secret_create", now=now)
    for key, value in urls.items():
        if (before[WEBHOOK_VIEW_KEYS[key]] or None) != (value or None):
            shown = safe_host(value) if value else "(cleared)"
            audit.record(conn, account_id, actor, "webhook.url", key, shown, now=now)
    if on_sent is not None and before["onSent"] != on_sent:
        detail = "on" if on_sent else "off"
        audit.record(conn, account_id, actor, "webhook.on_sent", None, detail, now=now)
    return secret


def rotate_webhook_secret(
    conn: Connection, account_id: int, overlap_s: float, actor: str, now: float
) -> str:
    """:func:`~dispatcher.store.webhook_settings.rotate_secret`; the new secret."""
    secret = webhook_settings.rotate_secret(conn, account_id, now, overlap_s)
    hours = overlap_s / 3600
    detail = f"the old secret signs for {hours:g} more hour{'s' * (hours != 1)}"
    audit.record(conn, account_id, actor, "webhook.secret_rotate", None, detail, now=now)
    return secret


def resume_webhooks(
    conn: Connection, account_id: int, window_s: float, actor: str, now: float
) -> webhook_settings.Resumed:
    """:func:`~dispatcher.store.webhook_settings.resume`; what it did."""
    done = webhook_settings.resume(conn, account_id, now, window_s)
    detail = f"{done.endpoints} endpoint(s) resumed, {done.requeued} delivery(ies) sent again"
    audit.record(conn, account_id, actor, "webhook.resume", None, detail, now=now)
    return done


def request_sender(
    conn: Connection, account_id: int, name: str, actor: str, now: float
) -> SenderName:
    """:func:`~dispatcher.store.senders.request_name`; recorded only when the name became
    pending (asking again for a pending or approved name changes nothing). Raises
    :class:`~dispatcher.sms.errors.InvalidSender` as it does."""
    entry = request_name(conn, account_id, name, actor, now)
    if entry.requested_at == now:
        audit.record(conn, account_id, actor, "sender.request", entry.name, now=now)
    return entry


def remove_suppression(
    conn: Connection, account_id: int, phone: str, actor: str, now: float
) -> dict[str, Any] | None:
    """:func:`~dispatcher.store.suppressions.remove_suppression` (``phone`` in E.164); the
    removed entry, or ``None`` (nothing recorded) when the number was not on the list."""
    row = _remove_suppression(conn, account_id, phone)
    if row is not None:
        audit.record(conn, account_id, actor, "suppression.remove", phone, now=now)
    return row
