"""Quiet hours: send windows in the recipient's local time (docs/campaigns.md, "Quiet hours").

A window is ``HH:MM-HH:MM`` in the recipient's zone (``08:00-21:00``; ``22:00-06:00`` crosses
midnight). The zone comes from the number (phonenumbers' timezone data, by prefix), or from
the operator's per-country setting (``SMSDISPATCH_SEND_WINDOW_ZONES=RU=Europe/Moscow,...``),
which wins. A number whose prefix spans several zones (a mobile range of a country with many)
is sent only when the window is open in every one of them: quiet hours exist so nobody is
woken up, and we cannot tell which of the zones the phone is in; the per-country setting is
how an operator picks one instead.

Pure functions of (time, window, zones): the API holds a message until its window opens, and
the sender checks again when it claims it (a backlog or a retry can reach the window's end).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as number_zones

_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
DAY_MIN = 24 * 60
_UNKNOWN = "Etc/Unknown"
FOLLOW, IGNORE = "follow", "ignore"  # timeRestriction: wait for the window, or send anyway
MODES = (FOLLOW, IGNORE)


class InvalidWindow(ValueError):
    """A window or a zone setting that cannot be used; ``message`` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class SendWindow:
    """Minutes of the day (local) from ``start`` (included) to ``end`` (excluded)."""

    start: int
    end: int

    def __str__(self) -> str:
        return (
            f"{self.start // 60:02d}:{self.start % 60:02d}-{self.end // 60:02d}:{self.end % 60:02d}"
        )

    def is_open(self, minute: int) -> bool:
        """Whether ``minute`` (of the local day) is inside the window."""
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end  # across midnight


def parse_window(text: str) -> SendWindow:
    """``"08:00-21:00"`` → :class:`SendWindow`; raises :class:`InvalidWindow`."""
    m = _WINDOW.match(text or "")
    if m is None:
        raise InvalidWindow("expected HH:MM-HH:MM in the recipient's local time, e.g. 08:00-21:00")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
        raise InvalidWindow("hours are 00-23 (24:00 for the end of the day), minutes 00-59")
    window = SendWindow(h1 * 60 + m1, (h2 * 60 + m2) % DAY_MIN)
    if window.start == window.end:
        raise InvalidWindow("the window starts where it ends: send at any hour by leaving it out")
    return window


@lru_cache(maxsize=8)
def parse_zones(text: str) -> dict[str, str]:
    """``"RU=Europe/Moscow,US=America/Chicago"`` → {country: zone}; raises
    :class:`InvalidWindow` naming the bad entry. Cached: callers must not change the answer."""
    out: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        country, _, zone = item.partition("=")
        country, zone = country.strip().upper(), zone.strip()
        if len(country) != 2 or not country.isalpha():
            raise InvalidWindow(f"{item.strip()!r}: expected COUNTRY=Zone, e.g. RU=Europe/Moscow")
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidWindow(f"{item.strip()!r}: unknown time zone {zone!r}") from None
        out[country] = zone
    return out


@lru_cache(maxsize=4096)
def _number_zones(phone: str) -> tuple[str, tuple[str, ...]]:
    try:
        number = phonenumbers.parse(phone)
    except phonenumbers.NumberParseException:
        return "", ()
    zones = tuple(z for z in number_zones.time_zones_for_number(number) if z != _UNKNOWN)
    return phonenumbers.region_code_for_number(number) or "", zones


def zones_for(phone: str, overrides: Mapping[str, str]) -> tuple[str, ...]:
    """The zones ``phone`` (E.164) may be in: the country's configured zone, else those
    phonenumbers knows for its prefix; ``("UTC",)`` when nothing is known."""
    country, zones = _number_zones(phone)
    if country in overrides:
        return (overrides[country],)
    return zones or ("UTC",)


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _open_in(at: float, window: SendWindow, zone: str) -> bool:
    local = datetime.fromtimestamp(at, _zone(zone))
    return window.is_open(local.hour * 60 + local.minute)


def _openings(after: float, window: SendWindow, zone: str, days: int = 8) -> list[float]:
    """The window's next starts in ``zone`` (unix seconds), from the local day of ``after``."""
    tz = _zone(zone)
    day = datetime.fromtimestamp(after, tz).replace(hour=0, minute=0, second=0, microsecond=0)
    out = []
    for d in range(days):
        local = (day + timedelta(days=d)).replace(tzinfo=None) + timedelta(minutes=window.start)
        out.append(local.replace(tzinfo=tz).timestamp())
    return out


def next_open(now: float, window: SendWindow, zones: Sequence[str]) -> float:
    """When a message may be sent: ``now`` when the window is open in every zone, else the
    next window start (in one of the zones) at which it is open in all of them. Zones whose
    windows never meet (a short window over a country spanning many hours) fall back to the
    first zone alone rather than holding the message until it expires."""
    if all(_open_in(now, window, z) for z in zones):
        return now
    starts = sorted(t for z in zones for t in _openings(now, window, z) if t > now)
    for t in starts:
        if all(_open_in(t, window, z) for z in zones):
            return t
    return next(t for t in _openings(now, window, zones[0]) if t > now)
