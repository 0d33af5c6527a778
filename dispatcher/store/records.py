"""Plain records that cross the message log's boundary (no ORM objects leave it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dispatcher.contract import MessagePayload


@dataclass(frozen=True, slots=True)
class ShortLink:
    """One URL of one message and the code that replaces it (docs/short-links.md)."""

    code: str
    position: int  # which URL of the text, from 0
    url: str  # as the customer wrote it


@dataclass(slots=True)
class NewMessage:
    """A validated message about to be written to the log."""

    id: str
    account_id: int
    submission_id: str
    external_id: str
    phone: str
    sender: str
    body: str
    parts: int
    encoding: str
    flash: bool
    lane: str
    status: str
    created_at: float
    valid_until: float
    scheduled_at: float | None = None
    next_attempt_at: float | None = None
    webhook_url: str | None = None
    # shortLink: the text as written (``body`` is what is sent), its links and their end.
    original_body: str | None = None
    links: tuple[ShortLink, ...] = ()
    links_expire_at: float = 0.0
    price: int = 0  # minor units of ``currency``, all parts (docs/prices.md)
    currency: int = 0  # ISO 4217 numeric; 0 while billing is off
    charged: bool = False  # taken from the account's balance
    # Quiet hours (docs/campaigns.md): the minutes of the recipient's local day it may be sent.
    window_start: int | None = None
    window_end: int | None = None

    def payload(self, attempt: int = 0) -> MessagePayload:
        """What a chunk task carries of this message."""
        return {
            "id": self.id,
            "account": self.account_id,
            "to": self.phone,
            "sender": self.sender,
            "text": self.body,
            "parts": self.parts,
            "flash": self.flash,
            "valid_until": self.valid_until,
            "attempt": attempt,
            "due_at": self.created_at,
        }


@dataclass(slots=True)
class NewSubmission:
    """One API call (or library call, or CSV upload) and the messages it creates."""

    id: str
    account_id: int
    body_hash: str
    lane: str
    source: str
    created_at: float
    external_id: str | None = None
    idempotency_key: str | None = None
    messages: list[NewMessage] = field(default_factory=list)
    campaign: str | None = None  # groups the API calls of one CSV upload (panel campaigns)


@dataclass(slots=True)
class StoredSubmission:
    """What the log returns for a submission: new, or the original of a repeat."""

    id: str
    duplicate: bool
    messages: list[dict[str, Any]]
    conflict: str | None = None  # "body_mismatch" when an Idempotency-Key is reused differently
    opted_out: list[str] = field(default_factory=list)  # bulk recipients on the suppression list
    refused: bool = False  # every recipient had opted out or was refused: nothing was stored
    # Billing (docs/prices.md): recipients refused with their error code (insufficient_balance,
    # no_price), and the account's balance after this submission (None: not billed).
    unpaid: list[tuple[str, str]] = field(default_factory=list)
    balance: int | None = None
    balance_currency: int = 0


@dataclass(slots=True)
class Batch:
    """A dispatch batch: the outbox row for one task that carries these messages."""

    id: str
    lane: str
    payloads: list[MessagePayload]
    # Set on a bulk batch left for fair admission (one account's messages, published by the
    # scheduler's admitter, dispatcher/scheduler/admission.py); None: published at once.
    account: int | None = None
