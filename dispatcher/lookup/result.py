"""What a number look-up finds, as the API shows it and the cache keeps it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class LookupResult:
    """Validity, country, network, portability and reachability of one number."""

    phone: str  # E.164 as we normalised it
    valid: bool
    country: str | None = None  # ISO 3166-1 alpha-2
    mcc: str | None = None  # mobile country code (strings: leading zeros matter)
    mnc: str | None = None  # mobile network code
    network: str | None = None  # the network's name
    ported: bool | None = None  # moved to another network than its range's
    reachable: bool | None = None  # the handset is on the network now
    connection: str | None = None  # the carrier connection that answered; None: decided here
    looked_up_at: float = 0.0
    invalid_reason: str | None = None  # why it is not a number we could send to

    def to_cache(self) -> dict[str, Any]:
        """A JSON-ready dict (the cache's form)."""
        return asdict(self)

    @classmethod
    def from_cache(cls, data: dict[str, Any]) -> LookupResult:
        """Back from :meth:`to_cache`."""
        return cls(**data)
