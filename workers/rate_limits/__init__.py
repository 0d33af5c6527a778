"""Global per-carrier-connection rate limiting shared by every worker process (GCRA).

The implementation lives in :mod:`dispatcher.ratelimit` (the API's per-account limits use the
same one, and the producer side must not import ``workers``); this package keeps the names the
workers have always imported. Nothing connects at import time.
"""

from dispatcher.ratelimit import *  # noqa: F403
from dispatcher.ratelimit import __all__ as __all__
