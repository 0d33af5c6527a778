"""Minimal HTTP/1.1 server on asyncio + httptools: keep-alive, pipelining, ordered replies.

Handlers are plain callables ``(Request) -> Reply`` where a reply is one of

* ``bytes`` - a complete HTTP response, written at once (the fast path);
* :class:`Delayed` - a complete response written after ``delay`` seconds;
* :class:`Hold` - no answer: the connection stops reading and is closed after ``timeout``;
* a coroutine returning ``bytes`` - for handlers that must await (outbound posts).

Responses on one connection are always written in request order.

Longer than 400 lines on purpose: one protocol loop (parsing, pipelining, ordered writes)
that is only correct read whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, cast

import httptools
import orjson

from simulator.config import MAX_BODY_BYTES

log = logging.getLogger("simulator.http")

#: Bodies beyond the limit are read and dropped up to this many bytes, then the socket is closed.
_MAX_DISCARD_BYTES = 64 * 1024 * 1024

_REASONS: dict[int, bytes] = {
    200: b"OK",
    400: b"Bad Request",
    401: b"Unauthorized",
    404: b"Not Found",
    405: b"Method Not Allowed",
    409: b"Conflict",
    413: b"Content Too Large",
    429: b"Too Many Requests",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}

_JSON = b"application/json"
_OK_JSON_PREFIX = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "


class Request:
    """One parsed request: raw method, path, query string, body and ``Authorization`` value."""

    __slots__ = ("auth", "body", "method", "path", "query")

    def __init__(
        self, method: bytes, path: bytes, query: bytes, body: bytes, auth: bytes | None
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.body = body
        self.auth = auth


class Delayed:
    """A reply written after ``delay`` seconds (simulated carrier latency)."""

    __slots__ = ("data", "delay")

    def __init__(self, delay: float, data: bytes) -> None:
        self.delay = delay
        self.data = data


class Hold:
    """No reply: stop reading the connection and close it after ``timeout`` seconds."""

    __slots__ = ("timeout",)

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout


Reply = bytes | Delayed | Hold | Coroutine[Any, Any, bytes]
Handler = Callable[[Request], Reply]


def response(
    status: int,
    body: bytes = b"",
    content_type: bytes = _JSON,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> bytes:
    """Build a complete HTTP/1.1 response."""
    parts = [
        b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
        % (status, _REASONS.get(status, b"Unknown"), content_type, len(body))
    ]
    for name, value in headers:
        parts.append(name + b": " + value + b"\r\n")
    parts.append(b"\r\n")
    parts.append(body)
    return b"".join(parts)


def ok_json(body: bytes) -> bytes:
    """Build a ``200`` response around an already serialised JSON body (fast path)."""
    return _OK_JSON_PREFIX + str(len(body)).encode() + b"\r\n\r\n" + body


def json_response(status: int, obj: Any, headers: Iterable[tuple[bytes, bytes]] = ()) -> bytes:
    """Build a JSON response."""
    return response(status, orjson.dumps(obj), _JSON, headers)


def error_response(
    status: int, code: str, message: str | None = None, headers: Iterable[tuple[bytes, bytes]] = ()
) -> bytes:
    """Build ``{"error": {"code": ..., "message": ...}}`` with the given status."""
    err: dict[str, str] = {"code": code}
    if message is not None:
        err["message"] = message
    return json_response(status, {"error": err}, headers)


NOT_FOUND = error_response(404, "not_found", "no such endpoint")
INTERNAL = error_response(500, "internal", "simulator handler error")
_BAD_HTTP = error_response(400, "invalid_request", "malformed HTTP request")
_TOO_LARGE = error_response(413, "too_large", f"body exceeds {MAX_BODY_BYTES} bytes")


def _with_header(data: bytes, header: bytes) -> bytes:
    """Insert one header line right after the status line of a built response."""
    i = data.index(b"\r\n") + 2
    return data[:i] + header + b"\r\n" + data[i:]


class Router:
    """Exact-path routing table with 404/405 handling."""

    def __init__(self) -> None:
        self._routes: dict[bytes, dict[bytes, Handler]] = {}
        self._not_allowed: dict[bytes, bytes] = {}

    def add(self, method: str, path: str, handler: Handler) -> None:
        """Register ``handler`` for ``method`` on ``path``."""
        methods = self._routes.setdefault(path.encode(), {})
        methods[method.encode()] = handler
        allow = b", ".join(sorted(methods))
        self._not_allowed[path.encode()] = error_response(
            405, "method_not_allowed", "method not allowed", [(b"Allow", allow)]
        )

    def dispatch(self, req: Request) -> Reply:
        """Route ``req`` to its handler, or answer 404/405."""
        methods = self._routes.get(req.path)
        if methods is None:
            return NOT_FOUND
        handler = methods.get(req.method)
        if handler is None:
            return self._not_allowed[req.path]
        return handler(req)


class _Slot:
    """A place in a connection's ordered reply queue."""

    __slots__ = ("close", "data")

    def __init__(self, data: bytes | None = None, close: bool = False) -> None:
        self.data = data
        self.close = close


