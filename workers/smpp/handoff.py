"""The hand-off between the send lanes and the session holder, over Redis.

A send lane pushes each claimed message as a :class:`Request` on its connection's queue for its
lane (``smpp:{connection}:q:{lane}``, a Redis list) and waits for the :class:`Reply` on its
process's reply list. The holder pops requests only while a window slot of that lane is free,
so the priority queue is never behind bulk's window.

What the holder writes per message (``smpp:{connection}:m:{ref}``) is what makes a lost reply
safe: ``w`` is written *before* the first submit_sm leaves, ``id:<message_id>`` once the SMSC
accepted it, ``n`` when it certainly did not leave or was refused. A look-up reads these:
``id`` is found, ``n`` or nothing is not sent (safe to send again), ``w`` cannot be told.

Other keys: bind leases (:mod:`workers.smpp.leases`), binds up per holder (``up``), the last
bind refusal (``bind_error``), the throttling factor the limiter applies (``rate``), and the
first part's id of each other part of a long message (``part``: receipts come per part).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import orjson

MARK_TTL_S: Final[int] = 3 * 86400  # longer than any validity: look-ups come within it
WRITTEN: Final[str] = "w"
NOT_SENT: Final[str] = "n"
ID_PREFIX: Final[str] = "id:"


def queue_key(connection: str, lane: str) -> str:
    """The requests of one lane of one connection."""
    return f"smpp:{connection}:q:{lane}"


def mark_key(connection: str, ref: str) -> str:
    """What became of message ``ref`` on this connection (see the module doc)."""
    return f"smpp:{connection}:m:{ref}"


def part_key(connection: str, message_id: str) -> str:
    """The first part's message id, for another part's ``message_id``."""
    return f"smpp:{connection}:part:{message_id}"


def up_key(connection: str) -> str:
    """A hash: holder id → ``"<binds up>:<valid until, unix s>"`` (a dead holder's entry
    stops counting when its time passes)."""
    return f"smpp:{connection}:up"


def binds_up(entries: dict[bytes, bytes] | dict[str, str], now: float) -> int:
    """Binds up over every holder, from the ``up`` hash."""
    total = 0
    for raw in entries.values():
        text = raw.decode() if isinstance(raw, bytes) else raw
        n, _, until = text.partition(":")
        try:
            if float(until) >= now:
                total += int(n)
        except ValueError:
            continue
    return total


def bind_error_key(connection: str) -> str:
    """The status name of the connection's last refused bind (expires)."""
    return f"smpp:{connection}:bind_error"


def rate_key(connection: str) -> str:
    """The share of ``tps`` the limiter grants while the SMSC throttles (absent: all of it)."""
    return f"smpp:{connection}:rate"


@dataclass(slots=True)
class Request:
    """One message for the holder. ``by`` (unix seconds): no submit_sm starts later; the
    sender's claim is only safe until then."""

    key: str  # unique per request: matches the reply
    reply: str  # the reply list
    ref: str
    to: str
    sender: str
    text: str
    flash: bool
    valid_until: float | None
    by: float
    lane: str

    def encode(self) -> bytes:
        """Wire form (orjson writes a dataclass as its fields, without ``asdict``'s copy)."""
        return orjson.dumps(self)

    @classmethod
    def decode(cls, raw: bytes) -> Request:
        """From the wire form; ``ValueError`` / ``TypeError`` / ``KeyError`` when malformed."""
        return cls(**orjson.loads(raw))


# Reply outcomes.
OK: Final[str] = "ok"  # carrier_id set
STATUS: Final[str] = "status"  # the SMSC refused it: ``status`` (never ambiguous)
UNANSWERED: Final[str] = "unanswered"  # written, no answer: ``reason`` timeout | disconnected
NOT_WRITTEN: Final[str] = "not_written"  # certainly not sent: ``reason`` says why


@dataclass(slots=True)
class Reply:
    """The holder's answer for one request."""

    key: str
    outcome: str
    carrier_id: str | None = None
    status: int | None = None
    reason: str = ""
    latency_ms: float = 0.0

    def encode(self) -> bytes:
        """Wire form (orjson writes a dataclass as its fields, without ``asdict``'s copy)."""
        return orjson.dumps(self)

    @classmethod
    def decode(cls, raw: bytes) -> Reply:
        """From the wire form."""
        return cls(**orjson.loads(raw))
