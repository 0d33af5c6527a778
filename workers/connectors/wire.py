"""A lean HTTP/1.1 client for the carrier hot path: keep-alive connections, one POST at a time
per connection, responses parsed by ``httptools`` (llhttp, the parser inside Node.js and
uvicorn).

Why not aiohttp here: a carrier submit is a small POST to one origin, and aiohttp spent most
of the bulk workers' CPU in scenario B doing it (header multidicts, URL objects, tracing hooks,
a task per request). This client keeps only what that call needs, at a fraction of aiohttp's
CPU per request (figures and the command: ``docs/client-choice.md``). Everything else that
speaks HTTP (webhooks, the SDK, tools) keeps its general-purpose client.

What it does and does not do:

* ``http`` and ``https`` (the stdlib's TLS with certificate checks), one origin per client;
* ``Content-Length`` and chunked responses; ``Connection: close`` is honoured;
* a total deadline per request (connect + write + answer);
* no redirects, proxies, cookies, compression or pipelining: a carrier API needs none;
* the URL guard of every fetcher (:mod:`dispatcher.webhooks.urls`): the base URL is taken in
  its canonical form, and each new connection goes only to an address the guard allows
  (carrier connections are configured by the operator, so private networks and loopback are
  allowed; cloud metadata, multicast and reserved addresses never are).

Errors leave as :class:`WireError` subclasses and say whether the request may have reached the
server: only :class:`ConnectFailed` is certain it did not. The connectors map them to ours.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import httptools

from dispatcher.webhooks.urls import UrlRefused, address_problem, check_static


class WireError(Exception):
    """An HTTP exchange that produced no usable answer."""


class ConnectFailed(WireError):
    """No connection could be opened: the request was certainly not sent."""


class Disconnected(WireError):
    """The connection closed after the request was written: it may have arrived."""


class WireTimeout(WireError):
    """No full answer before the deadline: the request may have arrived."""


class BadResponse(WireError):
    """The server's bytes are not an HTTP/1.1 response."""


@dataclass(slots=True)
class Response:
    """A complete answer; header names are lower-case."""

    status: int
    body: bytes
    headers: dict[str, str]


