"""The simulator connector reads real HTTP answers through the wire client: status, headers
(``Retry-After``) and bodies become our results and errors."""

from __future__ import annotations

import asyncio

import pytest

from tests.unit.test_wire import OK, Handler, Serve, read_request

# The loopback-server fixtures of the wire client's tests.
from tests.unit.test_wire import anyio_backend as anyio_backend
from tests.unit.test_wire import serve as serve
from workers.connectors.base import Outbound
from workers.connectors.simulator import SimulatorConnector
from workers.errors import PermanentCarrierError, RetryableCarrierError, ThrottledError

pytestmark = pytest.mark.anyio

MSG = Outbound("m1", "+48501000001", "ACME", "hello", 1)


def answer_with(raw: bytes) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(raw)
            await writer.drain()

    return handler


def response(status: str, body: bytes, extra: str = "") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


async def test_accepted_submit_carries_the_carrier_id(serve: Serve) -> None:
    _s, url = await serve(answer_with(OK))
    result = await SimulatorConnector("c", url, token="t").submit(MSG)
    assert result.ok and result.carrier_id == "c1" and result.http_status == 200


async def test_429_becomes_throttled_with_the_carriers_retry_after(serve: Serve) -> None:
    raw = response("429 Too Many Requests", b"{}", "Retry-After: 2.5\r\n")
    _s, url = await serve(answer_with(raw))
    result = await SimulatorConnector("c", url).submit(MSG)
    assert isinstance(result.error, ThrottledError) and result.error.retry_after == 2.5


async def test_4xx_is_permanent_with_the_carriers_code_and_5xx_retryable(serve: Serve) -> None:
    body = b'{"error":{"code":"invalid_number","message":"no such number"}}'
    _s, url = await serve(answer_with(response("400 Bad Request", body)))
    result = await SimulatorConnector("c", url).submit(MSG)
    assert isinstance(result.error, PermanentCarrierError)
    assert (result.error.code, result.http_status) == ("invalid_number", 400)
    _s, url = await serve(answer_with(response("503 Busy", b"")))
    result = await SimulatorConnector("c", url).submit(MSG)
    assert isinstance(result.error, RetryableCarrierError) and result.http_status == 503
