"""Times as the API writes them: ISO 8601 UTC with milliseconds (``2026-11-26T16:45:12.345Z``)."""

from __future__ import annotations

import time
from functools import lru_cache


def iso_ms(ts: float) -> str:
    """Unix seconds → ISO 8601 UTC with milliseconds."""
    return _iso_ms(round(ts * 1000))


@lru_cache(maxsize=4096)
def _iso_ms(ms: int) -> str:
    # Cached: the messages of one submission share their times, so a large answer would
    # otherwise format the same instant once per message and timestamp.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"
