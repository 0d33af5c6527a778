"""Re-export of :mod:`dispatcher.ratelimit.gcra` (the implementation moved there)."""

from dispatcher.ratelimit.gcra import *  # noqa: F403
from dispatcher.ratelimit.gcra import __all__ as __all__
