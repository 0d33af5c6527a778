"""GCRA rate limiting shared by producer and workers (pure core, memory and Redis Lua backends).

Layout: :mod:`.gcra` is the pure algorithm, :mod:`.memory` and :mod:`.redis_backend` are
backends (the latter a Lua port using Redis server time), :mod:`.limiter` is the waiting facade.
It lives on the producer side so that the API's per-account limits and the workers'
per-connection limits run one implementation.
Nothing connects at import time.
"""

from .backend import AsyncRateLimitBackend, RateLimitBackend
from .errors import InvalidRequest, RateLimitError, RateLimitUnavailable
from .gcra import Decision, Rate, decide, decide_prefix
from .limiter import DEFAULT_KEY_PREFIX, AsyncLimiter, Limiter, WaitHook
from .memory import AsyncMemoryRateLimitBackend, MemoryRateLimitBackend
from .redis_backend import AsyncRedisRateLimitBackend, RedisRateLimitBackend

__all__ = [
    "DEFAULT_KEY_PREFIX",
    "AsyncLimiter",
    "AsyncMemoryRateLimitBackend",
    "AsyncRateLimitBackend",
    "AsyncRedisRateLimitBackend",
    "Decision",
    "InvalidRequest",
    "Limiter",
    "MemoryRateLimitBackend",
    "Rate",
    "RateLimitBackend",
    "RateLimitError",
    "RateLimitUnavailable",
    "RedisRateLimitBackend",
    "WaitHook",
    "decide",
    "decide_prefix",
]
