"""The scheduler hands back dlr/webhooks tasks a killed worker left in kombu's ``unacked`` hash,
as kombu's own restore would, and never touches the send lanes'
(dispatcher/scheduler/unacked.py)."""

from __future__ import annotations

import json
from typing import Any, cast
from unittest import mock

import fakeredis
import pytest
from kombu import Connection
from kombu.transport import redis as kombu_redis

from dispatcher.config import Settings
from dispatcher.contract import (
    REDELIVERABLE_LANES,
    TASK_APPLY_INBOUND,
    TASK_APPLY_REPORTS,
    TASK_DELIVER_WEBHOOKS,
    TASK_SEND_CHUNK,
    Lane,
    queue_name,
)
from dispatcher.contract.celery_wire import encode_task
from dispatcher.scheduler.loop import Scheduler
from dispatcher.scheduler.unacked import UnackedKeys, broker_keys, restore_stale

KEYS = UnackedKeys.from_options({})
DLR, WEBHOOKS = queue_name(Lane.DLR), queue_name(Lane.WEBHOOKS)
BULK, PRIORITY = queue_name(Lane.BULK), queue_name(Lane.PRIORITY)
OURS = {queue_name(lane) for lane in REDELIVERABLE_LANES}
NOW = 10_000.0


def _message(task: str, queue: str, priority: int = 0) -> dict[str, Any]:
    """A task as the API publishes it (and a worker reads it back from the list)."""
    message: dict[str, Any] = json.loads(encode_task(task, {"ids": [1]}, queue, argsrepr=""))
    message["properties"]["priority"] = priority
    return message


def _deliver(client: Any, tag: str, message: dict[str, Any], at: float, exchange: str = "") -> None:
    """What kombu's ``QoS.append`` writes when a worker takes the task."""
    routing_key = message["properties"]["delivery_info"]["routing_key"]
    client.zadd(KEYS.index, {tag: at})
    client.hset(KEYS.unacked, tag, json.dumps([message, exchange, routing_key]))


def _held(client: Any) -> tuple[set[bytes], set[bytes]]:
    return set(client.hkeys(KEYS.unacked)), set(client.zrange(KEYS.index, 0, -1))


def test_an_old_report_task_goes_back_to_the_dlr_queue_and_leaves_both_structures() -> None:
    client = fakeredis.FakeRedis()
    message = _message(TASK_APPLY_REPORTS, DLR)
    _deliver(client, "t-old", message, at=NOW - 301)
    result = restore_stale(client, KEYS, OURS, NOW - 300)
    assert result.restored == {DLR: 1} and result.total == 1 and not result.skipped
    assert _held(client) == (set(), set())
    [raw] = client.lrange(DLR, 0, -1)
    back = json.loads(raw)
    assert back["body"] == message["body"] and back["headers"]["task"] == TASK_APPLY_REPORTS
    assert back["headers"]["redelivered"] is True
    assert back["properties"]["delivery_info"]["redelivered"] is True
    # A new tag: a late ack of the old delivery cannot delete the new one's entry.
    assert back["properties"]["delivery_tag"] != message["properties"]["delivery_tag"]


def test_inbound_and_webhook_tasks_are_restored_too() -> None:
    client = fakeredis.FakeRedis()
    _deliver(client, "t-in", _message(TASK_APPLY_INBOUND, DLR), at=1.0)
    _deliver(client, "t-hook", _message(TASK_DELIVER_WEBHOOKS, WEBHOOKS), at=2.0)
    assert restore_stale(client, KEYS, OURS, NOW).restored == {DLR: 1, WEBHOOKS: 1}
    assert client.llen(DLR) == 1 and client.llen(WEBHOOKS) == 1
    assert _held(client) == (set(), set())


