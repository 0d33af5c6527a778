"""The connector interface every carrier protocol implements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from workers.errors import CarrierError, storable

CARRIER_ID_MAX = 64  # messages.carrier_message_id


def carrier_id_of(ref: str, raw: str) -> str:
    """The carrier's id for our message ``ref`` as the log can store it, whatever the carrier
    sent (recording a message as sent must not fail on it: it was sent). An id with nothing
    printable is kept as ``unreadable:<ref>``; reports for it then match by our reference."""
    return storable(raw, CARRIER_ID_MAX) or f"unreadable:{ref}"[:CARRIER_ID_MAX]


@dataclass(slots=True, frozen=True)
class Outbound:
    """One SMS to submit; ``ref`` is our message id, passed as the carrier's client reference."""

    ref: str
    to: str
    sender: str
    text: str
    parts: int
    flash: bool = False
    lane: str = "bulk"  # the lane it is sent for (an SMPP connection keeps a window share each)
    valid_until: float | None = None  # unix seconds; an SMPP validity_period is derived


@dataclass(slots=True)
class SubmitResult:
    """The carrier's answer for one message: a carrier id, or the error."""

    ref: str
    carrier_id: str | None
    http_status: int | None
    latency_ms: float
    error: CarrierError | None = None

    def __post_init__(self) -> None:
        if self.carrier_id is not None:
            self.carrier_id = carrier_id_of(self.ref, self.carrier_id)

    @property
    def ok(self) -> bool:
        """Whether the carrier accepted the message."""
        return self.error is None and self.carrier_id is not None


class Connector(Protocol):
    """A carrier connection. Built with its HTTP client and config; never opens at import."""

    name: str
    max_batch: int  # recipients per batch submit; 1 means the carrier takes one at a time

    async def submit(self, msg: Outbound) -> SubmitResult:
        """Submit one message. Never raises: errors come back in the result."""
        ...

    async def submit_batch(self, msgs: Sequence[Outbound]) -> list[SubmitResult]:
        """Submit messages sharing sender, text and flash in one request (``len ≤ max_batch``)."""
        ...

    async def lookup(self, refs: Sequence[str]) -> dict[str, str] | None:
        """Carrier ids of the refs it has recorded; ``None`` when the carrier cannot tell."""
        ...

    async def close(self) -> None:
        """Release the HTTP client."""
        ...

    def parse_report(self, raw: Mapping[str, Any]) -> Report:
        """A delivery report posted by this carrier (its status map); :class:`CallbackError`."""
        ...

    def parse_inbound(self, raw: Mapping[str, Any]) -> InboundPart:
        """An inbound message (or part) posted by this carrier; :class:`CallbackError`."""
        ...


@dataclass(slots=True, frozen=True)
class Report:
    """A delivery report as a connector understood it (its status map applied)."""

    carrier_message_id: str | None
    ref: str | None  # our message id, when the carrier echoes it
    status: str  # ours: delivered | undelivered | expired | rejected, or "" for non-final
    carrier_status: str  # the carrier's own word (DELIVRD, UNDELIV, …)
    error_code: str | None
    done_at: float | None


@dataclass(slots=True, frozen=True)
class InboundPart:
    """One inbound (mobile-originated) message or one part of a concatenated one."""

    carrier_message_id: str
    phone: str  # sender, E.164 (the connector normalises)
    number: str  # our dedicated number it was sent to
    text: str
    ref: str | None  # concatenation reference; None for a single-part message
    seq: int
    total: int
    received_at: float | None


class CallbackError(ValueError):
    """A carrier callback (report or inbound) the connector cannot read; it is dropped."""
