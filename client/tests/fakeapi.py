"""Stand-ins for the API on httpx's MockTransport: scripted answers, and a message log that
pages the way the server does (offset, limit, total, 404 ``no_results``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
from smsdispatch_client import AsyncSmsClient, RetryPolicy, SmsClient


def message(
    message_id: str = "m1", status: str = "queued", created: str = "2026-01-02T03:04:05.678Z"
) -> dict[str, Any]:
    """One ``data[]`` element as the API writes it: each time as v2.1's unix seconds and as
    ISO 8601 with milliseconds."""
    seconds = int(datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())
    return {
        "id": message_id,
        "externalId": f"e-{message_id}",
        "phoneNumber": "+48111222333",
        "sender": "ACME",
        "status": {"queued": 1, "sent": 3, "delivered": 21, "undelivered": 22}[status],
        "statusName": status,
        "isFinal": status in ("delivered", "undelivered"),
        "statusTime": seconds,
        "createTime": seconds,
        "statusAt": created,
        "createdAt": created,
        "numberOfParts": 1,
        "encoding": "gsm7",
        "lane": "bulk",
        "scheduleTime": None,
        "sentTime": None,
        "error": None,
    }


def envelope(data: list[dict[str, Any]], **meta: Any) -> dict[str, Any]:
    """The ``{data, errors, meta}`` answer of a success."""
    return {"data": data, "errors": [], "meta": {"status": 200, "uniqId": "r1", **meta}}


OK = envelope([message()])


def refused(status: int, code: str, parameter: str | None = None) -> httpx.Response:
    """An error answer with one catalogue error."""
    meta = {"parameter": parameter} if parameter else {}
    body = {"data": [], "errors": [{"code": code, "message": code, "meta": meta}], "meta": {}}
    return httpx.Response(status, json=body)


class Script:
    """Answers in order (a response, or an exception to raise); records each request."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class FakeLog:
    """``GET /v2.1/sms`` and ``/statuses`` over a list of messages, newest first by default.

    ``arrivals`` maps a request number to messages created just before it is answered, to
    show a listing changing between two pages.
    """

    def __init__(self, count: int) -> None:
        self.messages = [message(f"m{i:04d}") for i in range(count)]  # oldest first
        self.requests: list[httpx.Request] = []
        self.arrivals: dict[int, int] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        for _ in range(self.arrivals.pop(len(self.requests), 0)):
            self.messages.append(message(f"m{len(self.messages):04d}"))
        q = request.url.params
        rows = list(self.messages)
        if q.get("orderDirection", "DESC") == "DESC":
            rows.reverse()
        offset, limit = int(q.get("offset", 0)), int(q.get("limit", 100))
        page = rows[offset : offset + limit]
        if not page:
            return refused(404, "no_results")
        body = envelope(page, total=len(rows), offset=offset, limit=limit)
        return httpx.Response(200, json=body)


def sync_client(handler: Any, attempts: int = 4) -> SmsClient:
    """A client whose requests go to ``handler``."""
    return SmsClient("k", "a", "http://api.test", **_fake(handler, attempts))


def async_client(handler: Any, attempts: int = 4) -> AsyncSmsClient:
    """The asyncio client whose requests go to ``handler``."""
    return AsyncSmsClient("k", "a", "http://api.test", **_fake(handler, attempts))


def _fake(handler: Any, attempts: int) -> dict[str, Any]:
    retry = RetryPolicy(attempts=attempts, base=0.5, max_delay=8)
    return {"retry": retry, "transport": httpx.MockTransport(handler)}