def test_restored_tasks_are_taken_next_oldest_first() -> None:
    """Pushed on the consuming (right) end, as kombu's restore does: ahead of new work."""
    client = fakeredis.FakeRedis()
    client.lpush(DLR, b"waiting")
    for tag, at in (("t-older", 1.0), ("t-old", 2.0)):
        message = _message(TASK_APPLY_REPORTS, DLR)
        message["headers"]["argsrepr"] = tag
        _deliver(client, tag, message, at=at)
    restore_stale(client, KEYS, OURS, NOW)
    order = [cast(bytes, client.rpop(DLR)) for _ in range(3)]  # BRPOP order
    assert [json.loads(m)["headers"]["argsrepr"] for m in order[:2]] == ["t-older", "t-old"]
    assert order[2] == b"waiting"


def test_a_fresh_entry_is_left_alone() -> None:
    client = fakeredis.FakeRedis()
    _deliver(client, "t-new", _message(TASK_APPLY_REPORTS, DLR), at=NOW - 10)
    result = restore_stale(client, KEYS, OURS, NOW - 300)
    assert result.total == 0 and not result.skipped
    assert _held(client) == ({b"t-new"}, {b"t-new"}) and client.llen(DLR) == 0


@pytest.mark.parametrize("queue", [BULK, PRIORITY])
def test_send_lane_entries_are_never_touched_however_old(queue: str) -> None:
    client = fakeredis.FakeRedis()
    _deliver(client, "t-chunk", _message(TASK_SEND_CHUNK, queue), at=0.0)
    _deliver(client, "t-dlr", _message(TASK_APPLY_REPORTS, DLR), at=0.0)
    before = client.hget(KEYS.unacked, "t-chunk")
    result = restore_stale(client, KEYS, OURS, NOW)
    assert result.restored == {DLR: 1} and result.skipped == {"t-chunk"}
    assert _held(client) == ({b"t-chunk"}, {b"t-chunk"})
    assert client.hget(KEYS.unacked, "t-chunk") == before
    assert client.llen(queue) == 0


def test_nothing_is_done_while_someone_else_holds_kombus_mutex() -> None:
    client = fakeredis.FakeRedis()
    _deliver(client, "t-old", _message(TASK_APPLY_REPORTS, DLR), at=0.0)
    worker = client.lock(KEYS.mutex, timeout=KEYS.mutex_expire)  # a worker's restore_visible
    assert worker.acquire(blocking=False)
    result = restore_stale(client, KEYS, OURS, NOW)
    assert result.mutex_held and result.total == 0
    assert _held(client) == ({b"t-old"}, {b"t-old"}) and client.llen(DLR) == 0
    worker.release()
    assert restore_stale(client, KEYS, OURS, NOW).total == 1
    assert not client.exists(KEYS.mutex), "the mutex must be released after a sweep"


@pytest.mark.parametrize(
    "value",
    [b"{not json", b'{"a": 1}', b'[1, "", "smsd.dlr"]', b'[{"body": "x"}, "", "smsd.dlr"]'],
)
def test_a_malformed_entry_is_skipped_without_stopping_the_sweep(value: bytes) -> None:
    client = fakeredis.FakeRedis()
    client.zadd(KEYS.index, {"t-bad": 0.0})
    client.hset(KEYS.unacked, "t-bad", value)
    _deliver(client, "t-good", _message(TASK_APPLY_REPORTS, DLR), at=0.0)
    result = restore_stale(client, KEYS, OURS, NOW)
    assert result.restored == {DLR: 1} and result.malformed == 1 and result.skipped == {"t-bad"}
    assert client.hget(KEYS.unacked, "t-bad") == value  # left for kombu, as found
    # Passed back as ``skip``, it is not read (nor logged) again.
    again = restore_stale(client, KEYS, OURS, NOW, result.skipped)
    assert again.malformed == 0 and again.skipped == {"t-bad"}


def test_an_index_entry_without_its_task_does_not_crash() -> None:
    client = fakeredis.FakeRedis()
    client.zadd(KEYS.index, {"t-gone": 0.0})  # acknowledged between the scan and the read
    assert restore_stale(client, KEYS, OURS, NOW).total == 0


