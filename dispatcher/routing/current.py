"""The process's routing table, loaded once per settings object (at start, never at import)."""

from __future__ import annotations

from dispatcher.config import Settings
from dispatcher.routing.loader import load
from dispatcher.routing.table import RoutingTable

_tables: dict[Settings, RoutingTable] = {}
# Hashing a whole Settings object costs more than the lookup: remember the last one by identity
# (a process holds one Settings object; the dict above serves tests that make several).
_last: tuple[Settings, RoutingTable] | None = None


def current_table(settings: Settings) -> RoutingTable:
    """The table for ``settings`` (its connections file, or the implicit default), cached.

    A file is read once per process: a changed file takes effect on restart, as every other
    setting does (so the API and the workers never disagree for long about what is routable).
    """
    global _last
    if _last is not None and _last[0] is settings:
        return _last[1]
    table = _tables.get(settings)
    if table is None:
        table = _tables[settings] = RoutingTable(load(settings))
    _last = (settings, table)
    return table
