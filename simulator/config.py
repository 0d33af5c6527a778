"""Behaviour knobs of the simulator, settable from CLI flags and at runtime via ``/_sim/config``."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

#: Delivery-report states a carrier may send (SMPP-style ``stat`` values).
DLR_STATES: tuple[str, ...] = (
    "DELIVRD",
    "UNDELIV",
    "EXPIRED",
    "REJECTD",
    "DELETED",
    "UNKNOWN",
    "ACCEPTD",
)

#: Largest request body the simulator accepts (larger ones get 413).
MAX_BODY_BYTES = 8 * 1024 * 1024


def default_dlr_mix() -> dict[str, float]:
    """Return the default delivery outcome weights (95% delivered, 3% undeliverable, 2% expired)."""
    return {"DELIVRD": 95.0, "UNDELIV": 3.0, "EXPIRED": 2.0}


class ConfigError(ValueError):
    """Raised when a configuration update is invalid; the message is safe to show to clients."""


@dataclass
class SimConfig:
    """All behaviour knobs of the simulator.

    Rates are probabilities in ``[0, 1]``; durations are in the unit their name says.
    Every field can be changed at runtime with ``POST /_sim/config``.
    """

    #: Bearer token required on carrier endpoints (``None``: no auth).
    token: str | None = None
    #: Added response latency for carrier endpoints, and its uniform +/- jitter.
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    #: Probability of an injected ``500 internal`` answer.
    error_rate: float = 0.0
    #: Probability of holding a request unanswered for ``timeout_s`` and then closing.
    timeout_rate: float = 0.0
    timeout_s: float = 30.0
    #: If true, a timed-out submit is still recorded as accepted ("answer lost" semantics).
    timeout_accepts: bool = False
    #: Probability of a random ``429``, and the ``Retry-After`` it carries.
    throttle_rate: float = 0.0
    throttle_retry_after_s: float = 1.0
    #: Burst throttling: every ``throttle_burst_every_s`` seconds, the last
    #: ``throttle_burst_len_s`` seconds of the period answer everything with 429.
    throttle_burst_every_s: float = 0.0
    throttle_burst_len_s: float = 0.0
    #: Messages (recipients) per second allowed by a token bucket; 0 disables.
    tps_cap: float = 0.0
    #: Bucket capacity; 0 means ``max(1, tps_cap / 10)``.
    tps_burst: float = 0.0
    #: Destination prefixes that are permanently rejected (``unknown_subscriber``); number
    #: look-ups call them not valid (no such subscriber).
    reject_prefixes: list[str] = field(default_factory=list)
    #: Number look-ups (``POST /v1/hlr``): prefixes of numbers ported to another network, and
    #: of subscribers that are absent (handset off: not reachable).
    hlr_ported_prefixes: list[str] = field(default_factory=list)
    hlr_absent_prefixes: list[str] = field(default_factory=list)
    #: Largest number of recipients in one batch request.
    max_batch: int = 1000
    #: Keep the message text in the records (off by default: texts are never stored).
    keep_text: bool = False
    #: Seed of the random generators (faults, latency, delivery reports).
    seed: int = 1
    #: Delivery reports: target URL, bearer token, delay and its +/- jitter.
    dlr_url: str | None = None
    dlr_token: str | None = None
    dlr_delay_ms: float = 200.0
    dlr_jitter_ms: float = 0.0
    #: Outcome weights by ``stat``.
    dlr_mix: dict[str, float] = field(default_factory=default_dlr_mix)
    #: Probability that a report is sent twice.
    dlr_duplicate_rate: float = 0.0
    #: Shuffle reports within windows of ``dlr_reorder_window`` reports.
    dlr_reorder: bool = False
    dlr_reorder_window: int = 8
    #: Retries (after the first attempt) of a failed report/MO post.
    dlr_retries: int = 3
    #: Concurrent outbound report posts.
    dlr_concurrency: int = 16
    #: Mobile-originated messages: target URL and bearer token (falls back to ``dlr_token``).
    mo_url: str | None = None
    mo_token: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as a JSON-serialisable dict."""
        return dataclasses.asdict(self)

    def copy(self) -> SimConfig:
        """Return a deep copy."""
        return SimConfig(**self.to_dict())

    def apply(self, updates: dict[str, Any]) -> list[str]:
        """Validate and apply ``updates`` atomically; return the names of the fields changed.

        Raises :class:`ConfigError` (and changes nothing) if any field is unknown or invalid.
        """
        if not isinstance(updates, dict):
            raise ConfigError("config update must be a JSON object")
        clean: dict[str, Any] = {}
        for name, value in updates.items():
            if name not in _FIELDS:
                raise ConfigError(f"unknown config field: {name!r}")
            clean[name] = _coerce(name, value)
        candidate = dataclasses.replace(self, **clean)
        candidate.validate()
        changed = [n for n in clean if getattr(self, n) != clean[n]]
        for name, value in clean.items():
            setattr(self, name, value)
        return changed

    def validate(self) -> None:
        """Check cross-field constraints; raise :class:`ConfigError` if violated."""
        for name in ("error_rate", "timeout_rate", "throttle_rate", "dlr_duplicate_rate"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"{name} must be within [0, 1]")
        for name in (
            "latency_ms",
            "latency_jitter_ms",
            "timeout_s",
            "throttle_retry_after_s",
            "throttle_burst_every_s",
            "throttle_burst_len_s",
            "tps_cap",
            "tps_burst",
            "dlr_delay_ms",
            "dlr_jitter_ms",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0")
        if self.throttle_burst_len_s > self.throttle_burst_every_s:
            raise ConfigError("throttle_burst_len_s must be <= throttle_burst_every_s")
        if self.max_batch < 1:
            raise ConfigError("max_batch must be >= 1")
        if self.dlr_reorder_window < 1:
            raise ConfigError("dlr_reorder_window must be >= 1")
        if self.dlr_retries < 0:
            raise ConfigError("dlr_retries must be >= 0")
        if not 1 <= self.dlr_concurrency <= 1024:
            raise ConfigError("dlr_concurrency must be within [1, 1024]")
        if not self.dlr_mix or sum(self.dlr_mix.values()) <= 0:
            raise ConfigError("dlr_mix needs at least one positive weight")
        for stat, weight in self.dlr_mix.items():
            if stat not in DLR_STATES:
                raise ConfigError(f"dlr_mix: unknown stat {stat!r}")
            if weight < 0:
                raise ConfigError("dlr_mix weights must be >= 0")
        for name in ("dlr_url", "mo_url"):
            url = getattr(self, name)
            if url is not None and not url.startswith(("http://", "https://")):
                raise ConfigError(f"{name} must be an http(s) URL")

    def effective_tps_burst(self) -> float:
        """Return the token-bucket capacity in force."""
        if self.tps_burst > 0:
            return self.tps_burst
        return max(1.0, self.tps_cap / 10.0)


_FIELDS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(SimConfig)}

