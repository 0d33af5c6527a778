"""ASGI middleware that bounds request bodies and insists on JSON, before any parsing."""

from __future__ import annotations

import re
import secrets
from typing import Any

import orjson

from dispatcher.api.envelope import envelope
from dispatcher.errors import ApiError

Scope = dict[str, Any]
BODY_METHODS = {b"POST", b"PUT", b"PATCH"}
MAX_JSON_DEPTH = 32  # our deepest document is 2 levels; generous for clients' extras
_STRINGS = re.compile(rb'"(?:[^"\\]++|\\.)*+"')  # possessive: linear on any input
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))
_UNIFY = bytes.maketrans(b"{}", b"[]")
# An escape starts at a backslash that is not itself escaped: one preceded by an even run of
# backslashes (``\\u0000`` in JSON is a backslash and the text "u0000", not a NUL).
_ESCAPE = rb"(?<!\\)(?:\\\\)*"
_HIGH = rb"\\u[dD][89abAB][0-9a-fA-F]{2}"
_LOW = rb"\\u[dD][c-fC-F][0-9a-fA-F]{2}"
_NUL = re.compile(_ESCAPE + rb"\\u0000")
# A \uD800-\uDBFF escape not followed by a \uDC00-\uDFFF one, or the reverse: JSON lets it
# through, but it is not text (the log's encoders refuse it later: a 500).
_LONE_SURROGATE = re.compile(
    _ESCAPE + _HIGH + rb"(?!" + _LOW + rb")|" + _ESCAPE + rb"(?<!" + _HIGH + rb")" + _LOW
)


class RequestGuard:
    """Assigns the request id, refuses oversized bodies (413), non-JSON bodies (415), and
    JSON bodies that are not UTF-8 or nest too deep (400).

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
        nul = nul_problem(scope)
        if nul is not None:
            await _reply(send, request_id, nul)
            return
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
        if scope["path"].startswith(self.json_prefixes):
            problem = json_problem(body)
            if problem is not None:
                await _reply(send, request_id, problem)
                return
        await self.app(scope, replaying(body, receive), send)


def replaying(body: bytes, receive: Any) -> Any:
    """An ASGI ``receive`` that hands out ``body`` (already read) once, then defers."""
    replayed = False

    async def replay() -> dict[str, Any]:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def nul_problem(scope: Scope) -> ApiError | None:
    """A clear 4xx for a NUL character in the path or the query string, else ``None``.

    No id, number or filter contains one, and PostgreSQL refuses NUL in text parameters: left
    to the database, it would surface as a 5xx.
    """
    if "\x00" in scope["path"]:
        return ApiError("not_found", "no such resource (the path holds a NUL character)")
    query: bytes = scope.get("query_string") or b""
    if b"%00" in query or b"\x00" in query:
        for pair in query.split(b"&"):
            name, _, value = pair.partition(b"=")
            if b"%00" in value or b"\x00" in value or b"%00" in name:
                parameter = name.decode("latin-1")[:64]
                return ApiError("invalid_query", "NUL characters are not allowed", parameter, None)
    return None


def json_problem(body: bytes, max_depth: int = MAX_JSON_DEPTH) -> ApiError | None:
    """A 400 for a body that is not UTF-8 or nests deeper than ``max_depth``, else ``None``.

    Both are checked before any parser runs: Python's ``json`` recurses once per level (a few
    thousand ``[`` exhaust the stack: a 500), and a non-UTF-8 body would otherwise surface as
    an obscure field error. Every step runs at C speed; the depth check only when the body
    holds more brackets than ``max_depth`` at all.
    """
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return ApiError(
            "invalid_json", f"the body is not valid UTF-8 (byte {exc.start})", "body", None
        )
    # The plain searches first: a body without these bytes (nearly all) costs no regex.
    if b"\\u0000" in body and _NUL.search(body):
        return ApiError("invalid_json", "NUL characters (\\u0000) are not allowed", "body", None)
    lone = _LONE_SURROGATE.search(body) if b"\\u" in body else None
    if lone is not None:
        escape = lone.group().lstrip(b"\\")[-5:].decode()
        return ApiError(
            "invalid_json",
            f"\\{escape} is half of a UTF-16 surrogate pair, not a character",
            "body",
            None,
        )
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return None
    structure = _STRINGS.sub(b"", body).translate(_UNIFY, _NOT_BRACKETS)
    # Each pass removes the innermost level; an empty pair left after max_depth passes
    # means the document is deeper (an unbalanced one is left to the parser).
    run = b"[" * (max_depth + 1)
    for _ in range(max_depth):
        if run in structure:  # the common attack ([[[[…) is found in the first pass
            break
        shorter = structure.replace(b"[]", b"")
        if len(shorter) == len(structure):
            break
        structure = shorter
    if run in structure or b"[]" in structure:
        return ApiError("invalid_json", f"JSON nested deeper than {max_depth} levels", "body", None)
    return None


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
