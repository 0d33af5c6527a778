"""The session holder against the Node SMSC with a real Redis: the priority lane's share of
the window is its own (an OTP goes out while bulk's window is full of unanswered submits),
and a holder's stop unbinds and gives its slots back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis

from dispatcher.routing.model import ConnectionConfig, SmppConfig
from tests.support.services import fresh_redis
from tests.support.smsc import ACCOUNT, Smsc, running_smsc
from workers.smpp import handoff as h
from workers.smpp.holder import ConnectionHolder, HolderOptions

pytestmark = [pytest.mark.integration, pytest.mark.any_db, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def smsc() -> Iterator[Smsc]:
    with running_smsc() as s:
        yield s


@pytest.fixture
def redis_url() -> Iterator[str]:
    with fresh_redis() as url:
        yield url


def connection(smsc: Smsc, window: int, reserve: int) -> ConnectionConfig:
    smpp = SmppConfig(
        host="127.0.0.1",
        port=smsc.port,
        system_id=ACCOUNT[0],
        password=ACCOUNT[1],
        window=window,
        priority_window=reserve,
    )
    return ConnectionConfig(
        name="op", type="smpp", url=smpp.address, tps=100, timeout_s=20, smpp=smpp
    )


async def request(redis: aioredis.Redis, lane: str, ref: str, reply: str) -> None:
    req = h.Request(
        key=ref,
        reply=reply,
        ref=ref,
        to="+48500100200",
        sender="Shop",
        text=f"message {ref}",
        flash=False,
        valid_until=None,
        by=time.time() + 30,
        lane=lane,
    )
    await redis.rpush(h.queue_key("op", lane), req.encode())


async def test_priority_is_never_behind_bulks_window(smsc: Smsc, redis_url: str) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    holder = ConnectionHolder(connection(smsc, window=4, reserve=1), redis, "t", None)
    holder.start()
    try:
        async with asyncio.timeout(20):
            while holder.binds_up < 1:
                await asyncio.sleep(0.05)
        # Bulk's share (3 of 4) fills with submits the SMSC never answers; a fourth waits.
        smsc.answer_submits(("silent", 3), default="ok")
        for i in range(4):
            await request(redis, "bulk", f"b{i}", "replies:bulk")
        async with asyncio.timeout(20):
            while smsc.state()["counters"]["silent"] < 3:
                await asyncio.sleep(0.05)
        assert await redis.llen(h.queue_key("op", "bulk")) == 1  # not taken: no bulk slot
        started = time.monotonic()
        await request(redis, "priority", "otp", "replies:priority")
        got = await redis.blpop(["replies:priority"], timeout=10)
        took = time.monotonic() - started
        assert got is not None, "the OTP waited behind bulk's window"
        reply = h.Reply.decode(got[1])
        assert reply.outcome == h.OK and reply.carrier_id
        assert took < 5  # answered while bulk's three are still outstanding
        assert smsc.state()["counters"]["silent"] == 3
        assert await redis.llen(h.queue_key("op", "bulk")) == 1
        assert await redis.get(h.mark_key("op", "otp")) == f"id:{reply.carrier_id}".encode()
        assert await redis.get(h.mark_key("op", "b0")) == h.WRITTEN.encode()
    finally:
        await holder.stop()
        await redis.aclose()


async def test_stop_unbinds_and_gives_the_slots_back(smsc: Smsc, redis_url: str) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    holder = ConnectionHolder(
        connection(smsc, window=2, reserve=1), redis, "t", None, HolderOptions(renew_s=0.2)
    )
    holder.start()
    async with asyncio.timeout(20):
        while holder.binds_up < 1:
            await asyncio.sleep(0.05)
    assert await redis.get("smpp:op:lease:0") == b"t"
    await holder.stop()
    assert smsc.pdus("unbind", "in")
    assert await redis.get("smpp:op:lease:0") is None
    assert h.binds_up(await redis.hgetall(h.up_key("op")), time.time()) == 0
    await redis.aclose()


async def test_transmitter_receiver_mode_sends_on_one_bind_and_receives_on_the_other(
    smsc: Smsc, redis_url: str
) -> None:
    from dataclasses import replace

    from workers.smpp import pdu as p

    redis = aioredis.Redis.from_url(redis_url)
    cfg = connection(smsc, window=4, reserve=1)
    assert cfg.smpp is not None
    cfg = replace(cfg, smpp=replace(cfg.smpp, bind_mode="transmitter_receiver", binds=2))
    got: list[p.DeliverSm] = []

    async def deliver(pdu: p.DeliverSm) -> int:
        got.append(pdu)
        return 0

    holder = ConnectionHolder(cfg, redis, "t", deliver)
    holder.start()
    try:
        async with asyncio.timeout(20):
            while holder.binds_up < 2:
                await asyncio.sleep(0.05)
        binds = [e["command"] for e in smsc.pdus(direction="in") if "bind" in e["command"]]
        assert sorted(binds) == ["bind_receiver", "bind_transmitter"]
        await request(redis, "bulk", "m1", "replies:t")
        reply = await redis.blpop(["replies:t"], timeout=10)
        assert reply is not None and h.Reply.decode(reply[1]).outcome == h.OK
        smsc.mo("48600100200", "4321", ["hello"], dest_addr_ton=3)
        async with asyncio.timeout(20):
            while not got:
                await asyncio.sleep(0.05)
        assert got[0].short_message == b"hello"
    finally:
        await holder.stop()
        await redis.aclose()
