"""Re-export of :mod:`dispatcher.ratelimit.limiter` (the implementation moved there)."""

from dispatcher.ratelimit.limiter import *  # noqa: F403
from dispatcher.ratelimit.limiter import __all__ as __all__
