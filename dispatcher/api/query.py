"""Query parameters of the listings, in every spelling the original API's clients send.

Clients of the original build query strings in many ways: ``orderBy=id`` (a common default),
``orderDirection=asc``, and numbers or UTC offsets with a bare ``+``, which a query string
decodes as a space (``?phoneNumber=+48…`` arrives as `` 48…``). Each is read here, once, for
every listing; what still makes no sense is a 400 ``invalid_query`` naming the parameter.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from dispatcher.errors import ApiError
from dispatcher.sms import InvalidPhoneNumber, normalize
from dispatcher.store.queries import ORDER_COLUMNS

_ORDER_KEYS = {k.lower(): k for k in ORDER_COLUMNS}
_SPACED_OFFSET = re.compile(r" (\d{2}(?::?\d{2})?)$")  # "…T10:00:00 01:00": a "+" decoded


def split(value: str | None) -> tuple[str, ...]:
    """A comma-separated parameter's items, trimmed, empty ones dropped."""
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else ()


def phones(value: str | None, region: str | None, name: str = "phoneNumber") -> tuple[str, ...]:
    """The E.164 numbers of a comma-separated phone filter.

    An item that is not a number as written, but is one with a ``+`` in front of it, lost its
    ``+`` to query-string decoding (a client that did not encode it as ``%2B``)."""
    out: list[str] = []
    for raw in value.split(",") if value else ():
        item = raw.strip()
        if not item:
            continue
        try:
            out.append(normalize(item, region))
            continue
        except InvalidPhoneNumber as exc:
            problem = exc
        if raw.startswith(" ") and item[:1].isdigit():
            try:
                out.append(normalize("+" + item, region))
                continue
            except InvalidPhoneNumber:
                pass
        raise ApiError("invalid_query", problem.message, name, item)
    return tuple(out)


def unix_time(value: str | None, name: str) -> float | None:
    """Unix seconds from unix seconds or ISO 8601 (UTC unless it has an offset)."""
    if value is None or value == "":
        return None
    if value.replace(".", "", 1).isdigit():
        return float(value)
    text = _SPACED_OFFSET.sub(r"+\1", value.replace("Z", "+00:00"))
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError("invalid_query", "use ISO 8601 (UTC) or unix seconds", name, value) from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def order_key(value: str) -> str:
    """The ``orderBy`` key ``value`` names (any letter case); 400 naming ``orderBy`` else."""
    key = _ORDER_KEYS.get(value.strip().lower())
    if key is None:
        accepted = ", ".join(ORDER_COLUMNS)
        raise ApiError("invalid_query", f"orderBy is one of {accepted}", "orderBy", value)
    return key


def direction(value: str) -> bool:
    """True for descending; ``ASC``/``DESC`` in any letter case, else a 400 naming it."""
    word = value.strip().upper()
    if word not in ("ASC", "DESC"):
        raise ApiError("invalid_query", "orderDirection is ASC or DESC", "orderDirection", value)
    return word == "DESC"
