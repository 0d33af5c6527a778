"""The Python library against a real stack: HTTP client (sync and async), retries with one
Idempotency-Key through a real flaky HTTP server, errors, listings and their filters and pages,
and the in-process producer."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from smsdispatch_client import (
    AsyncSmsClient,
    RetryPolicy,
    SmsApiError,
    SmsClient,
    SmsTransportError,
)
from sqlalchemy import text

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


@pytest.fixture(scope="module")
def listed(stack: Stack) -> tuple[ApiClient, list[str], datetime, datetime]:
    """A fresh account with 25 messages (one with an externalId), and times around the sends."""
    lister = stack.account()
    before = datetime.now(UTC) - timedelta(seconds=1)
    with _client(lister) as sms:
        ids = sms.send_bulk([f"+4811130{i:04d}" for i in range(24)], "Listed", sender="LIST").ids
        ids += sms.send_sms("+48111309999", "Order", sender="SHOP", external_id="ord-1").ids
    return lister, ids, before, datetime.now(UTC) + timedelta(seconds=1)


def test_list_pages_newest_first_and_iterates_every_page(
    listed: tuple[ApiClient, list[str], datetime, datetime],
) -> None:
    lister, ids, _, _ = listed
    with _client(lister) as sms:
        page = sms.list_messages(limit=10)
        walked = list(sms.iter_messages(page_size=7))
        oldest_first = [m.id for m in sms.iter_messages(page_size=7, descending=False)]
    assert (page.total, page.offset, page.next_offset, len(page.messages)) == (25, 0, 10, 10)
    assert page.messages[0].id == ids[-1], "the newest first"
    created = [m.created_at for m in walked]
    assert None not in created and created == sorted(created, reverse=True)  # type: ignore[type-var]
    assert [m.id for m in walked] == oldest_first[::-1] and sorted(oldest_first) == sorted(ids)


def test_list_filters_reach_the_api(
    listed: tuple[ApiClient, list[str], datetime, datetime],
) -> None:
    lister, ids, before, after = listed
    with _client(lister) as sms:
        two = sms.list_messages(phone_number=["+48111300003", "+48 111 300 004"])
        shop = sms.list_messages(sender="SHOP")
        order = sms.list_statuses(external_id="ord-1")
        in_window = sms.list_messages(date_from=before, date_to=after, sender=["LIST", "SHOP"])
        later = sms.list_messages(date_from=after)
        by_code = sms.list_messages(status=[1, 2, 3, 9, 21, 22, 23, 24])
        with pytest.raises(SmsApiError) as bad:
            sms.list_messages(status="lost")
    assert {m.phone_number for m in two.messages} == {"+48111300003", "+48111300004"}
    assert [m.id for m in shop.messages] == [ids[-1]] and shop.messages[0].external_id == "ord-1"
    assert [m.id for m in order.messages] == [ids[-1]]
    assert in_window.total == 25
    assert later.messages == [] and later.total == 0, "nothing matching: an empty page"
    assert by_code.total == 25
    assert (bad.value.status, bad.value.code, bad.value.parameter) == (
        400,
        "invalid_query",
        "status",
    )


def test_async_listing_matches_the_blocking_one(
    listed: tuple[ApiClient, list[str], datetime, datetime],
) -> None:
    lister, ids, _, _ = listed

    async def main() -> list[str]:
        keys = lister.keys
        async with AsyncSmsClient(
            keys["Application-Key"], keys["Authorization"], lister.base, retry=FAST
        ) as sms:
            return [m.id async for m in sms.iter_messages(page_size=10, sender="LIST")]

    assert sorted(asyncio.run(main())) == sorted(ids[:-1])


@pytest.fixture
def producer(stack: Stack) -> Iterator[Any]:
    from dispatcher.config import Settings
    from dispatcher.intake.enqueue import Producer

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
