"""Price lists in the log: entries the operator adds, and the book the writer prices with.

Validation happens here, once, for the CLI and the panel alike: every refusal is a
:class:`PriceListError` whose text names the field and says what to write instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, insert, select

from dispatcher.billing.money import Currency, MoneyError, currency, to_minor
from dispatcher.billing.money import currency_name as _name
from dispatcher.billing.pricebook import MAX_PRICE_MINOR, PriceBook, PriceEntry, destination_prefix
from dispatcher.store.schema import balances, price_entries


class PriceListError(ValueError):
    """A price list change that was refused; the text says why, naming the field."""


@dataclass(frozen=True)
class NewPrice:
    """A price as the operator typed it (validated by :func:`add_price`)."""

    destination: str  # "+4850", "PL" or "*"
    price: str  # per part, in major units: "0.07"
    currency: str  # "PLN" or "985"
    valid_from: float | None = None  # unix seconds; None: now


def _scope(column: Any, account_id: int | None) -> Any:
    return column.is_(None) if account_id is None else column == account_id


def _list_currency(conn: Connection, account_id: int | None) -> int | None:
    row = conn.execute(
        select(price_entries.c.currency).where(_scope(price_entries.c.account_id, account_id))
    ).first()
    return None if row is None else int(row[0])


def _balance_currency(conn: Connection, account_id: int) -> int | None:
    row = conn.execute(
        select(balances.c.currency).where(balances.c.account_id == account_id)
    ).first()
    return None if row is None else int(row[0])


def parse_price(new: NewPrice) -> tuple[str, int, Currency]:
    """The prefix, the price in minor units and the currency of ``new``; raises
    :class:`PriceListError` naming the field."""
    try:
        prefix = destination_prefix(new.destination)
    except ValueError as exc:
        raise PriceListError(str(exc)) from None
    try:
        cur = currency(new.currency)
        minor = to_minor(new.price, cur)
    except MoneyError as exc:
        raise PriceListError(f"price: {exc}") from None
    if minor > MAX_PRICE_MINOR:
        raise PriceListError(f"price: {new.price} {cur.alpha} per part is not plausible")
    return prefix, minor, cur


def add_price(
    conn: Connection, account_id: int | None, new: NewPrice, actor: str, now: float | None = None
) -> PriceEntry:
    """Add an entry to an account's list (``None``: the platform default).

    One list has one currency; an account's list must be in its balance's currency. An entry
    for a destination and time that already has one replaces it.
    """
    at = time.time() if now is None else now
    prefix, minor, cur = parse_price(new)
    valid_from = at if new.valid_from is None else new.valid_from
    if valid_from < at - 86_400:
        raise PriceListError("valid_from: more than a day in the past (prices are not rewritten)")
    listed = _list_currency(conn, account_id)
    if listed is not None and listed != cur.numeric:
        raise PriceListError(
            f"currency: this price list is in {_name(listed)}; one list has one currency"
        )
    if account_id is not None:
        billed = _balance_currency(conn, account_id)
        if billed is not None and billed != cur.numeric:
            raise PriceListError(
                f"currency: the account's balance is in {_name(billed)}, not {cur.alpha}"
            )
    c = price_entries.c
    conn.execute(
        delete(price_entries).where(
            and_(_scope(c.account_id, account_id), c.prefix == prefix, c.valid_from == valid_from)
        )
    )
    conn.execute(
        insert(price_entries).values(
            account_id=account_id,
            prefix=prefix,
            price=minor,
            currency=cur.numeric,
            valid_from=valid_from,
            created_at=at,
            created_by=actor[:64],
        )
    )
    return PriceEntry(account_id, prefix, minor, cur.numeric, valid_from)


def remove_price(conn: Connection, account_id: int | None, destination: str) -> int:
    """Remove every entry (all dates) for ``destination`` from a list; returns how many."""
    try:
        prefix = destination_prefix(destination)
    except ValueError as exc:
        raise PriceListError(str(exc)) from None
    c = price_entries.c
    result = conn.execute(
        delete(price_entries).where(and_(_scope(c.account_id, account_id), c.prefix == prefix))
    )
    return int(result.rowcount)


def load_entries(conn: Connection) -> list[PriceEntry]:
    """Every entry of every list."""
    return _entries(conn, select_all=True, account_id=None)


def list_entries(conn: Connection, account_id: int | None) -> list[PriceEntry]:
    """The entries of one list (``None``: the platform default), by destination and date."""
    return _entries(conn, select_all=False, account_id=account_id)


def _entries(conn: Connection, select_all: bool, account_id: int | None) -> list[PriceEntry]:
    c = price_entries.c
    q = select(c.account_id, c.prefix, c.price, c.currency, c.valid_from)
    if not select_all:
        q = q.where(_scope(c.account_id, account_id))
    q = q.order_by(c.account_id, c.prefix, c.valid_from)
    return [PriceEntry(r[0], r[1], int(r[2]), int(r[3]), float(r[4])) for r in conn.execute(q)]


class PriceBookCache:
    """The process's price book, read from the log again every ``reload_s`` seconds.

    Entries carry their own ``valid_from``, so a change entered ahead of time takes effect on
    the second; one entered for "now" reaches every process within ``reload_s``.
    """

    def __init__(self, engine: Engine, reload_s: float = 5.0) -> None:
        self.engine = engine
        self.reload_s = reload_s
        self._book: PriceBook | None = None
        self._loaded = 0.0
        self._lock = threading.Lock()

    def get(self, conn: Connection | None = None) -> PriceBook:
        """The book, reloaded when older than ``reload_s`` (on ``conn`` when given)."""
        now = time.monotonic()
        book = self._book
        if book is not None and now - self._loaded < self.reload_s:
            return book
        with self._lock:
            if self._book is not None and now - self._loaded < self.reload_s:
                return self._book
            if conn is not None:
                entries = load_entries(conn)
            else:
                with self.engine.connect() as c:
                    entries = load_entries(c)
            self._book = PriceBook(entries)
            self._loaded = time.monotonic()
            return self._book


def entries_view(entries: Sequence[PriceEntry]) -> list[dict[str, Any]]:
    """Entries as the CLI and the panel show them (major units, ISO alpha code)."""
    from dispatcher.billing.money import by_numeric, format_minor

    out = []
    for e in entries:
        cur = by_numeric(e.currency)
        out.append(
            {
                "destination": e.destination,
                "price": format_minor(e.price, e.currency),
                "currency": cur.alpha if cur else e.currency,
                "validFrom": e.valid_from,
            }
        )
    return out
