"""Amounts in a currency's minor unit (grosze, cents), as the original API's ``smsPrice`` is.

Every amount is an ``int`` of minor units: no float ever touches money. The currencies are the
ISO 4217 ones an SMS operator is likely to bill in, with their numeric code (the original's
``currency`` field) and the number of decimals of their minor unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation


@dataclass(frozen=True)
class Currency:
    """An ISO 4217 currency."""

    alpha: str  # "PLN"
    numeric: int  # 985, the original's ``currency``
    exponent: int  # decimals of the minor unit: 2 for PLN, 0 for JPY


_TABLE = (
    Currency("PLN", 985, 2),
    Currency("EUR", 978, 2),
    Currency("USD", 840, 2),
    Currency("GBP", 826, 2),
    Currency("CHF", 756, 2),
    Currency("CZK", 203, 2),
    Currency("HUF", 348, 2),
    Currency("RON", 946, 2),
    Currency("BGN", 975, 2),
    Currency("SEK", 752, 2),
    Currency("NOK", 578, 2),
    Currency("DKK", 208, 2),
    Currency("UAH", 980, 2),
    Currency("TRY", 949, 2),
    Currency("CAD", 124, 2),
    Currency("AUD", 36, 2),
    Currency("JPY", 392, 0),
    Currency("KRW", 410, 0),
)
_BY_ALPHA = {c.alpha: c for c in _TABLE}
_BY_NUMERIC = {c.numeric: c for c in _TABLE}


class MoneyError(ValueError):
    """An amount or currency an operator typed that cannot be used; the text says why."""


def currency(code: str | int) -> Currency:
    """The currency for ``PLN`` or ``985``; :class:`MoneyError` for anything else."""
    raw = str(code).strip().upper()
    found = _BY_NUMERIC.get(int(raw)) if raw.isdigit() else _BY_ALPHA.get(raw)
    if found is None:
        known = ", ".join(sorted(_BY_ALPHA))
        raise MoneyError(f"unknown currency {code!r} (use one of {known}, or its ISO number)")
    return found


def by_numeric(numeric: int) -> Currency | None:
    """The currency with ISO number ``numeric``, if it is one we know."""
    return _BY_NUMERIC.get(numeric)


def to_minor(amount: str, cur: Currency, *, allow_negative: bool = False) -> int:
    """``"12.34"`` in ``cur`` as minor units (1234); refuses what the minor unit cannot hold."""
    try:
        value = Decimal(amount.strip())
    except InvalidOperation:
        raise MoneyError(f"not an amount: {amount!r} (write e.g. 12.34)") from None
    if not value.is_finite():
        raise MoneyError(f"not an amount: {amount!r}")
    minor = value.scaleb(cur.exponent)
    if minor != minor.to_integral_value():
        raise MoneyError(
            f"{amount} {cur.alpha} has more than {cur.exponent} decimals: prices and amounts "
            f"are whole {cur.alpha} minor units"
        )
    if minor < 0 and not allow_negative:
        raise MoneyError(f"{amount}: must not be negative")
    if abs(minor) >= 10**15:
        raise MoneyError(f"{amount}: too large")
    return int(minor)


def format_minor(minor: int, numeric: int) -> str:
    """Minor units as the decimal string the original's ``accountBalance`` is (``"123.45"``)."""
    cur = _BY_NUMERIC.get(numeric)
    exponent = cur.exponent if cur else 2
    if exponent == 0:
        return str(minor)
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 10**exponent)
    return f"{sign}{whole}.{frac:0{exponent}d}"


def currency_name(numeric: int) -> str:
    """``PLN`` for 985; the number itself for a currency we do not know."""
    cur = _BY_NUMERIC.get(numeric)
    return cur.alpha if cur else f"ISO {numeric}"
