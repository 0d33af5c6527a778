"""The carrier hot path's HTTP client against real loopback servers that misbehave on purpose."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from workers.connectors.simulator import translate
from workers.connectors.wire import (
    BadResponse,
    ConnectFailed,
    Disconnected,
    WireClient,
    WireTimeout,
)
from workers.errors import AmbiguousCarrierError, RetryableCarrierError

pytestmark = pytest.mark.anyio

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"id":"c1"}'


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str], bytes]:
    """One request: its first line, headers (lower-case names) and body."""
    head = await reader.readuntil(b"\r\n\r\n")
    first, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return first.encode(), headers, body


class Server:
    """A loopback TCP server running ``handler`` per connection; counts connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[tuple[bytes, dict[str, str], bytes]] = []
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def start(self, ssl_ctx: ssl.SSLContext | None = None) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=ssl_ctx)
        port = self.server.sockets[0].getsockname()[1]
        return f"{'https' if ssl_ctx else 'http'}://127.0.0.1:{port}"

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()


Serve = Callable[[Handler], Awaitable[tuple[Server, str]]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[Server] = []

    async def start(handler: Handler) -> tuple[Server, str]:
        server = Server(handler)
        servers.append(server)
        return server, await server.start()

    yield start
    for s in servers:
        await s.stop()


def answering(server_ref: list[Server], response: bytes = OK, close: bool = False) -> Handler:
    """A keep-alive server answering every request with ``response``."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            server_ref[0].requests.append(await read_request(reader))
            writer.write(response)
            await writer.drain()
            if close:
                return

    return handler


async def test_post_sends_headers_and_body_and_reads_the_answer(serve: Serve) -> None:
    ref: list[Server] = []
    server, url = await serve(answering(ref))
    ref.append(server)
    client = WireClient(url + "/base/", {"Authorization": "Bearer t"})
    resp = await client.post("/v1/sms", b'{"to":"+48"}', 5.0)
    assert (resp.status, resp.body) == (200, b'{"id":"c1"}')
    assert resp.headers["content-type"] == "application/json"
    first, headers, body = server.requests[0]
    assert first == b"POST /base/v1/sms HTTP/1.1"
    assert headers["host"] == url.removeprefix("http://")
    assert headers["authorization"] == "Bearer t"
    assert headers["content-type"] == "application/json"
    assert body == b'{"to":"+48"}'
    await client.close()


async def test_keep_alive_reuses_one_connection_for_sequential_requests(serve: Serve) -> None:
    ref: list[Server] = []
    server, url = await serve(answering(ref))
    ref.append(server)
    client = WireClient(url)
    for _ in range(5):
        assert (await client.post("/x", b"{}", 5.0)).status == 200
    assert server.connections == 1
    assert len(server.requests) == 5
    await client.close()


async def test_concurrency_never_exceeds_the_limit(serve: Serve) -> None:
    in_flight = 0
    most = 0

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal in_flight, most
        while True:
            await read_request(reader)
            in_flight += 1
            most = max(most, in_flight)
            await asyncio.sleep(0.02)
            in_flight -= 1
            writer.write(OK)
            await writer.drain()

    server, url = await serve(slow)
    client = WireClient(url, limit=3)
    results = await asyncio.gather(*(client.post("/x", b"{}", 5.0) for _ in range(12)))
    assert [r.status for r in results] == [200] * 12
    assert most == 3
    assert server.connections == 3
    await client.close()


async def test_chunked_answers_and_error_statuses_are_read_whole(serve: Serve) -> None:
    chunked = (
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 2.5\r\n"
        b'Transfer-Encoding: chunked\r\n\r\n4\r\n{"a"\r\n3\r\n:1}\r\n0\r\n\r\n'
    )
    ref: list[Server] = []
    server, url = await serve(answering(ref, chunked))
    ref.append(server)
    client = WireClient(url)
    for _ in range(2):  # the connection stays usable after a chunked answer
        resp = await client.post("/x", b"{}", 5.0)
        assert (resp.status, resp.body, resp.headers["retry-after"]) == (429, b'{"a":1}', "2.5")
    assert server.connections == 1
    await client.close()


async def test_connection_close_and_eof_delimited_answers(serve: Serve) -> None:
    eof_framed = b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"id":"eof"}'
    ref: list[Server] = []
    server, url = await serve(answering(ref, eof_framed, close=True))
    ref.append(server)
    client = WireClient(url)
    for _ in range(3):
        resp = await client.post("/x", b"{}", 5.0)
        assert (resp.status, resp.body) == (200, b'{"id":"eof"}')
    assert server.connections == 3  # never reused after the server said close
    await client.close()


async def test_server_closing_an_idle_connection_costs_no_error(serve: Serve) -> None:
    # Answers with keep-alive framing, then closes: the client must notice the idle close and
    # open a new connection, not write into the dead one (which would look ambiguous).
    ref: list[Server] = []
    server, url = await serve(answering(ref, OK, close=True))
    ref.append(server)
    client = WireClient(url)
    for _ in range(3):
        assert (await client.post("/x", b"{}", 5.0)).status == 200
        await asyncio.sleep(0.05)  # let the FIN arrive while idle
    assert server.connections == 3
    await client.close()


async def test_close_without_answer_is_disconnected_and_ambiguous(serve: Serve) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    _server, url = await serve(hang_up)
    client = WireClient(url)
    with pytest.raises(Disconnected) as caught:
        await client.post("/x", b"{}", 5.0)
    err = translate(caught.value)
    assert isinstance(err, AmbiguousCarrierError) and err.code == "carrier_disconnected"


async def test_half_an_answer_then_close_is_disconnected(serve: Serve) -> None:
    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{"id":')
        await writer.drain()

    _server, url = await serve(half)
    with pytest.raises(Disconnected):
        await WireClient(url).post("/x", b"{}", 5.0)


async def test_deadline_gives_a_timeout_and_the_connection_is_not_reused(serve: Serve) -> None:
    calls = 0

    async def late_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal calls
        while True:
            await read_request(reader)
            calls += 1
            if calls == 1:
                await asyncio.sleep(0.3)  # answers after the client gave up
            writer.write(OK)
            await writer.drain()

    server, url = await serve(late_once)
    client = WireClient(url)
    with pytest.raises(WireTimeout) as caught:
        await client.post("/x", b"{}", 0.1)
    assert translate(caught.value).code == "carrier_timeout"
    await asyncio.sleep(0.3)  # the late answer arrives on the old connection
    resp = await client.post("/x", b"{}", 5.0)
    assert resp.status == 200
    assert server.connections == 2  # the late answer was never read as the second one's
    await client.close()


async def test_garbage_is_a_bad_response(serve: Serve) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    _server, url = await serve(garbage)
    with pytest.raises(BadResponse) as caught:
        await WireClient(url).post("/x", b"{}", 5.0)
    assert isinstance(translate(caught.value), AmbiguousCarrierError)


async def test_refused_connection_is_certainly_not_sent() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(ConnectFailed) as caught:
        await WireClient(f"http://127.0.0.1:{port}").post("/x", b"{}", 2.0)
    err = translate(caught.value)
    assert isinstance(err, RetryableCarrierError) and err.code == "carrier_unreachable"


async def test_get_sends_no_body(serve: Serve) -> None:
    ref: list[Server] = []
    server, url = await serve(answering(ref))
    ref.append(server)
    await WireClient(url).get("/v2.1/sms?externalId=a%2Fb", 5.0)
    first, headers, body = server.requests[0]
    assert first == b"GET /v2.1/sms?externalId=a%2Fb HTTP/1.1"
    assert "content-length" not in headers and body == b""


def test_bad_urls_and_header_injection_are_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        WireClient("ftp://example.test")
    with pytest.raises(ValueError, match="line breaks"):
        WireClient("http://127.0.0.1:1", {"X": "a\r\nEvil: 1"})


async def test_https_checks_the_certificate(tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    # A self-signed certificate for 127.0.0.1 (Debian's openssl CLI).
    openssl = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    names = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run([*openssl, *names, *files], check=True, capture_output=True)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    ref: list[Server] = []
    server = Server(answering(ref))
    ref.append(server)
    url = await server.start(server_ctx)
    try:
        trusting = WireClient(url, ssl_context=ssl.create_default_context(cafile=str(cert)))
        assert (await trusting.post("/x", b"{}", 5.0)).status == 200
        await trusting.close()
        with pytest.raises(ConnectFailed):  # an unknown issuer: never sent
            await WireClient(url).post("/x", b"{}", 5.0)
    finally:
        await server.stop()
