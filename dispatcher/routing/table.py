"""Route look-up: which connections may carry a message, best first.

For a destination (E.164), the lane and the account:

1. keep the connections whose lane and account filters allow the message;
2. match their destinations: a ``+`` prefix matches by digits, a country code ("PL") by the
   number's region (phonenumbers); a country counts as long as its calling code. The longest
   match wins; shorter matches (e.g. a country-wide route under an operator's prefix) are the
   next routes, used only while every longer one is down;
3. within one match length, ``preference`` orders primaries before backups;
4. no match at all: the ``fallback`` connections, if any are configured; else unrouteable.

The result is a list of *tiers*; connections in one tier share traffic by weight.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import phonenumbers

from dispatcher.routing.model import ConnectionConfig, RoutingConfig

Tier = tuple[ConnectionConfig, ...]


@dataclass(frozen=True)
class _Entry:
    length: int  # match length in digits: the longer, the more specific
    connection: ConnectionConfig


class RoutingTable:
    """Indexes a :class:`RoutingConfig` for fast look-ups (a dict probe per prefix length)."""

    def __init__(self, config: RoutingConfig) -> None:
        self.config = config
        self._prefixes: dict[str, list[_Entry]] = defaultdict(list)
        self._regions: dict[str, list[_Entry]] = defaultdict(list)
        self._fallback = [c for c in config.connections if c.fallback]
        for c in config.connections:
            for dest in c.destinations:
                if dest.startswith("+"):
                    self._prefixes[dest[1:]].append(_Entry(len(dest) - 1, c))
                    continue
                code = phonenumbers.country_code_for_region(dest)
                entry = _Entry(len(str(code)), c)
                if len(phonenumbers.region_codes_for_country_code(code)) == 1:
                    # The calling code belongs to this country alone: a plain prefix, no parse.
                    self._prefixes[str(code)].append(entry)
                else:  # shared calling code (+1, +7, +44 …): the number decides its region
                    self._regions[dest].append(entry)
        self._max_len = max((len(p) for p in self._prefixes), default=0)

    def _matches(self, phone: str) -> list[_Entry]:
        digits = phone[1:] if phone.startswith("+") else phone
        found: list[_Entry] = []
        for n in range(min(len(digits), self._max_len), 0, -1):
            found.extend(self._prefixes.get(digits[:n], ()))
        if self._regions:
            try:
                number = phonenumbers.parse("+" + digits)
            except phonenumbers.NumberParseException:
                number = None
            region = None
            if number is not None:
                # A number phonenumbers cannot place (an unallocated range) belongs to the
                # main country of its calling code.
                region = phonenumbers.region_code_for_number(
                    number
                ) or phonenumbers.region_code_for_country_code(number.country_code or 0)
            if region:
                found.extend(self._regions.get(region, ()))
        return found

    def tiers(self, phone: str, lane: str, account: str | None = None) -> list[Tier]:
        """Connections that may carry a message to ``phone``, best tier first; ``[]``: none."""
        entries = [e for e in self._matches(phone) if e.connection.serves(lane, account)]
        if not entries:
            entries = [_Entry(0, c) for c in self._fallback if c.serves(lane, account)]
        groups: dict[tuple[int, int], list[ConnectionConfig]] = defaultdict(list)
        for e in entries:
            bucket = groups[(-e.length, e.connection.preference)]
            if e.connection not in bucket:
                bucket.append(e.connection)
        out: list[Tier] = []
        seen: set[str] = set()
        for key in sorted(groups):
            tier = tuple(c for c in groups[key] if c.name not in seen)
            seen.update(c.name for c in tier)
            if tier:
                out.append(tier)
        return out

    def routable(self, phone: str, lane: str, account: str | None = None) -> bool:
        """Whether any connection may carry a message to ``phone`` (the API's check).

        Runs for every recipient on the accept path, so it stops at the first match instead of
        building and sorting the tiers."""
        if any(e.connection.serves(lane, account) for e in self._matches(phone)):
            return True
        return any(c.serves(lane, account) for c in self._fallback)

    def uses_accounts(self) -> bool:
        """Whether any connection filters by account (callers then need the account name)."""
        return any(c.accounts for c in self.config.connections)