def test_a_named_exchange_is_routed_through_its_bindings() -> None:
    client = fakeredis.FakeRedis()
    sep = KEYS.sep
    client.sadd(KEYS.binding_prefix % DLR, f"{DLR}{sep}{sep}{DLR}")
    client.sadd(KEYS.binding_prefix % BULK, f"{BULK}{sep}{sep}{BULK}")
    _deliver(client, "t-dlr", _message(TASK_APPLY_REPORTS, DLR), at=0.0, exchange=DLR)
    _deliver(client, "t-bulk", _message(TASK_SEND_CHUNK, BULK), at=0.0, exchange=BULK)
    _deliver(client, "t-nowhere", _message(TASK_APPLY_REPORTS, DLR), at=0.0, exchange="gone")
    result = restore_stale(client, KEYS, OURS, NOW)
    assert result.restored == {DLR: 1} and result.skipped == {"t-bulk", "t-nowhere"}


@pytest.mark.parametrize("priority", [0, 2, 3, 5, 9, 12])
def test_same_list_and_message_as_kombus_own_restore(priority: int) -> None:
    """kombu's ``QoS.restore_by_tag`` (what ``restore_visible`` runs) on the same entry is the
    reference: the same list key (priority sub-lists) and the same message, bar the tag."""
    server = fakeredis.FakeServer()
    ours, theirs = fakeredis.FakeRedis(server=server, db=1), fakeredis.FakeRedis(server=server)
    message = _message(TASK_APPLY_REPORTS, DLR, priority)
    _deliver(ours, "t", message, at=0.0)
    _deliver(theirs, "t", message, at=0.0)
    restore_stale(ours, KEYS, OURS, NOW)
    with mock.patch.object(
        kombu_redis.Channel, "_create_client", lambda *_a, **_k: fakeredis.FakeRedis(server=server)
    ):
        conn = Connection("redis://127.0.0.1:1/0")
        conn.default_channel.qos.restore_by_tag("t", theirs)
        conn.release()
    assert set(ours.keys()) == set(theirs.keys())
    [key] = ours.keys(DLR + "*")
    [mine], [kombus] = ours.lrange(key, 0, -1), theirs.lrange(key, 0, -1)
    mine_d, kombus_d = json.loads(mine), json.loads(kombus)
    del mine_d["properties"]["delivery_tag"], kombus_d["properties"]["delivery_tag"]
    assert mine_d == kombus_d


def test_key_names_come_from_the_transport_options() -> None:
    keys = UnackedKeys.from_options(
        {"unacked_key": "u", "unacked_index_key": "ui", "global_keyprefix": "p:"}
    )
    assert (keys.unacked, keys.index, keys.mutex) == ("p:u", "p:ui", "p:unacked_mutex")
    assert keys.queue_key(DLR, 0) == "p:" + DLR and keys.queue_key(DLR, 7) == f"p:{DLR}\x06\x166"
    assert broker_keys() == KEYS  # celeryconfig sets none of them: kombu's defaults


def _scheduler(**settings: Any) -> tuple[Scheduler, Any]:
    client = fakeredis.FakeRedis()
    return Scheduler(Settings(**settings), None, None, client), client  # type: ignore[arg-type]


def test_the_scheduler_counts_what_it_restored_and_reads_other_lanes_once() -> None:
    sched, client = _scheduler(unacked_restore_s=120)
    _deliver(client, "t-dlr", _message(TASK_APPLY_REPORTS, DLR), at=NOW - 121)
    _deliver(client, "t-chunk", _message(TASK_SEND_CHUNK, BULK), at=NOW - 121)
    assert sched._restore_unacked(NOW) == 1
    assert client.llen(DLR) == 1 and sched._unacked_skip == {"t-chunk"}
    with mock.patch("dispatcher.scheduler.unacked._restore_one") as read:
        assert sched._restore_unacked(NOW) == 0
    read.assert_not_called()
    client.hdel(KEYS.unacked, "t-chunk")  # acknowledged at last: forgotten
    client.zrem(KEYS.index, "t-chunk")
    sched._restore_unacked(NOW)
    assert sched._unacked_skip == set()


def test_zero_turns_the_restore_off() -> None:
    sched, client = _scheduler(unacked_restore_s=0)
    _deliver(client, "t-dlr", _message(TASK_APPLY_REPORTS, DLR), at=0.0)
    assert sched._restore_unacked(NOW) == 0 and client.llen(DLR) == 0
