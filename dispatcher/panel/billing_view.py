"""What the balance pages show, in major units: a balance, ledger rows, usage per day and
country. Shared by the account's page and the operator's (one implementation of each)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from dispatcher.billing.money import currency_name, format_minor
from dispatcher.store.balances import Balance, balance_of, ledger_rows
from dispatcher.store.usage import UsageRow, usage

LEDGER_PAGE = 50
MAX_USAGE_DAYS = 366
KIND_WORDS = {
    "charge": "Charge",
    "refund": "Refund",
    "topup": "Top-up",
    "adjustment": "Adjustment",
}


def balance_view(b: Balance | None) -> dict[str, Any] | None:
    """The balance as the page shows it; ``None``: the account has none yet."""
    if b is None:
        return None
    money = lambda minor: None if minor is None else format_minor(minor, b.currency)  # noqa: E731
    return {
        "currency": currency_name(b.currency),
        "balance": money(b.balance),
        "negative": b.balance < 0,
        "credit_limit": money(b.credit_limit),
        "unlimited": b.credit_limit is None,
        "available": money(b.available),
        "low_balance": money(b.low_balance),
        "low": b.low_balance is not None and b.balance < b.low_balance,
        "updated_at": b.updated_at,
    }


def ledger_view(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ledger rows with their amounts formatted and their kind in words."""
    return [
        {
            "id": r["id"],
            "at": r["at"],
            "kind": r["kind"],
            "kind_words": KIND_WORDS.get(str(r["kind"]), str(r["kind"])),
            "amount": format_minor(int(r["amount"]), int(r["currency"])),
            "negative": int(r["amount"]) < 0,
            "currency": currency_name(int(r["currency"])),
            "submission": r["submission_id"],
            "messages": r["messages"],
            "parts": r["parts"],
            "actor": r["actor"],
            "note": r["note"],
        }
        for r in rows
    ]


def load_balance(conn: Connection, account_id: int, before_id: int | None) -> dict[str, Any]:
    """The balance and one page of the ledger (newest first; ``more``: the next page's key)."""
    rows = ledger_rows(conn, account_id, LEDGER_PAGE + 1, before_id)
    return {
        "balance": balance_view(balance_of(conn, account_id)),
        "ledger": ledger_view(rows[:LEDGER_PAGE]),
        "more": rows[LEDGER_PAGE - 1]["id"] if len(rows) > LEDGER_PAGE else None,
    }


class RangeError(ValueError):
    """A usage date range that cannot be used; ``field`` names the form field."""

    def __init__(self, field: str, text: str) -> None:
        super().__init__(text)
        self.field = field


def usage_range(raw_from: str, raw_to: str, now: float | None = None) -> tuple[date, date]:
    """UTC days, both included (default: the last 30 days to today); :class:`RangeError`."""
    today = datetime.fromtimestamp(time.time() if now is None else now, UTC).date()
    days: dict[str, date] = {}
    for field, raw, default in (
        ("from", raw_from, today - timedelta(days=29)),
        ("to", raw_to, today),
    ):
        value = raw.strip()[:10]
        try:
            days[field] = date.fromisoformat(value) if value else default
        except ValueError:
            raise RangeError(field, "A day as YYYY-MM-DD (UTC).") from None
    if days["from"] > days["to"]:
        raise RangeError("from", "The first day is after the last.")
    if (days["to"] - days["from"]).days >= MAX_USAGE_DAYS:
        raise RangeError("from", f"At most {MAX_USAGE_DAYS} days at a time.")
    return days["from"], days["to"]


def _ts(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def customer_usage(conn: Connection, account_id: int, first: date, last: date) -> list[UsageRow]:
    """The account's usage per UTC day and destination country, connections folded together:
    which carrier took a message and what it costs the platform are the operator's."""
    rows = usage(conn, _ts(first), _ts(last + timedelta(days=1)), account_id, None)
    return fold_connections(rows)


def fold_connections(rows: Iterable[UsageRow]) -> list[UsageRow]:
    """One row per account, day, country and currency (``connection`` empty, no carrier cost)."""
    folded: dict[tuple[str, str, str, int], list[int]] = {}
    for r in rows:
        acc = folded.setdefault((r.account, r.day, r.country, r.currency), [0, 0, 0, 0])
        acc[0] += r.messages
        acc[1] += r.parts
        acc[2] += r.amount
        acc[3] += r.refunded
    return [
        UsageRow(account, day, country, "", cur, n, parts, amount, refunded)
        for (account, day, country, cur), (n, parts, amount, refunded) in sorted(folded.items())
    ]


def usage_view(rows: Sequence[UsageRow]) -> dict[str, Any]:
    """Table rows (newest day first) and totals per currency, in major units."""
    table = [
        {
            "day": r.day,
            "country": r.country,
            "messages": r.messages,
            "parts": r.parts,
            "amount": format_minor(r.amount, r.currency),
            "refunded": format_minor(r.refunded, r.currency),
            "net": format_minor(r.amount - r.refunded, r.currency),
            "currency": currency_name(r.currency) if r.currency else "",
        }
        for r in sorted(rows, key=lambda r: (r.day, r.country), reverse=True)
    ]
    totals: dict[int, list[int]] = {}
    for r in rows:
        t = totals.setdefault(r.currency, [0, 0, 0, 0])
        t[0] += r.messages
        t[1] += r.parts
        t[2] += r.amount
        t[3] += r.refunded
    return {
        "rows": table,
        "totals": [
            {
                "messages": n,
                "parts": parts,
                "net": format_minor(amount - refunded, cur),
                "currency": currency_name(cur) if cur else "",
            }
            for cur, (n, parts, amount, refunded) in sorted(totals.items())
        ],
    }
