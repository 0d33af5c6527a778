"""Re-export of :mod:`dispatcher.ratelimit.memory` (the implementation moved there)."""

from dispatcher.ratelimit.memory import *  # noqa: F403
from dispatcher.ratelimit.memory import __all__ as __all__
