"""The error catalogue: every code the API answers with, its HTTP status, meaning and fix.

``docs/errors.md`` is generated from :data:`CATALOGUE` (a test keeps it in step), and every
error in a response carries a ``docs`` pointer to its entry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ErrorKind:
    """One entry of the catalogue."""

    status: int
    title: str
    fix: str


CATALOGUE: dict[str, ErrorKind] = {
    "unauthorized": ErrorKind(
        401,
        "Unauthorized",
        "Send both `Application-Key` and `Authorization` headers with a valid key pair.",
    ),
    "invalid_json": ErrorKind(400, "Invalid JSON", "Send a UTF-8 JSON object as the request body."),
    "missing_field": ErrorKind(400, "Missing field", "Add the field named in `meta.parameter`."),
    "invalid_field": ErrorKind(
        400,
        "Invalid field",
        "Correct the field named in `meta.parameter`; `message` says what is expected.",
    ),
    "invalid_phone_number": ErrorKind(
        400,
        "Invalid phone number",
        "Use E.164 (`+48111222333`); the recipient was not sent, the others were.",
    ),
    "duplicate_phone_number": ErrorKind(
        400, "Duplicate phone number", "Each number is sent once per request; remove the repeat."
    ),
    "recipient_opted_out": ErrorKind(
        400,
        "Recipient opted out",
        "The number replied STOP to this account: marketing (bulk) messages are not sent to it. "
        "Transactional messages on the priority lane still are. It is removed from the list "
        "when it replies START, or by DELETE /v2.1/suppressions/{phone}.",
    ),
    "no_route": ErrorKind(
        400,
        "No route",
        "No carrier connection serves this destination for this lane and account, and no "
        "fallback route is configured: the recipient was not sent, the others were. Ask the "
        "operator to add a route (`smsdispatch connections list` shows what is served).",
    ),
    "no_valid_recipients": ErrorKind(
        400,
        "No valid recipients",
        "Every number in `phoneNumbers` was refused; see the other errors.",
    ),
    "too_many_recipients": ErrorKind(
        400,
        "Too many recipients",
        "Send at most 10,000 `phoneNumbers` per request (split larger campaigns).",
    ),
    "invalid_sender": ErrorKind(
        400,
        "Invalid sender",
        "Use 1-11 letters/digits (at least one letter) or a number of 3-15 digits.",
    ),
    "sender_not_registered": ErrorKind(
        400,
        "Sender name not approved",
        "The account sends only from approved sender names: use one `GET /v2.1/sms/senders` "
        "lists as `approved`, or request this one with `POST /v2.1/sms/senders` and send once "
        "the operator has approved it. Nothing was stored.",
    ),
    "empty_message": ErrorKind(400, "Empty message", "Send a non-empty `message`."),
    "message_too_long": ErrorKind(
        400,
        "Message too long",
        "Shorten the text: at most 10 parts (1530 GSM-7 or 670 Unicode characters).",
    ),
    "invalid_validity": ErrorKind(
        400, "Invalid validity", "`validity` is in minutes, from 1 to 4320 (3 days)."
    ),
    "invalid_schedule_time": ErrorKind(
        400, "Invalid scheduleTime", "`scheduleTime` is unix seconds, at most 14 days ahead."
    ),
    "invalid_type": ErrorKind(400, "Invalid type", "`type` is 0 (normal) or 1 (flash)."),
    "short_link_unsupported": ErrorKind(
        400,
        "Link shortening not configured",
        "This server has no short-link address (`SMSDISPATCH_SHORT_LINK_BASE`, "
        "docs/short-links.md): send `shortLink: false` or omit it, or ask its operator.",
    ),
    "invalid_webhook_url": ErrorKind(
        400,
        "Invalid webhookUrl",
        "Use an absolute http(s) URL of at most 2048 characters, without credentials, on a port "
        "that speaks HTTP, whose host is a DNS name that exists (ASCII or a valid "
        "internationalised name) or an IP address in standard form; `message` says which rule.",
    ),
    "webhook_url_forbidden": ErrorKind(
        400,
        "webhookUrl points inside our network",
        "The host is, or resolves to, a loopback, private, link-local, CGNAT, cloud metadata, "
        "multicast or reserved address, which webhooks never call, however it is spelled. "
        "Use a publicly reachable address.",
    ),
    "webhook_endpoint_limit": ErrorKind(
        422,
        "Too many webhook endpoints",
        "The account already sends webhooks to the maximum number of distinct URLs "
        "(SMSDISPATCH_WEBHOOK_MAX_ENDPOINTS): reuse one of them, and tell messages apart by "
        "the payload's `id` or `externalId` rather than by a URL per message.",
    ),
    "invalid_external_id": ErrorKind(400, "Invalid externalId", "Use 1-128 printable characters."),
    "priority_not_enabled": ErrorKind(
        403,
        "Priority lane not enabled",
        "Ask the operator to enable the priority add-on for the account, or omit `priority`.",
    ),
    "idempotency_key_reused": ErrorKind(
        422,
        "Idempotency-Key reused with another body",
        "Use a new Idempotency-Key for a different request.",
    ),
    "idempotency_key_in_flight": ErrorKind(
        409, "Request with this key still in progress", "Retry after a moment with the same key."
    ),
    "invalid_idempotency_key": ErrorKind(
        400, "Invalid Idempotency-Key", "Use 1-255 printable ASCII characters."
    ),
    "invalid_campaign": ErrorKind(
        400, "Invalid Smsdispatch-Campaign", "Use 1-64 printable ASCII characters."
    ),
    "payload_too_large": ErrorKind(
        413,
        "Request body too large",
        "Keep the body under the documented limit (1 MiB by default).",
    ),
    "unsupported_media_type": ErrorKind(
        415, "Unsupported media type", "Send `Content-Type: application/json`."
    ),
    "lookup_not_supported": ErrorKind(
        400,
        "Number look-up not available",
        "None of the carrier connections that serve this number answers look-ups (or none "
        "serves it): ask the operator to enable `lookups` on one (docs/lookup.md).",
    ),
    "lookup_failed": ErrorKind(
        502,
        "Number look-up failed",
        "The carrier connections that answer look-ups for this number failed (no answer, an "
        "error, an unreadable answer): retry after the seconds in `Retry-After`.",
    ),
    "not_found": ErrorKind(404, "Not found", "Check the id: it must belong to your account."),
    "campaign_not_found": ErrorKind(
        404,
        "Campaign not found",
        "Check the campaign's name (the `Smsdispatch-Campaign` header its messages were sent "
        "with): it must be a campaign of your account.",
    ),
    "campaign_cancelled": ErrorKind(
        409,
        "Campaign cancelled",
        "A cancelled campaign cannot be paused or resumed: its unsent messages ended "
        "`cancelled`. Send the rest as a new campaign.",
    ),
    "message_not_cancellable": ErrorKind(
        409,
        "Message cannot be cancelled",
        "Only a message no worker has taken yet (`scheduled`, `queued`, `retrying`, `paused`) "
        "can be cancelled; `message` says its status. One being sent finishes normally, and so "
        "does one whose last attempt may have reached the carrier (a timeout).",
    ),
    "no_results": ErrorKind(
        404,
        "No results",
        "Nothing matches the filters (the original API answers 404 for an empty result).",
    ),
    "invalid_query": ErrorKind(
        400, "Invalid query parameter", "Correct the query parameter named in `meta.parameter`."
    ),
    "rate_limited": ErrorKind(
        429,
        "Too many requests",
        "Slow down: retry after the number of seconds in `Retry-After`. The limit is per account "
        "(ask the operator to raise it).",
    ),
    "insufficient_balance": ErrorKind(
        402,
        "Insufficient balance",
        "The account's balance (with its credit limit) cannot pay for this recipient: it was not "
        "sent and nothing was charged for it; the others were. `meta.accountBalance` is what is "
        "left. Top up (ask the operator) and send the refused recipients again. A request none "
        "of whose recipients could be paid for is answered 402.",
    ),
    "no_price": ErrorKind(
        400,
        "No price for this destination",
        "Neither the account's price list nor the platform's default has a price for this "
        "number in the account's currency: it was not sent, the others were. Ask the operator "
        "to add one (`smsdispatch prices set`).",
    ),
    "daily_cap_exceeded": ErrorKind(
        429,
        "Daily sending cap reached",
        "The account's messages per UTC day are used up: the recipients named were not sent. "
        "Retry after `Retry-After` seconds (next UTC midnight) or ask the operator to raise it.",
    ),
    "method_not_allowed": ErrorKind(405, "Method not allowed", "See the API reference."),
    "service_unavailable": ErrorKind(
        503,
        "Service temporarily unavailable",
        "Retry after the number of seconds in `Retry-After`; nothing was stored.",
    ),
    "internal_error": ErrorKind(
        500, "Internal error", "Retry later and report `meta.uniqId` to the operator."
    ),
}


class ApiError(Exception):
    """An error answer: a catalogue code, plus the parameter and value it concerns."""

    def __init__(
        self,
        code: str,
        message: str | None = None,
        parameter: str | None = None,
        value: Any = None,
        source: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        kind = CATALOGUE[code]
        super().__init__(message or kind.title)
        self.code = code
        self.status = kind.status
        self.title = kind.title
        self.message = message or kind.title
        self.parameter = parameter
        self.value = value
        self.source = source
        self.headers = headers  # extra response headers (``Retry-After``)

    def as_dict(self) -> dict[str, Any]:
        """The element of the envelope's ``errors[]``: ``meta`` has the original's three
        fields, each a string or null (a typed client of the original reads ``value`` as a
        string, so a number or a boolean is echoed in its JSON spelling: ``"5000"``)."""
        meta: dict[str, Any] = {"parameter": None, "source": None, "value": None}
        if self.parameter is not None:
            meta["parameter"] = self.parameter
            meta["source"] = self.source or self.parameter
            meta["value"] = _printable(self.value)
        return {
            "code": self.code,
            "title": self.title,
            "message": self.message,
            "meta": meta,
            "docs": f"/docs/errors#{self.code.replace('_', '-')}",
        }


def _printable(value: Any) -> str | None:
    """Echo the offending value as a string, bounded so an error never repeats a megabyte."""
    if value is None or isinstance(value, (list, dict)):
        return None
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = json.dumps(value)
    else:
        text = str(value)
    return text[:200] + "…" if len(text) > 200 else text


def render_catalogue() -> str:
    """``docs/errors.md``: the catalogue as Markdown (kept in step by a test)."""
    lines = [
        "# Error catalogue",
        "",
        "Every error in an API response has a stable `code`; its `docs` field points to its",
        "entry here, as served by the API (`/docs/errors#<code with dashes>`).",
        "`meta.parameter` names the field, `meta.source` the exact place (`phoneNumbers[3]`),",
        "`meta.value` echoes the offending value as a string (truncated). Generated from",
        "`dispatcher/errors.py`; do not edit by hand.",
        "",
        "| code | HTTP | meaning | fix |",
        "|---|---|---|---|",
    ]
    for code, kind in CATALOGUE.items():
        lines.append(
            f'| <a id="{code.replace("_", "-")}"></a>`{code}` | {kind.status} | '
            f"{kind.title} | {kind.fix} |"
        )
    lines += [
        "",
        "Per-recipient errors (`invalid_phone_number`, `duplicate_phone_number`) come with HTTP",
        "200 when at least one recipient was accepted (partial success, as the original API);",
        "when none was, the answer is 400 with `no_valid_recipients` added.",
        "",
    ]
    return "\n".join(lines)
