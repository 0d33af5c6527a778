"""What the webhooks lane's delivery logic (``workers/webhooks/``) and its store
(:mod:`dispatcher.store.webhook_attempts`) exchange: plain records, no rows leave the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Verdict(StrEnum):
    """The meaning of one attempt on one URL (``workers/webhooks/classify.py`` decides it)."""

    DELIVERED = "delivered"
    RETRY = "retry"
    REJECTED = "rejected"
    GONE = "gone"
    REFUSED = "refused"  # not called: URL refused, or the endpoint is suspended


@dataclass(slots=True)
class Claimed:
    """A delivery this worker claimed, with everything needed to send it."""

    id: str
    account_id: int
    event: str
    url: str
    url_secondary: str | None
    payload: str
    attempts: int  # including this one
    created_at: float
    secrets: list[str]
    # url → (endpoint state, reason) for the endpoints already known
    endpoints: dict[str, tuple[str, str | None]] = field(default_factory=dict)

    def urls(self) -> list[str]:
        """The main URL, then the fallback."""
        return [self.url] + ([self.url_secondary] if self.url_secondary else [])


@dataclass(slots=True)
class AttemptRecord:
    """One try of one URL (a ``webhook_attempts`` row)."""

    url: str
    at: float
    verdict: Verdict
    status_code: int | None = None
    latency_ms: float | None = None
    error: str | None = None
    body: str | None = None  # the answer, truncated; or, without an answer, the reason
    called: bool = True  # a request was made: it counts for the endpoint's health


@dataclass(slots=True)
class Outcome:
    """Where a claimed delivery goes after its attempt."""

    claimed: Claimed
    state: str
    attempts: list[AttemptRecord]
    next_attempt_at: float | None = None
    delivered_at: float | None = None
    last_status_code: int | None = None