class HttpServer:
    """Owns the listening socket(s) and the open connections of one dispatch function."""

    def __init__(self, dispatch: Callable[[Request], Reply], on_error: Callable[[], None]) -> None:
        self.dispatch = dispatch
        self.on_error = on_error
        self.connections: set[HttpProtocol] = set()
        self.servers: list[asyncio.AbstractServer] = []

    def protocol_factory(self) -> HttpProtocol:
        """Create the protocol for a new connection."""
        return HttpProtocol(self)

    async def listen(
        self,
        host: str,
        port: int,
        *,
        reuse_port: bool = False,
        backlog: int = 1024,
    ) -> int:
        """Start listening; return the bound port."""
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(
            self.protocol_factory, host, port, reuse_port=reuse_port or None, backlog=backlog
        )
        self.servers.append(srv)
        sock = srv.sockets[0]
        return int(sock.getsockname()[1])

    async def close(self) -> None:
        """Stop listening and close every connection."""
        for srv in self.servers:
            srv.close()
        for conn in list(self.connections):
            conn.abort()
        for srv in self.servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(srv.wait_closed(), 2.0)
        self.servers.clear()


class HttpProtocol(asyncio.Protocol):
    """One HTTP/1.1 connection."""

    __slots__ = (
        "_auth",
        "_body",
        "_body_size",
        "_closing",
        "_discarded",
        "_eof",
        "_expect",
        "_hold_handle",
        "_lost",
        "_parser",
        "_queue",
        "_server",
        "_stalled",
        "_tasks",
        "_too_large",
        "_transport",
        "_url",
    )

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._auth: bytes | None = None
        self._body: list[bytes] = []
        self._body_size = 0
        self._expect = False
        self._too_large = False
        self._discarded = 0
        self._queue: deque[_Slot] = deque()
        self._stalled = False
        self._closing = False
        self._lost = False
        self._eof = False
        self._hold_handle: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[bytes]] = set()

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self._transport = cast(asyncio.Transport, transport)
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._server.connections.discard(self)
        if self._hold_handle is not None:
            self._hold_handle.cancel()
            self._hold_handle = None
        self._queue.clear()

    def data_received(self, data: bytes) -> None:
        if self._closing or self._stalled:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail()
        except httptools.HttpParserError:
            self._fail()

    def eof_received(self) -> bool:
        """Client half-closed: keep the socket open until queued replies are written."""
        self._eof = True
        return bool(self._queue and not self._stalled)

    def pause_writing(self) -> None:
        if self._transport is not None and not self._lost:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None and not self._lost and not self._stalled:
            self._transport.resume_reading()

    def abort(self) -> None:
        """Drop the connection now (and cancel handler tasks still running for it)."""
        for task in list(self._tasks):
            task.cancel()
        if self._transport is not None and not self._lost:
            self._transport.abort()

    # -- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._auth = None
        self._body = []
        self._body_size = 0
        self._expect = False
        self._too_large = False

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        n = name.lower()
        if n == b"authorization":
            self._auth = value
        elif n == b"content-length":
            try:
                if int(value) > MAX_BODY_BYTES:
                    self._too_large = True
            except ValueError:
                pass
        elif n == b"expect":
            self._expect = value.lower() == b"100-continue"

    def on_headers_complete(self) -> None:
        if self._closing or self._stalled:
            return
        if self._too_large:
            self._reject_too_large()
        elif self._expect and not self._queue and self._transport is not None:
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self._too_large:
            self._discarded += len(body)
            if self._discarded > _MAX_DISCARD_BYTES:
                self._closing = True
                self.abort()
            return
        self._body_size += len(body)
        if self._body_size > MAX_BODY_BYTES:
            self._too_large = True
            self._body = []
            self._reject_too_large()
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._closing or self._stalled:
            return
        if self._too_large:
            # The 413 was queued when the limit was crossed; close once it is written.
            self._closing = True
            self._emit(None, True)
            return
        parser = self._parser
        url = self._url
        q = url.find(b"?")
        if q >= 0:
            path, query = url[:q], url[q + 1 :]
        else:
            path, query = url, b""
        body = self._body
        req = Request(
            parser.get_method(),
            path,
            query,
            body[0] if len(body) == 1 else b"".join(body),
            self._auth,
        )
        try:
            reply = self._server.dispatch(req)
        except Exception:
            log.exception("simulator handler failed")
            self._server.on_error()
            reply = INTERNAL
        keep_alive = parser.should_keep_alive()
        if type(reply) is bytes:
            if keep_alive and not self._queue and parser.get_http_version() == "1.1":
                self._transport.write(reply)  # type: ignore[union-attr]
                return
            data, close = self._finish(reply, keep_alive)
            self._emit(data, close)
            return
        self._deferred(reply, keep_alive)

    # -- replies ------------------------------------------------------------------------------

    def _finish(self, data: bytes, keep_alive: bool) -> tuple[bytes, bool]:
        """Add the ``Connection`` header the request calls for."""
        if not keep_alive:
            return _with_header(data, b"Connection: close"), True
        if self._parser.get_http_version() != "1.1":
            return _with_header(data, b"Connection: keep-alive"), False
        return data, False

    def _deferred(self, reply: Reply, keep_alive: bool) -> None:
        loop = asyncio.get_running_loop()
        if isinstance(reply, Delayed):
            slot = _Slot()
            self._queue.append(slot)
            data, close = self._finish(reply.data, keep_alive)
            loop.call_later(reply.delay, self._fill, slot, data, close)
        elif isinstance(reply, Hold):
            self._stalled = True
            self._queue.append(_Slot())  # never filled: later replies can't overtake it
            if self._transport is not None:
                self._transport.pause_reading()
            self._hold_handle = loop.call_later(reply.timeout, self._end_hold)
        elif isinstance(reply, bytes):  # pragma: no cover - handled by the caller
            self._emit(*self._finish(reply, keep_alive))
        else:
            slot = _Slot()
            self._queue.append(slot)
            task: asyncio.Task[bytes] = loop.create_task(_guard(reply, self._server.on_error))
            self._tasks.add(task)

            def done(t: asyncio.Task[bytes]) -> None:
                self._tasks.discard(t)
                data = t.result() if not t.cancelled() else INTERNAL
                self._fill(slot, *self._finish(data, keep_alive))

            task.add_done_callback(done)

    def _emit(self, data: bytes | None, close: bool) -> None:
        """Write ``data`` now, or after the replies queued before it."""
        if self._queue:
            self._queue.append(_Slot(data if data is not None else b"", close))
            self._flush()
            return
        if self._lost or self._transport is None:
            return
        if data:
            self._transport.write(data)
        if close:
            self._closing = True
            self._transport.close()

    def _fill(self, slot: _Slot, data: bytes, close: bool) -> None:
        slot.data = data
        slot.close = close
        self._flush()

    def _flush(self) -> None:
        queue = self._queue
        transport = self._transport
        if self._lost or transport is None:
            queue.clear()
            return
        while queue and queue[0].data is not None:
            slot = queue.popleft()
            if slot.data:
                transport.write(slot.data)
            if slot.close:
                self._closing = True
                queue.clear()
                transport.close()
                return
        if self._eof and not queue:
            self._closing = True
            transport.close()

    def _end_hold(self) -> None:
        self._hold_handle = None
        self._closing = True
        if self._transport is not None and not self._lost:
            self._transport.close()

    def _reject_too_large(self) -> None:
        data = _with_header(_TOO_LARGE, b"Connection: close")
        self._emit(data, False)

    def _fail(self) -> None:
        self._closing = True
        self._emit(_with_header(_BAD_HTTP, b"Connection: close"), True)


async def _guard(coro: Awaitable[bytes], on_error: Callable[[], None]) -> bytes:
    """Await a handler coroutine; turn an exception into a 500 reply."""
    try:
        return await coro
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("simulator async handler failed")
        on_error()
        return INTERNAL
