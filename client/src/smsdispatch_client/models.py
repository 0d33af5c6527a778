"""What the API answers, as typed values: messages, refused recipients, send results, pages."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def _time(*values: Any) -> datetime | None:
    """The first present of ``values`` as an aware UTC time; ``None`` when none is present.

    The API gives each time twice: in milliseconds as ISO 8601 (``createdAt``:
    ``2026-01-02T03:04:05.678Z``) and in the original v2.1's type, integer unix seconds
    (``createTime``); callers pass the precise one first.
    """
    for value in values:
        if value is None or value == "":
            continue
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return None


@dataclass(frozen=True)
class RecipientError:
    """One element of ``errors[]``: a refused recipient or a problem with a field."""

    code: str
    message: str
    parameter: str | None = None
    value: Any = None
    docs: str | None = None
    source: str | None = None

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> RecipientError:
        """Parse an ``errors[]`` element."""
        meta = item.get("meta") or {}
        return cls(
            item.get("code", "unknown"),
            item.get("message", ""),
            meta.get("parameter"),
            meta.get("value"),
            item.get("docs"),
            meta.get("source"),
        )


@dataclass(frozen=True)
class Message:
    """One message (one recipient) as the API shows it; times are aware UTC datetimes.

    ``status`` is the name (``queued`` … ``delivered``), ``status_code`` the v2.1 number;
    ``raw`` keeps the whole JSON object (``raw["events"]`` is the timeline of
    :meth:`SmsClient.get_message`).
    """

    id: str
    external_id: str
    phone_number: str
    status: str
    status_code: int
    is_final: bool
    parts: int
    encoding: str
    lane: str
    sender: str = ""
    created_at: datetime | None = None
    status_at: datetime | None = None
    sent_at: datetime | None = None
    scheduled_at: datetime | None = None
    error_code: str | None = None
    error_description: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Message:
        """Parse a ``data[]`` element."""
        error = d.get("error") or {}
        return cls(
            id=d["id"],
            external_id=d.get("externalId") or "",
            phone_number=d.get("phoneNumber") or "",
            status=d.get("statusName") or "",
            status_code=int(d.get("status") or 0),
            is_final=bool(d.get("isFinal")),
            parts=int(d.get("numberOfParts") or 0),
            encoding=d.get("encoding") or "",
            lane=d.get("lane") or "",
            sender=d.get("sender") or "",
            created_at=_time(d.get("createdAt"), d.get("createTime")),
            status_at=_time(d.get("statusAt"), d.get("statusTime")),
            sent_at=_time(d.get("sentAt"), d.get("sentTime")),
            scheduled_at=_time(d.get("scheduledAt"), d.get("scheduleTime")),
            error_code=error.get("code"),
            error_description=error.get("description"),
            raw=d,
        )


@dataclass
class SendResult:
    """What a send returned: accepted messages and refused recipients."""

    messages: list[Message]
    errors: list[RecipientError]
    request_ids: list[str]
    duplicate: bool = False
    idempotency_key: str = ""

    @property
    def ids(self) -> list[str]:
        """The message ids, in request order."""
        return [m.id for m in self.messages]


@dataclass(frozen=True)
class Page:
    """One page of a listing: ``messages`` from ``offset``, ``total`` matching in all.

    ``next_offset`` is where the next page starts, ``None`` after the last one. Nothing
    matching is an empty page (the API's 404 ``no_results`` is not an error here).
    """

    messages: list[Message]
    total: int
    offset: int
    limit: int
    next_offset: int | None
    request_id: str = ""

    @classmethod
    def from_json(cls, body: dict[str, Any], offset: int, limit: int) -> Page:
        """Parse a listing's answer (``meta.total``, ``meta.offset``, ``meta.limit``)."""
        meta = body.get("meta") or {}
        messages = [Message.from_json(d) for d in body.get("data") or []]
        start = int(meta.get("offset", offset))
        total = int(meta.get("total", start + len(messages)))
        end = start + len(messages)
        more = bool(messages) and end < total
        return cls(
            messages,
            total,
            start,
            int(meta.get("limit", limit)),
            end if more else None,
            str(meta.get("uniqId", "")),
        )

    @classmethod
    def empty(cls, offset: int, limit: int, request_id: str = "") -> Page:
        """The page of a listing that matches nothing (from ``offset`` on)."""
        return cls([], 0, offset, limit, None, request_id)
