"""Which price applies to a message: per account, else the platform default; longest prefix.

A price list entry says: for this account (or every account: the platform default), a part
to this destination costs this much, in this currency, from this time on. For a recipient:

1. the account's own list is searched first, the platform default only when the account's has
   no entry for the number (an account's list may cover a few destinations and leave the rest
   to the default);
2. within a list the longest matching prefix wins, as in routing (docs/routing.md); ``*``
   matches every number (length 0);
3. of the entries for one prefix, the one with the latest ``valid_from`` not after the send
   time applies: a price change is entered ahead of time and takes effect on the second; an
   entry not yet in effect does not hide a shorter prefix that is.

Pure: built from rows, asked many times (one dict probe per prefix length).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import phonenumbers

MAX_PRICE_MINOR = 10**9  # per part; a typo guard, far above any SMS price


@dataclass(frozen=True)
class PriceEntry:
    """One row of a price list."""

    account_id: int | None  # None: the platform default
    prefix: str  # digits without "+"; "" is the catch-all "*"
    price: int  # per part, in the currency's minor unit
    currency: int  # ISO 4217 numeric
    valid_from: float  # unix seconds

    @property
    def destination(self) -> str:
        """As the operator writes it: ``+4850`` or ``*``."""
        return "+" + self.prefix if self.prefix else "*"


@dataclass(frozen=True)
class Quote:
    """The price of one part to one recipient, and the entry it came from."""

    price: int
    currency: int
    entry: PriceEntry


def destination_prefix(raw: str) -> str:
    """The digits of a destination the operator typed: ``+4850``, ``*`` or a country (``PL``).

    A country is its calling code; a calling code shared by several countries (``US`` and
    ``CA`` are both +1) cannot stand for one of them, so those are refused with the prefix to
    use instead. Raises ``ValueError`` saying what is wrong.
    """
    value = raw.strip()
    if value == "*":
        return ""
    if value.startswith("+"):
        digits = value[1:]
        if not digits.isdigit() or not 1 <= len(digits) <= 15 or not digits.isascii():
            raise ValueError(f"destination {raw!r}: a prefix is + and 1-15 digits, e.g. +4850")
        return digits
    region = value.upper()
    if len(region) == 2 and region.isalpha():
        code = phonenumbers.country_code_for_region(region)
        if not code:
            raise ValueError(f"destination {raw!r}: not a country code (ISO 3166, e.g. PL)")
        if len(phonenumbers.region_codes_for_country_code(code)) > 1:
            raise ValueError(
                f"destination {raw!r}: +{code} is shared by several countries; "
                f"price it by prefix (+{code}, or longer)"
            )
        return str(code)
    raise ValueError(f"destination {raw!r}: write a prefix (+4850), a country (PL) or *")


class PriceBook:
    """Every price list, indexed for look-ups."""

    def __init__(self, entries: Iterable[PriceEntry]) -> None:
        # scope (account id or None) → prefix → (valid_from sorted, entries in the same order)
        index: dict[int | None, dict[str, list[PriceEntry]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for e in entries:
            index[e.account_id][e.prefix].append(e)
        self._lists: dict[int | None, dict[str, tuple[list[float], list[PriceEntry]]]] = {}
        self._max_len = 0
        for scope, prefixes in index.items():
            table = {}
            for prefix, rows in prefixes.items():
                rows.sort(key=lambda e: e.valid_from)
                table[prefix] = ([e.valid_from for e in rows], rows)
                self._max_len = max(self._max_len, len(prefix))
            self._lists[scope] = table
        self.empty = not self._lists

    def _search(self, scope: int | None, digits: str, at: float) -> PriceEntry | None:
        table = self._lists.get(scope)
        if not table:
            return None
        for n in range(min(len(digits), self._max_len), -1, -1):
            found = table.get(digits[:n])
            if found is None:
                continue
            starts, rows = found
            i = bisect.bisect_right(starts, at)
            if i:
                return rows[i - 1]
        return None

    def quote(self, account_id: int, phone: str, at: float) -> Quote | None:
        """The price per part to ``phone`` (E.164) for ``account_id`` at ``at``; None: unpriced."""
        digits = phone[1:] if phone.startswith("+") else phone
        entry = self._search(account_id, digits, at) or self._search(None, digits, at)
        return None if entry is None else Quote(entry.price, entry.currency, entry)
