"""The Redis logic of the SMPP hand-off (fakeredis, with Lua): bind leases never give more
slots than allowed over holders, look-ups read the holder's marks without guessing, and
deliver_sm is committed before it is answered."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import fakeredis
import pytest

from workers.connectors.smpp import SmppConnector
from workers.smpp import handoff as h
from workers.smpp import pdu as p
from workers.smpp.constants import ESM_RECEIPT, ESME_ROK, ESME_RX_P_APPN, Tag
from workers.smpp.deliveries import Deliveries
from workers.smpp.leases import BindLeases

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def redis() -> Any:
    return fakeredis.FakeAsyncRedis()


async def test_two_holders_never_hold_more_slots_than_allowed(redis: Any) -> None:
    a = BindLeases(redis, "op", 3, "holder-a", ttl_s=10)
    b = BindLeases(redis, "op", 3, "holder-b", ttl_s=10)
    got_a = await a.acquire(3, [])
    got_b = await b.acquire(3, [])
    assert sorted(got_a) == [0, 1, 2] and got_b == []
    # a gives one back: b takes exactly that one.
    await a.release([1])
    assert await b.acquire(3, got_b) == [1]
    assert await a.renew([0, 2]) == {0, 2}
    assert await b.renew([1]) == {1}
    # b renewing a slot it does not own keeps nothing; releasing it frees nothing.
    assert await b.renew([0]) == set()
    await b.release([0])
    assert await a.renew([0]) == {0}


async def test_a_lost_lease_is_reported_by_renew(redis: Any) -> None:
    a = BindLeases(redis, "op", 1, "holder-a", ttl_s=10)
    assert await a.acquire(1, []) == [0]
    await redis.delete("smpp:op:lease:0")  # expired while the holder stalled …
    b = BindLeases(redis, "op", 1, "holder-b", ttl_s=10)
    assert await b.acquire(1, []) == [0]  # … and another holder took it
    assert await a.renew([0]) == set()  # the stalled holder learns it must close that bind


async def test_a_want_below_the_count_leaves_slots_for_others(redis: Any) -> None:
    a = BindLeases(redis, "op", 4, "holder-a", ttl_s=10)
    b = BindLeases(redis, "op", 4, "holder-b", ttl_s=10)
    assert len(await a.acquire(2, [])) == 2
    assert len(await b.acquire(4, [])) == 2


async def test_binds_up_ignores_dead_holders() -> None:
    now = time.time()
    entries = {b"h1": f"2:{now + 5}".encode(), b"h2": f"1:{now - 1}".encode(), b"h3": b"junk"}
    assert h.binds_up(entries, now) == 2


async def test_lookup_reads_marks_and_never_guesses(redis: Any) -> None:
    c = SmppConnector("op", redis, timeout_s=1)
    await redis.set(h.mark_key("op", "m1"), "id:0000abcd")
    await redis.set(h.mark_key("op", "m2"), h.NOT_SENT)
    assert await c.lookup(["m1", "m2", "m3"]) == {"m1": "0000abcd"}  # m2, m3: not sent
    await redis.set(h.mark_key("op", "m4"), h.WRITTEN)
    assert await c.lookup(["m1", "m4"]) is None  # written, unanswered: cannot tell


async def test_no_bind_up_is_refused_before_queueing_naming_the_bind_refusal(redis: Any) -> None:
    from workers.connectors.base import Outbound

    c = SmppConnector("op", redis, timeout_s=1)
    await redis.set(h.bind_error_key("op"), "ESME_RINVPASWD")
    r = await c.submit(Outbound("m1", "+48500100200", "Shop", "hi", 1))
    assert not r.ok and r.error is not None
    assert r.error.code == "smpp_bind_failed" and "ESME_RINVPASWD" in r.error.description
    assert r.error.retryable and not r.error.ambiguous
    assert await redis.llen(h.queue_key("op", "bulk")) == 0


async def test_an_untaken_request_is_taken_back_and_not_sent(redis: Any) -> None:
    from workers.connectors.base import Outbound

    c = SmppConnector("op", redis, timeout_s=0.1, queue_wait_s=0.1)
    await redis.hset(h.up_key("op"), "h1", f"1:{time.time() + 60}")
    r = await c.submit(Outbound("m1", "+48500100200", "Shop", "hi", 1, lane="priority"))
    assert r.error is not None and r.error.code == "smpp_queue_timeout"
    assert not r.error.spends_attempt and not r.error.ambiguous
    assert await redis.llen(h.queue_key("op", "priority")) == 0
    await c.close()


async def test_a_reply_comes_back_to_its_submit(redis: Any) -> None:
    from workers.connectors.base import Outbound

    c = SmppConnector("op", redis, timeout_s=2, queue_wait_s=2)
    await redis.hset(h.up_key("op"), "h1", f"1:{time.time() + 60}")

    async def holder() -> None:
        while not (raw := await redis.lpop(h.queue_key("op", "bulk"))):
            await asyncio.sleep(0.01)
        req = h.Request.decode(raw)
        assert (req.ref, req.to, req.lane) == ("m1", "+48500100200", "bulk")
        await redis.rpush(req.reply, h.Reply(req.key, h.OK, carrier_id="00ff").encode())

    task = asyncio.ensure_future(holder())
    r = await c.submit(Outbound("m1", "+48500100200", "Shop", "hi", 1))
    await task
    assert r.ok and r.carrier_id == "00ff"
    await c.close()


def receipt(message_id: str, stat: str) -> p.DeliverSm:
    text = f"id:{message_id} sub:001 dlvrd:000 submit date:2612070000 done date:2612070001 "
    text += f"stat:{stat} err:000 text:"
    return p.DeliverSm(
        esm_class=ESM_RECEIPT,
        short_message=text.encode(),
        tlvs={Tag.RECEIPTED_MESSAGE_ID: message_id.encode() + b"\0"},
    )


class Store:
    def __init__(self, fail: bool = False) -> None:
        self.rows: list[tuple[str, str, list[dict[str, Any]]]] = []
        self.fail = fail

    def __call__(self, kind: str, connection: str, items: list[dict[str, Any]]) -> None:
        time.sleep(0.05)  # a commit takes a while: deliveries arriving meanwhile batch up
        if self.fail:
            raise RuntimeError("database down")
        self.rows.append((kind, connection, list(items)))


async def no_parts(_ids: list[str]) -> dict[str, str]:
    return {}


async def test_answered_only_after_the_commit_and_batched() -> None:
    store = Store()
    d = Deliveries("op", store, no_parts)
    statuses = await asyncio.gather(*(d.handle(receipt(f"{i:08x}", "DELIVRD")) for i in range(5)))
    assert statuses == [ESME_ROK] * 5
    items = [i for _, _, rows in store.rows for i in rows]
    assert sorted(i["id"] for i in items) == [f"{i:08x}" for i in range(5)]
    assert {i["stat"] for i in items} == {"DELIVRD"}
    assert len(store.rows) <= 2  # the ones arriving during a commit share the next


async def test_a_failed_commit_is_not_answered_ok() -> None:
    d = Deliveries("op", Store(fail=True), no_parts)
    with pytest.raises(RuntimeError):  # the session answers ESME_RX_T_APPN: delivered again
        await d.handle(receipt("000000aa", "DELIVRD"))


async def test_receipts_of_other_parts_map_to_the_first_part() -> None:
    store = Store()

    async def parts(message_ids: list[str]) -> dict[str, str]:
        return {i: "00000001" for i in message_ids if i in ("00000002", "00000003")}

    d = Deliveries("op", store, parts)
    assert await d.handle(receipt("00000002", "DELIVRD")) == ESME_ROK  # told by part 1's
    assert await d.handle(receipt("00000003", "UNDELIV")) == ESME_ROK
    items = [i for _, _, rows in store.rows for i in rows]
    assert items == [{"id": "00000001", "stat": "UNDELIV", "err": None, "done_at": 1796601660.0}]


async def test_mo_goes_to_the_inbound_kind_and_garbage_is_refused_for_good() -> None:
    store = Store()
    d = Deliveries("op", store, no_parts)
    mo = p.DeliverSm(
        source_addr_ton=1,
        source_addr="48600100200",
        dest_addr_ton=3,
        destination_addr="4321",
        short_message=b"STOP",
    )
    assert await d.handle(mo) == ESME_ROK
    ((kind, conn, (item,)),) = store.rows
    assert (kind, conn, item["from"], item["to"], item["text"]) == (
        "inbound",
        "op",
        "+48600100200",
        "4321",
        "STOP",
    )
    bad = p.DeliverSm(esm_class=ESM_RECEIPT, short_message=b"stat:WHATEVER")
    assert await d.handle(bad) == ESME_RX_P_APPN


async def test_the_limiter_grants_the_share_the_holder_set(redis: Any) -> None:
    from dispatcher.ratelimit import Rate
    from workers.sending.tokens import SmppTokens

    seen: list[float] = []

    class Limiter:
        async def wait_for(self, _c: str, rate: Rate, costs: Any, _w: float) -> int:
            seen.append(rate.per_second)
            return len(costs)

    tokens = SmppTokens(Limiter(), "op", Rate(100.0), redis)  # type: ignore[arg-type]
    await tokens.wait_for([1], 1.0)
    await redis.set(h.rate_key("op"), "0.25")
    tokens._read_at = 0.0  # the next call reads the share again
    await tokens.wait_for([1], 1.0)
    await redis.delete(h.rate_key("op"))
    tokens._read_at = 0.0
    await tokens.wait_for([1], 1.0)
    assert seen == [100.0, 25.0, 100.0]
