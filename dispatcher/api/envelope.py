"""The ``{data, errors, meta}`` envelope and the message view, as plain dicts (fast to dump).

Every field the original API defines has the original's type (docs/compatibility.md): times
as integer unix seconds, ``smsPrice`` and ``currency`` integers, ``meta.accountBalance`` a
string or null. What we add has names of its own (the ``…At`` times keep milliseconds).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from dispatcher.billing.money import format_minor
from dispatcher.contract import STATUS_CODES, Status, is_final
from dispatcher.errors import ApiError
from dispatcher.store.records import NewMessage
from dispatcher.times import iso_ms


class JsonResponse(Response):
    """orjson-rendered JSON."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        """Serialise ``content``."""
        return orjson.dumps(content)


def iso(ts: float | None) -> str | None:
    """Unix seconds → ISO 8601 UTC with milliseconds (none stays none)."""
    return None if ts is None else iso_ms(ts)


def unix(ts: float | None) -> int | None:
    """Unix seconds as the original's integer (the second it falls in)."""
    return None if ts is None else int(ts)


def message_view(m: dict[str, Any]) -> dict[str, Any]:
    """A stored message row as the API shows it."""
    status = m["status"]
    error = None
    if m.get("error_code"):
        error = {
            "code": m["error_code"],
            "description": m.get("error_description"),
            "permanent": m.get("error_permanent"),
        }
    return {
        "id": m["id"],
        "externalId": m["external_id"],
        "phoneNumber": m["phone"],
        "sender": m["sender"],
        "status": STATUS_CODES[Status(status)],
        "statusName": status,
        "isFinal": is_final(status),
        "statusTime": int(m["status_at"]),
        "createTime": int(m["created_at"]),
        "smsPrice": m.get("price") or 0,
        "currency": m.get("currency") or 0,
        "numberOfParts": m["parts"],
        "encoding": m["encoding"],
        "lane": m["lane"],
        "scheduleTime": unix(m.get("scheduled_at")),
        "sentTime": unix(m.get("sent_at")),
        "statusAt": iso(m["status_at"]),
        "createdAt": iso(m["created_at"]),
        "scheduledAt": iso(m.get("scheduled_at")),
        "sentAt": iso(m.get("sent_at")),
        "error": error,
    }


def new_message_view(m: NewMessage) -> dict[str, Any]:
    """A just-accepted message as the API shows it."""
    created = iso(m.created_at)
    return {
        "id": m.id,
        "externalId": m.external_id,
        "phoneNumber": m.phone,
        "sender": m.sender,
        "status": STATUS_CODES[Status(m.status)],
        "statusName": m.status,
        "isFinal": False,
        "statusTime": int(m.created_at),
        "createTime": int(m.created_at),
        "smsPrice": m.price,
        "currency": m.currency,
        "numberOfParts": m.parts,
        "encoding": m.encoding,
        "lane": m.lane,
        "scheduleTime": unix(m.scheduled_at),
        "sentTime": None,
        "statusAt": created,
        "createdAt": created,
        "scheduledAt": iso(m.scheduled_at),
        "sentAt": None,
        "error": None,
    }


def envelope(
    request_id: str,
    status: int,
    data: list[dict[str, Any]] | None = None,
    errors: list[ApiError] | None = None,
    **meta: Any,
) -> dict[str, Any]:
    """Build the envelope; ``meta`` extras are merged in. ``accountBalance`` is null unless
    given among them (:func:`balance_text`: a decimal string, as the original's)."""
    data = data or []
    errs = [e.as_dict() for e in errors or []]
    return {
        "data": data,
        "errors": errs,
        "meta": {
            "status": status,
            "uniqId": request_id,
            "numberOfData": len(data),
            "numberOfErrors": len(errs),
            "accountBalance": None,
            **meta,
        },
    }


def error_response(
    request_id: str,
    errors: list[ApiError],
    status: int | None = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    """An error answer; the status is the first error's unless given."""
    code = status or errors[0].status
    return JsonResponse(
        envelope(request_id, code, errors=errors), status_code=code, headers=headers
    )


def balance_text(minor: int | None, currency: int) -> str | None:
    """``meta.accountBalance``: the balance as a decimal string (``"123.45"``), or null for an
    account without one (billing off, or never set up for it)."""
    return None if minor is None else format_minor(minor, currency)
