"""The chunk task's argument has one definition (:class:`dispatcher.contract.Chunk`): what the
producer encodes the worker decodes unchanged, and anything else is refused naming the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from dispatcher.contract import Chunk, Lane, MalformedTask, MessagePayload
from dispatcher.contract.celery_wire import decode_task, encode_task, published_at

MESSAGE: MessagePayload = {
    "id": "01a24f19-631d-7857-9474-03b07036672b",
    "account": 7,
    "to": "+48500100200",
    "sender": "ACME",
    "text": "Kod: 123456 – zażółć",
    "parts": 1,
    "flash": False,
    "valid_until": 1_800_000_000.0,
    "attempt": 0,
    "due_at": 1_799_999_000.0,
}
BATCH = "01a24f19-6290-79cb-83b8-6cebe5f06402"  # a UUIDv7: its time is the fallback clock


def test_what_the_producer_encodes_the_worker_decodes() -> None:
    chunk = Chunk(BATCH, Lane.PRIORITY, [MESSAGE])
    raw = encode_task("smsdispatch.send_chunk", chunk.encode(), "smsd.priority", argsrepr="<1>")
    task = decode_task(raw)
    assert task is not None and task.name == "smsdispatch.send_chunk"
    assert Chunk.decode(task.arg) == chunk
    assert Chunk.decode(task.arg).lane is Lane.PRIORITY


def test_the_publish_time_comes_from_the_header_else_the_batch_id() -> None:
    arg = Chunk(BATCH, Lane.BULK, []).encode()
    stamped = encode_task("t", arg, "q", argsrepr="", headers={"smsd_published_at": 123.5})
    assert published_at(stamped) == 123.5
    unstamped = encode_task("t", arg, "q", argsrepr="")
    assert published_at(unstamped) == 1796623393.424
    assert published_at(b"not json") is None


def _with(path: str, value: Any) -> dict[str, Any]:
    arg = Chunk(BATCH, Lane.BULK, [MESSAGE]).encode()
    arg = copy.deepcopy(arg)
    target: Any = arg
    *parents, last = path.split(".")
    for p in parents:
        target = target[int(p)] if p.isdigit() else target[p]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return arg


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("batch", KeyError, "batch"),
        ("lane", "express", "lane"),
        ("messages", {"id": "x"}, "messages"),
        ("messages.0.to", KeyError, "messages[0].to"),
        ("messages.0.parts", "1", "messages[0].parts"),
        ("messages.0.attempt", True, "messages[0].attempt"),
        ("messages.0.valid_until", None, "messages[0].valid_until"),
    ],
)
def test_a_malformed_argument_is_refused_naming_the_field(
    path: str, value: Any, field: str
) -> None:
    with pytest.raises(MalformedTask) as refused:
        Chunk.decode(_with(path, value))
    assert refused.value.field == field


def test_an_argument_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(MalformedTask) as refused:
        Chunk.decode([BATCH, "bulk", []])
    assert refused.value.field == "payload"
