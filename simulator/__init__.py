"""Carrier simulator: a small, fast stand-in for a mobile operator's SMS HTTP API.

Run it with ``python -m simulator --port 9090`` or embed it in tests with
:class:`simulator.server.SimulatorThread`.  See ``docs/simulator.md`` for the HTTP API.
"""

from simulator.config import SimConfig

__all__ = ["SimConfig"]