_FLOATS = {
    "latency_ms",
    "latency_jitter_ms",
    "error_rate",
    "timeout_rate",
    "timeout_s",
    "throttle_rate",
    "throttle_retry_after_s",
    "throttle_burst_every_s",
    "throttle_burst_len_s",
    "tps_cap",
    "tps_burst",
    "dlr_delay_ms",
    "dlr_jitter_ms",
    "dlr_duplicate_rate",
}
_INTS = {"max_batch", "seed", "dlr_reorder_window", "dlr_retries", "dlr_concurrency"}
_BOOLS = {"keep_text", "timeout_accepts", "dlr_reorder"}
_OPT_STRS = {"token", "dlr_url", "dlr_token", "mo_url", "mo_token"}


_PREFIX_LISTS = {"reject_prefixes", "hlr_ported_prefixes", "hlr_absent_prefixes"}


def _coerce(name: str, value: Any) -> Any:
    """Check the JSON type of one field's new value and normalise it."""
    if name in _FLOATS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name} must be a number")
        f = float(value)
        if not math.isfinite(f):
            raise ConfigError(f"{name} must be finite")
        return f
    if name in _INTS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer")
        return value
    if name in _BOOLS:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be a boolean")
        return value
    if name in _OPT_STRS:
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{name} must be a string or null")
        return value or None
    if name in _PREFIX_LISTS:
        if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
            raise ConfigError(f"{name} must be a list of non-empty strings")
        return list(value)
    if name == "dlr_mix":
        if not isinstance(value, dict):
            raise ConfigError("dlr_mix must be an object of stat -> weight")
        out: dict[str, float] = {}
        for k, v in value.items():
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ConfigError("dlr_mix weights must be numbers")
            out[str(k)] = float(v)
        return out
    raise ConfigError(f"unknown config field: {name!r}")  # pragma: no cover
