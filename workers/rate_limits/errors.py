"""Re-export of :mod:`dispatcher.ratelimit.errors` (the implementation moved there)."""

from dispatcher.ratelimit.errors import *  # noqa: F403
from dispatcher.ratelimit.errors import __all__ as __all__
