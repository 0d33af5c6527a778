"""Pure GCRA (generic cell rate algorithm) with prefix grants for batches.

All times are **integer microseconds** so that the Lua port in :mod:`.redis_backend`
computes bit-identical results: Lua numbers are IEEE doubles, which represent every integer
below 2**53 exactly (epoch microseconds are ~1.7e15), and Redis ``TIME`` returns seconds plus
microseconds. Only :attr:`Decision.retry_after` is a float (seconds, ready for ``sleep``).

Model: every unit (one SMS part) advances the *theoretical arrival time* (TAT) by
:attr:`Rate.interval_us`. A request whose cost is ``c`` units is conforming at ``now`` when
``max(tat, now) - now <= max(tolerance_us - c * interval_us, 0)``, where
``tolerance_us = burst * interval_us``. Consequences:

* from idle, ``burst`` units may be sent at once; afterwards one unit per interval;
* over any closed window of length ``W`` seconds at most ``rate * W + max(burst, c_max)``
  units are granted (``c_max`` the largest single cost granted);
* a single request costing more than ``burst`` is granted only once the limiter is idle
  (``tat <= now``), so long multi-part messages are never starved.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import InvalidRequest

__all__ = [
    "DEFAULT_BURST_FRACTION",
    "DEFAULT_MIN_BURST",
    "MICROS",
    "Decision",
    "Rate",
    "decide",
    "decide_prefix",
    "validate_costs",
]

MICROS = 1_000_000
"""Microseconds per second."""

DEFAULT_BURST_FRACTION = 0.01
"""Default burst tolerance as a fraction of the per-second rate (rounded down)."""

DEFAULT_MIN_BURST = 2
"""Lower bound of the default burst, so a waiter that wakes a little late loses nothing."""


@dataclass(frozen=True, init=False)
class Rate:
    """A sustained rate in units (SMS parts) per second plus a burst tolerance in units.

    ``burst`` defaults to ``max(2, floor(per_second * 0.01))``: 5 units at 500/s, i.e. any
    1-second window holds at most ``per_second + burst`` units, and a waiter may be up to
    ``(burst - 1)`` intervals late without the connection losing capacity.

    The interval per unit is rounded *up* to whole microseconds, so the effective rate never
    exceeds ``per_second`` (rates above 1,000,000/s are capped there).
    """

    per_second: float
    burst: int

    def __init__(self, per_second: float, burst: int | None = None) -> None:
        if not (isinstance(per_second, int | float) and math.isfinite(per_second)):
            raise InvalidRequest(f"rate must be a finite number, got {per_second!r}")
        if per_second <= 0:
            raise InvalidRequest(f"rate must be positive, got {per_second!r}")
        if burst is None:
            burst = max(DEFAULT_MIN_BURST, math.floor(per_second * DEFAULT_BURST_FRACTION))
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise InvalidRequest(f"burst must be an integer >= 1, got {burst!r}")
        object.__setattr__(self, "per_second", float(per_second))
        object.__setattr__(self, "burst", burst)

    @property
    def interval_us(self) -> int:
        """Emission interval of one unit in whole microseconds (rounded up, at least 1)."""
        # round() first so that e.g. 1e6 / 500 == 2000.0000000001 cannot become 2001.
        return max(1, math.ceil(round(MICROS / self.per_second, 6)))

    @property
    def tolerance_us(self) -> int:
        """Burst tolerance in microseconds (``burst * interval_us``)."""
        return self.burst * self.interval_us


@dataclass(frozen=True, slots=True)
class Decision:
    """Outcome of one limiter request.

    Attributes:
        granted: how many leading items of the request were granted (0 = throttled).
        new_tat: theoretical arrival time after the decision, integer microseconds.
        retry_after: seconds until the first *not* granted item would conform
            (0.0 when everything was granted). Sleep exactly this long, then ask again.
    """

    granted: int
    new_tat: int
    retry_after: float


def validate_costs(costs: Sequence[int]) -> None:
    """Raise :class:`InvalidRequest` unless ``costs`` is a non-empty sequence of ints >= 1."""
    if len(costs) == 0:
        raise InvalidRequest("costs must not be empty")
    for cost in costs:
        if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
            raise InvalidRequest(f"every cost must be an integer >= 1, got {cost!r}")


def decide_prefix(tat: int | None, now: int, rate: Rate, costs: Sequence[int]) -> Decision:
    """Grant the longest prefix of ``costs`` that conforms at ``now`` (microseconds).

    ``tat`` is the stored theoretical arrival time (``None`` when there is no state). This is
    the reference the Lua script in :mod:`.redis_backend` ports line by line; keep them equal.
    """
    validate_costs(costs)
    interval = rate.interval_us
    tolerance = rate.tolerance_us
    current = now if tat is None or tat < now else tat
    granted = 0
    retry_us = 0
    for cost in costs:
        increment = interval * cost
        allowed = max(tolerance - increment, 0)
        if current - now > allowed:
            retry_us = current - allowed - now
            break
        current += increment
        granted += 1
    return Decision(granted=granted, new_tat=current, retry_after=retry_us / MICROS)


def decide(tat: int | None, now: int, rate: Rate, want: int, cost_per_unit: int = 1) -> Decision:
    """Grant the largest ``n <= want`` items of equal cost that conform at ``now`` in O(1).

    Equivalent to ``decide_prefix(tat, now, rate, [cost_per_unit] * want)``.
    """
    if isinstance(want, bool) or not isinstance(want, int) or want < 1:
        raise InvalidRequest(f"want must be an integer >= 1, got {want!r}")
    validate_costs((cost_per_unit,))
    increment = rate.interval_us * cost_per_unit
    allowed = max(rate.tolerance_us - increment, 0)
    current = now if tat is None or tat < now else tat
    ahead = current - now
    if ahead > allowed:
        return Decision(granted=0, new_tat=current, retry_after=(ahead - allowed) / MICROS)
    granted = min(want, (allowed - ahead) // increment + 1)
    new_tat = current + granted * increment
    retry_us = 0 if granted == want else new_tat - allowed - now
    return Decision(granted=granted, new_tat=new_tat, retry_after=retry_us / MICROS)
