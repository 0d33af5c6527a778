"""SMPP answers and session failures translated into the workers' errors, in one place.

A ``submit_sm_resp`` with an error status means the SMSC did not take the message: never
ambiguous. ``ESME_RTHROTTLED`` / ``ESME_RMSGQFUL`` slow the connection down and retry without
spending an attempt; statuses that say the message itself is wrong (addresses, coding,
lengths, TLVs) are permanent; everything else (system errors, unknown or vendor statuses) is
retried within the retry policy. Codes are the status names in lower case
(``esme_rinvdstadr``), so the timeline names the SMPP status.

A ``submit_sm`` written with no answer (timeout, connection dropped) is ambiguous: it may have
reached the SMSC. Those use the project's shared ambiguous codes.
"""

from __future__ import annotations

from typing import Final

from workers.errors import (
    AmbiguousCarrierError,
    CarrierError,
    PermanentCarrierError,
    RetryableCarrierError,
    ThrottledError,
)
from workers.smpp.constants import STATUS_BY_NAME, status_name

THROTTLING: Final[frozenset[int]] = frozenset(
    {STATUS_BY_NAME["ESME_RTHROTTLED"], STATUS_BY_NAME["ESME_RMSGQFUL"]}
)
# The message itself is refused: sending it again the same way cannot succeed.
PERMANENT: Final[frozenset[int]] = frozenset(
    STATUS_BY_NAME[n]
    for n in (
        "ESME_RINVMSGLEN",
        "ESME_RINVREGDLVFLG",
        "ESME_RINVSRCADR",
        "ESME_RINVDSTADR",
        "ESME_RINVSERTYP",
        "ESME_RINVESMCLASS",
        "ESME_RINVSRCTON",
        "ESME_RINVSRCNPI",
        "ESME_RINVDSTTON",
        "ESME_RINVDSTNPI",
        "ESME_RINVSCHED",
        "ESME_RINVEXPIRY",
        "ESME_RINVDFTMSGID",
        "ESME_RX_P_APPN",
        "ESME_RX_R_APPN",
        "ESME_RINVOPTPARSTREAM",
        "ESME_ROPTPARNOTALLWD",
        "ESME_RINVPARLEN",
        "ESME_RMISSINGOPTPARAM",
        "ESME_RINVOPTPARAMVAL",
        "ESME_RDELIVERYFAILURE",
    )
)
# Bind refusals that will not change by retrying soon (the account or its password is wrong).
BIND_CREDENTIALS: Final[frozenset[int]] = frozenset(
    STATUS_BY_NAME[n] for n in ("ESME_RINVPASWD", "ESME_RINVSYSID", "ESME_RINVSYSTYP")
)
THROTTLE_PAUSE_S: Final[float] = 1.0  # SMPP gives no retry-after: our pause before a retry


class SmppError(Exception):
    """Root of the SMPP layer's own errors (session state, binds, the stream)."""


class ConnectFailed(SmppError):
    """No TCP (or TLS) connection to the SMSC: nothing was sent."""


class BindFailed(SmppError):
    """The SMSC refused the bind; ``status`` says why (``ESME_RINVPASWD`` …)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"bind refused: {status_name(status)}")
        self.status = status

    @property
    def credentials(self) -> bool:
        """Whether the account or password is wrong (retrying soon will not help)."""
        return self.status in BIND_CREDENTIALS


class NotBound(SmppError):
    """No bind is up to send on: nothing was sent."""


class SubmitUnanswered(SmppError):
    """A written submit_sm got no answer: the connection dropped or the timeout passed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # "timeout" | "disconnected"
        self.sequence = 0  # of the unanswered request, once known


class SmscThrottled(ThrottledError):
    """``ESME_RTHROTTLED`` / ``ESME_RMSGQFUL``: throttled, under the SMPP status's name. The
    holder already retried it until the claim's deadline; the claim goes back unspent."""

    spends_attempt = False

    def __init__(self, code: str, description: str, retry_after: float) -> None:
        CarrierError.__init__(self, code, description)
        self.retry_after = retry_after


def from_status(status: int) -> CarrierError:
    """The error of a ``submit_sm_resp`` whose status is not ``ESME_ROK``."""
    name = status_name(status)
    code = name.lower()
    if status in THROTTLING:
        return SmscThrottled(code, f"SMSC asked us to slow down ({name})", THROTTLE_PAUSE_S)
    if status in PERMANENT:
        return PermanentCarrierError(code, f"SMSC refused the message ({name})")
    return RetryableCarrierError(code, f"SMSC could not take the message now ({name})")


def translate(exc: BaseException) -> CarrierError:
    """A session failure during a submit → ours. Written but unanswered is ambiguous."""
    if isinstance(exc, SubmitUnanswered):
        if exc.reason == "timeout":
            return AmbiguousCarrierError("carrier_timeout", "no submit_sm_resp in time")
        return AmbiguousCarrierError("carrier_disconnected", "SMPP connection lost mid-submit")
    if isinstance(exc, BindFailed):
        return RetryableCarrierError("smpp_bind_failed", str(exc))
    if isinstance(exc, NotBound | ConnectFailed):
        return RetryableCarrierError("carrier_unreachable", "no SMPP bind up")
    # Anything unforeseen after the write: it may have arrived.
    return AmbiguousCarrierError("carrier_unexpected", type(exc).__name__)
