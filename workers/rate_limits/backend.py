"""Re-export of :mod:`dispatcher.ratelimit.backend` (the implementation moved there)."""

from dispatcher.ratelimit.backend import *  # noqa: F403
from dispatcher.ratelimit.backend import __all__ as __all__
