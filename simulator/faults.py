"""Fault decisions: injected errors, timeouts, throttling (random, bursts, TPS cap), rejects.

All randomness comes from seeded :class:`random.Random` instances so runs are repeatable.
Time is the simulator's own wall clock (``time.time()``), the same clock the records use.
"""

from __future__ import annotations

import math
import random
import time

from simulator.config import SimConfig

#: Verdicts of :meth:`Faults.check`.
OK = 0
ERROR = 1
TIMEOUT = 2
THROTTLE = 3
THROTTLE_TPS = 4


def _digits(prefix: str) -> str:
    """Normalise a number or prefix for prefix matching (drop a leading ``+``)."""
    return prefix[1:] if prefix.startswith("+") else prefix


class Faults:
    """Decides, per request, whether to inject a fault; holds the TPS token bucket."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.rng = random.Random()
        #: Mixed into the seed so that worker processes draw different sequences.
        self.seed_salt = ""
        self.latency_rng = random.Random()
        self.active = False
        self.has_latency = False
        self.reject_prefixes: tuple[str, ...] = ()
        #: Fraction of the TPS cap this process enforces (1/N with N worker processes).
        self.share = 1.0
        self._tps_rate = 0.0
        self._tps_capacity = 0.0
        self._tokens = 0.0
        self._tokens_at = 0.0
        self._burst_t0 = 0.0
        self.reseed()
        self.reconfigure()

    def reseed(self) -> None:
        """Reset the random generators to the configured seed."""
        seed = self.config.seed
        self.rng.seed(f"{seed}:faults{self.seed_salt}")
        self.latency_rng.seed(f"{seed}:latency{self.seed_salt}")

    def reconfigure(self, changed: list[str] | None = None) -> None:
        """Recompute derived settings after a config change (``None``: everything changed)."""
        c = self.config
        everything = changed is None
        if everything or "seed" in (changed or ()):
            self.reseed()
        self.active = bool(
            c.error_rate
            or c.timeout_rate
            or c.throttle_rate
            or (c.throttle_burst_every_s and c.throttle_burst_len_s)
            or c.tps_cap
        )
        self.has_latency = bool(c.latency_ms or c.latency_jitter_ms)
        self.reject_prefixes = tuple(_digits(p) for p in c.reject_prefixes)
        bucket_fields = {"tps_cap", "tps_burst"}
        if everything or bucket_fields.intersection(changed or ()):
            self.reset_bucket()
        if everything or {"throttle_burst_every_s", "throttle_burst_len_s"}.intersection(
            changed or ()
        ):
            self._burst_t0 = time.time()

    def reset_bucket(self, now: float | None = None) -> None:
        """Refill the TPS token bucket."""
        share = self.share
        self._tps_rate = self.config.tps_cap * share
        self._tps_capacity = max(1.0, self.config.effective_tps_burst() * share)
        self._tokens = self._tps_capacity
        self._tokens_at = time.time() if now is None else now

    def reset(self) -> None:
        """Reseed, refill the bucket and restart the burst cycle (used by ``/_sim/reset``)."""
        self.reseed()
        self.reset_bucket()
        self._burst_t0 = time.time()

    def check(self, now: float, tokens: int) -> tuple[int, float]:
        """Decide the fate of one request carrying ``tokens`` messages.

        Returns ``(verdict, retry_after_s)``; ``retry_after_s`` only matters for throttling.
        The TPS bucket is charged only for requests that pass every other fault.
        """
        c = self.config
        rng = self.rng
        if c.timeout_rate and rng.random() < c.timeout_rate:
            return TIMEOUT, 0.0
        if c.error_rate and rng.random() < c.error_rate:
            return ERROR, 0.0
        if c.throttle_rate and rng.random() < c.throttle_rate:
            return THROTTLE, c.throttle_retry_after_s
        every = c.throttle_burst_every_s
        if every and c.throttle_burst_len_s:
            phase = (now - self._burst_t0) % every
            if phase >= every - c.throttle_burst_len_s:
                return THROTTLE, every - phase
        if self._tps_rate:
            wait = self._take(now, tokens)
            if wait:
                return THROTTLE_TPS, wait
        return OK, 0.0

    def _take(self, now: float, n: int) -> float:
        """Take ``n`` tokens; return 0.0 on success or the seconds to wait before retrying.

        A request larger than the bucket is admitted once the bucket is full and leaves it in
        debt, so batches bigger than the burst size still go through at the configured rate.
        """
        rate = self._tps_rate
        capacity = self._tps_capacity
        elapsed = now - self._tokens_at
        tokens = self._tokens
        if elapsed > 0:
            tokens = min(capacity, tokens + elapsed * rate)
            self._tokens_at = now
        need = min(float(n), capacity)
        if tokens >= need - 1e-6:  # tolerate float error when a client waits exactly
            self._tokens = tokens - n
            return 0.0
        self._tokens = tokens
        return max((need - tokens) / rate, 0.001)

    def is_rejected(self, to: str) -> bool:
        """True if ``to`` starts with one of the configured reject prefixes."""
        return _digits(to).startswith(self.reject_prefixes) if self.reject_prefixes else False

    def latency_s(self) -> float:
        """Return this request's added latency in seconds (0 when none is configured)."""
        c = self.config
        ms = c.latency_ms
        if c.latency_jitter_ms:
            ms += self.latency_rng.uniform(-c.latency_jitter_ms, c.latency_jitter_ms)
        return max(ms, 0.0) / 1000.0


def format_retry_after(seconds: float) -> str:
    """Format a ``Retry-After`` value: seconds, fractional when below 10 s (e.g. ``0.05``)."""
    if seconds >= 10:
        return str(math.ceil(seconds))
    ms = max(1, math.ceil(seconds * 1000 - 1e-6))
    return f"{ms / 1000:g}"
