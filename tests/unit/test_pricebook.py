"""Price lists: longest prefix, the account's list before the default, effective dates; money;
the carrier's cost per connection."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.billing.money import MoneyError, currency, format_minor, to_minor
from dispatcher.billing.pricebook import PriceBook, PriceEntry, destination_prefix
from dispatcher.config import Settings
from dispatcher.routing.loader import ConfigError, parse

PLN = 985
ACME = 7
NOW = 1_800_000_000.0


def entry(prefix: str, price: int, account: int | None = None, at: float = 0.0) -> PriceEntry:
    return PriceEntry(account, prefix, price, PLN, at)


def price(book: PriceBook, phone: str, account: int = ACME, at: float = NOW) -> int | None:
    quote = book.quote(account, phone, at)
    return None if quote is None else quote.price


def test_the_longest_prefix_wins_whatever_the_order_of_entries() -> None:
    entries = [entry("48", 7), entry("4850", 5), entry("485012", 3), entry("", 20)]
    for ordering in (entries, entries[::-1]):
        book = PriceBook(ordering)
        assert price(book, "+48501234567") == 3
        assert price(book, "+48502999999") == 5
        assert price(book, "+48600100200") == 7
        assert price(book, "+4930123456") == 20  # only the catch-all "*"


def test_without_a_catch_all_an_unlisted_destination_has_no_price() -> None:
    book = PriceBook([entry("48", 7)])
    assert price(book, "+4930123456") is None
    assert PriceBook([]).empty


def test_the_accounts_list_comes_first_and_the_default_fills_its_gaps() -> None:
    book = PriceBook([entry("48", 7), entry("4850", 4), entry("4850", 2, account=ACME)])
    assert price(book, "+48500100200") == 2  # the account's own
    assert price(book, "+48600100200") == 7  # not in the account's list: the default
    assert price(book, "+48500100200", account=99) == 4  # another account: the default
    # The account's shorter prefix beats the default's longer one: its list is searched first.
    book = PriceBook([entry("4850", 4), entry("48", 6, account=ACME)])
    assert price(book, "+48500100200") == 6


def test_effective_dates_pick_the_latest_entry_in_force() -> None:
    book = PriceBook([entry("48", 7, at=NOW - 100), entry("48", 9, at=NOW + 100)])
    assert price(book, "+48600100200", at=NOW) == 7
    assert price(book, "+48600100200", at=NOW + 100) == 9  # on the second
    assert price(book, "+48600100200", at=NOW - 101) is None  # before any entry


def test_an_entry_not_yet_in_force_does_not_hide_a_shorter_prefix() -> None:
    book = PriceBook([entry("48", 7), entry("4850", 5, at=NOW + 3600)])
    assert price(book, "+48500100200") == 7
    assert price(book, "+48500100200", at=NOW + 3600) == 5


def test_destinations_as_the_operator_writes_them() -> None:
    assert destination_prefix("+4850") == "4850"
    assert destination_prefix(" pl ") == "48"
    assert destination_prefix("*") == ""
    for bad, says in (
        ("US", "shared by several countries"),
        ("+48a", "+ and 1-15 digits"),
        ("+", "+ and 1-15 digits"),
        ("XX", "not a country code"),
        ("Poland", "write a prefix"),
    ):
        with pytest.raises(ValueError, match=re.escape(says)):
            destination_prefix(bad)


def test_amounts_are_whole_minor_units() -> None:
    pln = currency("pln")
    assert currency(985) is pln and currency("985") is pln
    assert to_minor("0.07", pln) == 7
    assert to_minor("12", pln) == 1200
    assert to_minor("-1.50", pln, allow_negative=True) == -150
    assert to_minor("5", currency("JPY")) == 5
    with pytest.raises(MoneyError, match="more than 2 decimals"):
        to_minor("0.045", pln)
    with pytest.raises(MoneyError, match="negative"):
        to_minor("-1", pln)
    with pytest.raises(MoneyError, match="not an amount"):
        to_minor("1,5", pln)
    with pytest.raises(MoneyError, match="unknown currency"):
        currency("XYZ")
    assert format_minor(12345, PLN) == "123.45"
    assert format_minor(-5, PLN) == "-0.05"
    assert format_minor(0, PLN) == "0.00"
    assert format_minor(700, 392) == "700"


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_formatting_and_parsing_round_trip(minor: int) -> None:
    assert to_minor(format_minor(minor, PLN), currency("PLN"), allow_negative=True) == minor


@given(
    st.lists(st.text("0123456789", min_size=0, max_size=4), min_size=1, max_size=8),
    st.text("0123456789", min_size=6, max_size=12),
)
def test_the_quote_is_the_longest_listed_prefix_of_the_number(
    prefixes: list[str], digits: str
) -> None:
    book = PriceBook([entry(p, len(p) + 1) for p in set(prefixes)])
    matching = [p for p in set(prefixes) if digits.startswith(p)]
    expected = max(len(p) for p in matching) + 1 if matching else None
    assert price(book, "+" + digits) == expected


def _connection(**extra: object) -> dict[str, object]:
    return {"name": "c1", "type": "simulator", "url": "http://127.0.0.1:9", "tps": 10, **extra}


def test_a_connections_carrier_cost_is_validated_naming_the_key() -> None:
    settings = Settings()
    config = parse({"connections": [_connection(fallback=True)]}, "c.toml", settings, {})
    assert config.connections[0].cost_per_part is None
    config = parse(
        {"connections": [_connection(fallback=True, cost_per_part="0.03", cost_currency="PLN")]},
        "c.toml",
        settings,
        {},
    )
    assert (config.connections[0].cost_per_part, config.connections[0].cost_currency) == (3, PLN)
    for extra, key in (
        ({"cost_per_part": "0.035", "cost_currency": "PLN"}, "cost_per_part"),
        ({"cost_per_part": "0.03", "cost_currency": "XYZ"}, "cost_currency"),
        ({"cost_per_part": 0.03, "cost_currency": "PLN"}, "cost_per_part"),
        ({"cost_currency": "PLN"}, "cost_currency"),
    ):
        with pytest.raises(ConfigError, match=re.escape(key)):
            parse({"connections": [_connection(fallback=True, **extra)]}, "c.toml", settings, {})
