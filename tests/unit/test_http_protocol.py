"""The API's HTTP protocol: one write per response, and HTTP/1.1 unchanged.

The transport tests use a recording transport in a real event loop; the server tests run a real
uvicorn on loopback with the protocol and speak raw HTTP/1.1 to it (keep-alive, chunked
streaming past the flush threshold, ``Connection: close``).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from dispatcher.api.http_protocol import (
    FLUSH_BYTES,
    CoalescingHttpToolsProtocol,
    CoalescingTransport,
)


class Recording(asyncio.Transport):
    """A transport that records what reaches it."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 4242)}.get(name, default)


def _in_loop(scenario: Any) -> Any:
    async def main() -> Any:
        return await scenario(asyncio.get_running_loop())

    return asyncio.run(main())


def test_writes_of_one_iteration_leave_as_one() -> None:
    async def scenario(loop: asyncio.AbstractEventLoop) -> tuple[list[bytes], list[bytes]]:
        inner = Recording()
        t = CoalescingTransport(inner, loop)
        t.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        t.write(memoryview(b"ok"))
        during = list(inner.writes)
        await asyncio.sleep(0)  # the end of the iteration
        return during, inner.writes

    during, after = _in_loop(scenario)
    assert during == []
    assert after == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]


def test_each_iteration_flushes_its_own_writes() -> None:
    async def scenario(loop: asyncio.AbstractEventLoop) -> list[bytes]:
        inner = Recording()
        t = CoalescingTransport(inner, loop)
        t.write(b"a")
        await asyncio.sleep(0)
        t.write(b"b")
        t.write(b"c")
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # nothing queued: no empty write
        return inner.writes

    assert _in_loop(scenario) == [b"a", b"bc"]


def test_a_large_body_is_not_held() -> None:
    async def scenario(loop: asyncio.AbstractEventLoop) -> tuple[list[int], list[int]]:
        inner = Recording()
        t = CoalescingTransport(inner, loop)
        t.write(b"h" * 100)
        t.write(b"x" * FLUSH_BYTES)
        at_once = [len(w) for w in inner.writes]
        t.write(b"tail")
        await asyncio.sleep(0)
        return at_once, [len(w) for w in inner.writes]

    at_once, after = _in_loop(scenario)
    assert at_once == [100 + FLUSH_BYTES]
    assert after == [100 + FLUSH_BYTES, 4]


def test_close_sends_what_is_queued_first_and_abort_drops_it() -> None:
    async def scenario(loop: asyncio.AbstractEventLoop) -> tuple[Recording, Recording]:
        closing, aborting = Recording(), Recording()
        c = CoalescingTransport(closing, loop)
        c.write(b"last answer")
        c.close()
        a = CoalescingTransport(aborting, loop)
        a.write(b"never sent")
        a.abort()  # the transport's own: drops its buffer, as ours is dropped
        await asyncio.sleep(0)
        return closing, aborting

    closing, aborting = _in_loop(scenario)
    assert closing.writes == [b"last answer"] and closing.closed
    assert aborting.writes == [] and aborting.aborted


def test_everything_else_is_the_transports() -> None:
    async def scenario(loop: asyncio.AbstractEventLoop) -> Any:
        t = CoalescingTransport(Recording(), loop)
        return t.get_extra_info("peername"), t.is_closing()

    assert _in_loop(scenario) == (("127.0.0.1", 4242), False)


# --------------------------------------------------------------------------- a real server

STREAM_CHUNKS = [b"a" * 1000, b"b" * (FLUSH_BYTES + 10), b"c" * 5]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            pass
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for chunk in STREAM_CHUNKS:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    answer = b"echo:" + body
    headers = [(b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


@pytest.fixture
def server_port() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        app, http=CoalescingHttpToolsProtocol, loop="asyncio", log_config=None, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started
    yield port
    server.should_exit = True
    thread.join(10)
    sock.close()


def _read_response(f: Any) -> tuple[bytes, dict[bytes, bytes], bytes]:
    status = f.readline()
    headers: dict[bytes, bytes] = {}
    while (line := f.readline()) != b"\r\n":
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding") == b"chunked":
        body = b""
        while (size := int(f.readline(), 16)) > 0:
            body += f.read(size)
            f.readline()
        f.readline()
        return status, headers, body
    return status, headers, f.read(int(headers[b"content-length"]))


def test_keep_alive_streaming_and_close_over_real_http(server_port: int) -> None:
    with socket.create_connection(("127.0.0.1", server_port), timeout=5) as s:
        f = s.makefile("rb")
        for i in range(3):  # several answers on one connection
            payload = f"request {i}".encode()
            s.sendall(
                b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s"
                % (len(payload), payload)
            )
            status, _, body = _read_response(f)
            assert status.startswith(b"HTTP/1.1 200")
            assert body == b"echo:" + payload
        s.sendall(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
        status, headers, body = _read_response(f)
        assert headers[b"transfer-encoding"] == b"chunked"
        assert body == b"".join(STREAM_CHUNKS)
        s.sendall(b"GET /echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        status, headers, body = _read_response(f)
        assert body == b"echo:"
        assert f.read() == b""  # the server closed after the answer it had queued


def test_the_protocol_writes_each_answer_once() -> None:
    """uvicorn's protocol on a recording transport: head and body reach it as one write."""

    async def scenario(loop: asyncio.AbstractEventLoop) -> list[bytes]:
        config = uvicorn.Config(app, log_config=None, lifespan="off")
        config.load()
        proto = CoalescingHttpToolsProtocol(config, uvicorn.server.ServerState(), {}, loop)
        inner = Recording()
        proto.connection_made(inner)
        proto.data_received(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nhi")
        for _ in range(50):
            if inner.writes:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # a second write, if any, would land by now
        proto.connection_lost(None)
        return inner.writes

    writes = _in_loop(scenario)
    assert len(writes) == 1
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert writes[0].endswith(b"\r\n\r\necho:hi")
