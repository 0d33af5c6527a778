"""Exceptions of the rate limiting package (one root: :class:`RateLimitError`)."""

from __future__ import annotations

__all__ = ["InvalidRequest", "RateLimitError", "RateLimitUnavailable"]


class RateLimitError(Exception):
    """Root of every exception raised by :mod:`dispatcher.ratelimit`."""


class RateLimitUnavailable(RateLimitError):
    """The shared limiter state could not be read or updated (Redis down, timeout, bad reply).

    Being throttled is *not* an error: it is reported as a :class:`~.gcra.Decision` with
    ``granted == 0``. This exception means "no decision could be made".
    """


class InvalidRequest(RateLimitError, ValueError):
    """A request or rate definition is malformed (no costs, a cost below 1, a bad rate)."""
