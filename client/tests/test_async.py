"""The asyncio client behaves as the blocking one: the same retries, errors and listings."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from fakeapi import OK, FakeLog, Script, async_client, refused
from smsdispatch_client import Page, SmsApiError, SmsTransportError


def test_send_retries_with_one_key_and_honours_retry_after(slept: list[float]) -> None:
    script = Script(
        httpx.Response(503, headers={"Retry-After": "2"}),
        httpx.ConnectError("refused"),
        httpx.Response(200, json=OK),
    )

    async def main() -> list[str]:
        async with async_client(script) as sms:
            return (await sms.send_sms(["+48111222333"], "hi", sender="ACME", priority=True)).ids

    assert asyncio.run(main()) == ["m1"]
    assert len({r.headers["Idempotency-Key"] for r in script.requests}) == 1
    assert slept[0] == 2.0 and len(slept) == 2
    assert json.loads(script.requests[0].content)["priority"] is True


def test_errors_are_the_same_tree(slept: list[float]) -> None:
    async def refused_send() -> None:
        async with async_client(Script(refused(400, "invalid_sender", "sender"))) as sms:
            await sms.send_sms("+48111222333", "hi", sender="?")

    with pytest.raises(SmsApiError) as caught:
        asyncio.run(refused_send())
    assert (caught.value.code, caught.value.parameter) == ("invalid_sender", "sender")

    async def unreachable() -> str:
        async with async_client(Script(*[httpx.ConnectTimeout("t")] * 2), attempts=2) as sms:
            return await sms.get_status("m1")

    with pytest.raises(SmsTransportError):
        asyncio.run(unreachable())
    assert len(slept) == 1


def test_listing_walk_and_statuses() -> None:
    log = FakeLog(12)

    async def main() -> tuple[list[str], Page, Page]:
        async with async_client(log) as sms:
            walked = [m.id async for m in sms.iter_messages(page_size=5, status="queued")]
            statuses = await sms.list_statuses(limit=2)
            past_the_end = await sms.list_messages(offset=50)
            return walked, statuses, past_the_end

    walked, statuses, past_the_end = asyncio.run(main())
    assert walked == [f"m{i:04d}" for i in reversed(range(12))]
    offsets = [r.url.params["offset"] for r in log.requests[:3]]
    assert offsets == ["0", "5", "10"] and log.requests[0].url.params["status"] == "queued"
    assert log.requests[3].url.path == "/v2.1/sms/statuses" and len(statuses.messages) == 2
    assert past_the_end.messages == [] and past_the_end.next_offset is None
