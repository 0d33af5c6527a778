"""Routing to carrier connections: configuration, validation and route look-up.

Plain Python in the producer package, because the API refuses unrouteable destinations and
the workers choose a route at send time from the same table.
"""

from __future__ import annotations

from dispatcher.routing.current import current_table
from dispatcher.routing.loader import ConfigError, implicit, load, load_file
from dispatcher.routing.model import (
    DEFAULT_CONNECTION,
    BreakerConfig,
    ConnectionConfig,
    Credentials,
    RoutingConfig,
)
from dispatcher.routing.table import RoutingTable, Tier

__all__ = [
    "DEFAULT_CONNECTION",
    "BreakerConfig",
    "ConfigError",
    "ConnectionConfig",
    "Credentials",
    "RoutingConfig",
    "RoutingTable",
    "Tier",
    "current_table",
    "implicit",
    "load",
    "load_file",
]
