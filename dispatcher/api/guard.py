"""ASGI middleware that bounds request bodies and insists on JSON, before any parsing."""

from __future__ import annotations

import secrets
from typing import Any

import orjson

from dispatcher.api.envelope import envelope
from dispatcher.errors import ApiError

Scope = dict[str, Any]
BODY_METHODS = {b"POST", b"PUT", b"PATCH"}


class RequestGuard:
    """Assigns the request id, refuses oversized bodies (413) and non-JSON bodies (415).

    The body is read here, bounded, and replayed to the app: a client cannot make the API
    buffer more than ``max_body`` bytes, with or without a Content-Length.
    """

    def __init__(self, app: Any, max_body: int, json_prefixes: tuple[str, ...] = ("/v2.1/",)):
        self.app = app
        self.max_body = max_body
        self.json_prefixes = json_prefixes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        if scope["method"].encode() not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if scope["path"].startswith(self.json_prefixes):
            ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            if ctype != b"application/json":
                await _reply(
                    send,
                    request_id,
                    ApiError(
                        "unsupported_media_type",
                        "send Content-Type: application/json",
                        "Content-Type",
                        ctype.decode("latin-1") or None,
                    ),
                )
                return
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await _reply(send, request_id, _too_large(self.max_body))
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await _reply(send, request_id, _too_large(self.max_body))
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _too_large(limit: int) -> ApiError:
    return ApiError("payload_too_large", f"the body exceeds {limit} bytes", "body", None)


async def _reply(send: Any, request_id: str, error: ApiError) -> None:
    body = orjson.dumps(envelope(request_id, error.status, errors=[error]))
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