class _Connection(asyncio.Protocol):
    """One keep-alive connection; at most one exchange at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Response] | None = None
        self._status = 0
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._reusable = True

    # asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # bytes nobody asked for: the connection is not reusable
            self._abort()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(BadResponse(f"unreadable response: {exc}"))
            self._abort()

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._status and not self._framed():
            # A response delimited by the end of the connection (no length, not chunked).
            self._complete(reusable=False)
        else:
            self._fail(Disconnected("connection closed before the answer was complete"))

    # httptools callbacks ---------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._complete(reusable=self._parser.should_keep_alive())

    # the exchange ----------------------------------------------------------------------------
    def exchange(self, request: bytes) -> asyncio.Future[Response]:
        """Write ``request``; the future resolves with the answer."""
        assert self.transport is not None and self._waiter is None
        self._status, self._headers, self._body = 0, {}, []
        waiter: asyncio.Future[Response] = self._loop.create_future()
        self._waiter = waiter
        self.transport.write(request)
        return waiter

    @property
    def usable(self) -> bool:
        """Open, idle and not told to close."""
        return (
            not self.closed
            and self._reusable
            and self._waiter is None
            and self.transport is not None
            and not self.transport.is_closing()
        )

    def finish(self, answered: bool) -> None:
        """The caller is done with the exchange. Unless it was answered in full, an answer may
        still be on its way: the connection is never reused after a timeout or a cancel."""
        if not answered:
            if self._waiter is not None and not self._waiter.done():
                self._waiter.cancel()
            self._abort()
        self._waiter = None

    def _framed(self) -> bool:
        return "content-length" in self._headers or "chunked" in self._headers.get(
            "transfer-encoding", ""
        )

    def _complete(self, reusable: bool) -> None:
        self._reusable = reusable
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(Response(self._status, b"".join(self._body), self._headers))

    def _fail(self, exc: WireError) -> None:
        self._reusable = False
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _abort(self) -> None:
        self._reusable = False
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        """Close without waiting."""
        self._reusable = False
        if self.transport is not None:
            self.transport.close()


class WireClient:
    """POSTs to one origin over at most ``limit`` keep-alive connections."""

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str] | None = None,
        limit: int = 64,
        keepalive_s: float = 15.0,
        ssl_context: ssl.SSLContext | None = None,
        allow_private: bool = True,
    ) -> None:
        try:
            target = check_static(base_url, allow_private, restrict_ports=False)
        except UrlRefused as exc:
            raise ValueError(f"carrier url {base_url!r}: {exc.reason}") from None
        url = urlsplit(target.url)
        self._host = target.host
        self._tls = target.scheme == "https"
        self._port = target.port
        self._allow_private = allow_private
        self._literal = target.ip
        self._ssl = (ssl_context or ssl.create_default_context()) if self._tls else None
        self._prefix = url.path.rstrip("/")
        default_port = self._port == (443 if self._tls else 80)
        authority = self._host if default_port else f"{self._host}:{self._port}"
        if ":" in self._host and not default_port:  # IPv6 literal
            authority = f"[{self._host}]:{self._port}"
        lines = [f"Host: {authority}", "Connection: keep-alive"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        for line in lines:
            if "\r" in line or "\n" in line:
                raise ValueError("header names and values must not contain line breaks")
        self._fixed_headers = "".join(f"{line}\r\n" for line in lines)
        self._keepalive_s = keepalive_s
        self._slots = asyncio.Semaphore(limit)
        self._idle: collections.deque[_Connection] = collections.deque()
        self._open: set[_Connection] = set()

    async def post(
        self, path: str, body: bytes, timeout_s: float, content_type: str = "application/json"
    ) -> Response:
        """POST ``body`` to ``path`` (below the base URL's path) and read the whole answer."""
        return await self.request("POST", path, timeout_s, body, content_type)

    async def get(self, path: str, timeout_s: float) -> Response:
        """GET ``path`` (with its query string, already encoded)."""
        return await self.request("GET", path, timeout_s)

    async def request(
        self,
        method: str,
        path: str,
        timeout_s: float,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> Response:
        """One exchange on a pooled connection; ``timeout_s`` bounds all of it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        head = f"{method} {self._prefix}{path} HTTP/1.1\r\n{self._fixed_headers}"
        if body is not None:
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        request = (head + "\r\n").encode("latin-1") + (body or b"")
        async with self._slots:
            conn = await self._connection(loop, deadline)
            waiter = conn.exchange(request)
            timer = loop.call_at(deadline, _expire, waiter)
            answered = False
            try:
                response = await waiter
                answered = True
            finally:
                timer.cancel()
                conn.finish(answered)
                self._put_back(conn)
            return response

    async def _connection(self, loop: asyncio.AbstractEventLoop, deadline: float) -> _Connection:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()  # the most recently used: least likely to be closed
            if conn.usable and now - conn.idle_since < self._keepalive_s:
                return conn
            self._drop(conn)
        try:
            async with asyncio.timeout_at(deadline):
                conn = await self._connect(loop)
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise ConnectFailed(f"{type(exc).__name__}: {exc}") from exc
        self._open.add(conn)
        return conn

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        """Resolve, keep the addresses the guard allows, connect to the first that answers.
        The host name is kept for TLS (SNI and the certificate check)."""
        if self._literal is not None:  # checked already; no resolver round trip
            family = socket.AF_INET6 if self._literal.version == 6 else socket.AF_INET
            infos: list[tuple[Any, ...]] = [
                (family, socket.SOCK_STREAM, 6, "", (self._host, self._port))
            ]
        else:
            infos = await loop.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM)
        allowed = [i for i in infos if address_problem(str(i[4][0]), self._allow_private) is None]
        if not allowed:
            problems = sorted(
                {str(address_problem(str(i[4][0]), self._allow_private)) for i in infos}
            )
            raise OSError(f"{self._host} resolves only to a {', '.join(problems)}")
        error: OSError | None = None
        for family, _kind, _proto, _name, sockaddr in allowed:
            try:
                _, conn = await loop.create_connection(
                    lambda: _Connection(loop),
                    str(sockaddr[0]),
                    self._port,
                    family=family,
                    ssl=self._ssl,
                    server_hostname=self._host if self._tls else None,
                )
                return conn
            except OSError as exc:
                error = exc
        assert error is not None
        raise error

    def _put_back(self, conn: _Connection) -> None:
        if conn.usable:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            self._drop(conn)

    def _drop(self, conn: _Connection) -> None:
        conn.close()
        self._open.discard(conn)

    async def close(self) -> None:
        """Close every connection."""
        for conn in list(self._open):
            self._drop(conn)
        self._idle.clear()


def _expire(waiter: asyncio.Future[Response]) -> None:
    if not waiter.done():
        waiter.set_exception(WireTimeout("no complete answer before the deadline"))
