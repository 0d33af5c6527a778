"""The Python library against a real stack: HTTP client (sync and async), retries with one
Idempotency-Key through a real flaky HTTP server, errors, and the in-process producer."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from dispatcher.client import (
    AsyncSmsClient,
    RetryPolicy,
    SmsApiError,
    SmsClient,
    SmsTransportError,
)
from tests.support.services import free_port
from tests.support.stack import ApiClient, Stack, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.any_db]
FAST = RetryPolicy(attempts=4, base=0.05, max_delay=0.2)


class FlakyProxy:
    """A real HTTP server in front of the API that spoils the first ``fail`` POSTs.

    ``mode="lost"``: the request reaches the API (the message is stored) but the client gets a
    502, as when a load balancer drops the answer. ``mode="busy"``: the API never sees it and
    the client gets a 503 with ``Retry-After``.
    """

    def __init__(self, upstream: str, fail: int, mode: str, retry_after: str = "1") -> None:
        self.upstream = upstream
        self.fail = fail
        self.mode = mode
        self.retry_after = retry_after
        self.keys: list[str | None] = []
        self.times: list[float] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_a: Any) -> None:
                pass

            def _forward(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                if method == "POST":
                    proxy.keys.append(self.headers.get("Idempotency-Key"))
                    proxy.times.append(time.monotonic())
                spoil = method == "POST" and proxy.fail > 0
                if spoil:
                    proxy.fail -= 1
                if spoil and proxy.mode == "busy":
                    self._answer(503, b'{"errors":[]}', {"Retry-After": proxy.retry_after})
                    return
                r = httpx.request(
                    method, proxy.upstream + self.path, content=body, headers=headers, timeout=30
                )
                if spoil:
                    self._answer(502, b"bad gateway", {})
                else:
                    self._answer(r.status_code, r.content, {})

            def _answer(self, status: int, body: bytes, extra: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                self._forward("POST")

            def do_GET(self) -> None:
                self._forward("GET")

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FlakyProxy:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def account(stack: Stack) -> ApiClient:
    return stack.account()


def _client(account: ApiClient, url: str | None = None, **kw: Any) -> SmsClient:
    keys = account.keys
    return SmsClient(
        keys["Application-Key"], keys["Authorization"], url or account.base, retry=FAST, **kw
    )


def _stored(stack: Stack, phone: str) -> int:
    engine = stack.db()
    with engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM messages WHERE phone = :p"), {"p": phone})
        count = int(n.scalar_one())
    engine.dispose()
    return count


def test_send_then_status_reaches_sent(stack: Stack, account: ApiClient) -> None:
    with _client(account) as sms:
        result = sms.send_sms("+48111000001", "Your code is 123456", sender="ACME", priority=True)
        assert len(result.ids) == 1 and result.messages[0].lane == "priority"
        assert result.messages[0].phone_number == "+48111000001"
        wait_until(lambda: sms.get_status(result.ids[0]) in ("sent", "delivered"), 30, what="sent")
        message = sms.get_message(result.ids[0])
        assert message.raw["events"], "the timeline comes with the message"


def test_send_to_many_with_partial_success(account: ApiClient) -> None:
    numbers = [f"+4811120{i:04d}" for i in range(20)] + ["+48 12"]
    with _client(account) as sms:
        result = sms.send_bulk(numbers, "Sale today", sender="SHOP")
    assert len(result.ids) == 20 and len(set(result.ids)) == 20
    assert [e.code for e in result.errors] == ["invalid_phone_number"]
    assert result.errors[0].parameter == "phoneNumbers" and result.errors[0].value == "+48 12"


def test_refused_request_raises_with_code_and_field(account: ApiClient) -> None:
    with _client(account) as sms, pytest.raises(SmsApiError) as caught:
        sms.send_sms("+48111000002", "hi", sender="Much too long a sender")
    assert caught.value.status == 400
    assert caught.value.code == "invalid_sender" and caught.value.parameter == "sender"
    with _client(account) as sms, pytest.raises(SmsApiError) as missing:
        sms.get_message("0192f7a4-8b1c-7cde-8f00-1234567890ab")
    assert missing.value.status == 404 and missing.value.code == "not_found"


def test_lost_answer_is_retried_with_the_same_key_and_stored_once(
    stack: Stack, account: ApiClient
) -> None:
    phone = "+48111000003"
    with FlakyProxy(account.base, fail=1, mode="lost") as proxy, _client(account, proxy.url) as sms:
        result = sms.send_sms(phone, "Only once", sender="ACME")
    assert len(proxy.keys) == 2, "one spoiled attempt, one retry"
    assert proxy.keys[0] == proxy.keys[1] == result.idempotency_key
    assert result.duplicate, "the retry got the first answer back"
    assert _stored(stack, phone) == 1


def test_busy_server_retry_after_is_honoured(stack: Stack, account: ApiClient) -> None:
    phone = "+48111000004"
    with FlakyProxy(account.base, fail=1, mode="busy") as proxy, _client(account, proxy.url) as sms:
        result = sms.send_sms(phone, "After a pause", sender="ACME", idempotency_key="my-key-1")
    assert proxy.keys == ["my-key-1", "my-key-1"]
    assert proxy.times[1] - proxy.times[0] >= 0.95, "Retry-After: 1 was honoured"
    assert len(result.ids) == 1 and _stored(stack, phone) == 1


def test_unreachable_server_raises_transport_error_after_retries() -> None:
    start = time.monotonic()
    sms = SmsClient("k", "a", f"http://127.0.0.1:{free_port()}", retry=FAST)
    with pytest.raises(SmsTransportError) as caught:
        sms.send_sms("+48111000005", "x", sender="ACME")
    assert caught.value.code == "unreachable" and time.monotonic() - start < 10
    sms.close()


def test_async_client_sends_and_reads(stack: Stack, account: ApiClient) -> None:
    async def main() -> tuple[list[str], str]:
        keys = account.keys
        async with AsyncSmsClient(
            keys["Application-Key"], keys["Authorization"], account.base, retry=FAST
        ) as sms:
            results = await asyncio.gather(
                *(sms.send_sms(f"+4811101{i:04d}", "async", sender="ACME") for i in range(5))
            )
            ids = [r.ids[0] for r in results]
            return ids, await sms.get_status(ids[0])

    ids, status = asyncio.run(main())
    assert len(set(ids)) == 5 and status in ("queued", "sending", "sent", "delivered")


def test_async_client_retries_with_the_same_key(stack: Stack, account: ApiClient) -> None:
    phone = "+48111000006"

    async def main(url: str) -> list[str]:
        keys = account.keys
        async with AsyncSmsClient(
            keys["Application-Key"], keys["Authorization"], url, retry=FAST
        ) as sms:
            return (await sms.send_sms(phone, "async once", sender="ACME")).ids

    with FlakyProxy(account.base, fail=2, mode="lost") as proxy:
        ids = asyncio.run(main(proxy.url))
    assert len(proxy.keys) == 3 and len(set(proxy.keys)) == 1
    assert len(ids) == 1 and _stored(stack, phone) == 1


@pytest.fixture
def producer(stack: Stack) -> Iterator[Any]:
    from dispatcher.config import Settings
    from dispatcher.enqueue import Producer

    p = Producer(Settings.from_env(stack.env))
    yield p
    p.close()


def test_in_process_producer_returns_ids_the_api_knows(
    stack: Stack, account: ApiClient, producer: Any
) -> None:
    engine = stack.db()
    with engine.connect() as conn:
        name = conn.execute(
            text("SELECT name FROM accounts WHERE id = :i"), {"i": account.account_id}
        ).scalar_one()
    engine.dispose()
    ids = producer.send_sms(
        name, sender="SHOP", message="Your code is 654321", phone_numbers=["+48111000007"]
    )
    bulk = producer.send_bulk(
        name, sender="SHOP", items=[("+48111000008", "Hi Ann"), ("+48111000009", "Hi Bob")]
    )
    assert len(ids) == 1 and len(bulk) == 2
    for message_id in [*ids, *bulk]:
        assert account.get(message_id)["id"] == message_id
    wait_until(lambda: account.status(bulk[1]) in ("sent", "delivered"), 30, what="sent")
