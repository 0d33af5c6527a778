"""Re-export of :mod:`dispatcher.ratelimit.redis_backend` (the implementation moved there)."""

from dispatcher.ratelimit.redis_backend import *  # noqa: F403
from dispatcher.ratelimit.redis_backend import __all__ as __all__
