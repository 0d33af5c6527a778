"""The workers' own error tree; third-party errors are translated into it at the boundary."""

from __future__ import annotations


class DispatchError(Exception):
    """Root of the consumer side's errors."""


def storable(text: str, limit: int) -> str:
    """Carrier-supplied ``text`` as the message log can hold it: no NUL or other control
    characters (PostgreSQL refuses NUL in text), at most ``limit`` characters. A carrier's
    error code or message must never make recording an attempt fail."""
    cleaned = "".join(c if c.isprintable() else " " for c in text)
    return cleaned.encode("utf-8", "replace").decode("utf-8")[:limit]


class CarrierError(DispatchError):
    """A carrier call failed. ``code`` is ours (stable, for the log and the panel); the
    carrier's own codes and words are kept as the log's columns can hold them."""

    retryable = False
    ambiguous = False  # the carrier may have accepted it: check before resending
    spends_attempt = True  # False: certainly not sent; the claim goes back as it was

    def __init__(self, code: str, description: str, http_status: int | None = None) -> None:
        code, description = storable(code, 32), storable(description, 255)
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.http_status = http_status


class RetryableCarrierError(CarrierError):
    """Connect errors, 5xx: try again later."""

    retryable = True


class AmbiguousCarrierError(RetryableCarrierError):
    """A timeout or a dropped connection after the request was sent; its codes are
    :data:`dispatcher.contract.AMBIGUOUS_CODES`."""

    ambiguous = True


class NotSentError(RetryableCarrierError):
    """Certainly not sent, for a reason of the connection (no room in the SMPP holder's
    window or queue before the claim's deadline): the claim is handed back without spending
    the attempt. Counted as ill health of the connection by its breaker."""

    spends_attempt = False


class ThrottledError(RetryableCarrierError):
    """The carrier answered 429; ``retry_after`` seconds is its wish."""

    def __init__(self, retry_after: float, http_status: int = 429) -> None:
        super().__init__("carrier_throttled", "carrier asked us to slow down", http_status)
        self.retry_after = retry_after


class PermanentCarrierError(CarrierError):
    """The carrier refused the message for good (4xx reject)."""


class ClaimExpired(CarrierError):
    """Too long passed since the claim to call the carrier safely: the reconciler may already
    be looking at this message. Nothing was sent; the claim is left for the reconciler."""

    def __init__(self) -> None:
        super().__init__("claim_expired", "claim too old to send safely")
