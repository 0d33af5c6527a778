"""Tasks written straight to Redis are the messages Celery's ``send_task`` would write.

Real Redis (a leased logical database): the reference message is published through Celery and
kombu with the project's configuration, ours through :class:`dispatcher.intake.broker.Broker`; they
must agree key by key (ids, tags and times aside), and kombu must consume ours unchanged.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu import Connection

from dispatcher.contract import (
    HEADER_PUBLISHED_AT,
    TASK_SEND_CHUNK,
    Chunk,
    Lane,
    queue_name,
)
from dispatcher.intake.broker import Broker, BrokerUnavailable
from dispatcher.store.records import Batch
from tests.support.celery_reference import reference_app
from tests.support.services import fresh_redis

# Values that differ between any two publications (fresh uuids, the clock, the process).
VOLATILE = {
    "id",
    "root_id",
    "correlation_id",
    "delivery_tag",
    "reply_to",
    "origin",
    HEADER_PUBLISHED_AT,
}
MESSAGES: list[dict[str, Any]] = [
    {"id": "m1", "to": "+48500100200", "text": "Kod: 123456 – zażółć", "valid_until": 1.5}
]


@pytest.fixture()
def redis_url() -> Iterator[str]:
    with fresh_redis() as url:
        yield url


def _shape(value: Any) -> Any:
    """``value`` with volatile fields blanked and the body decoded."""
    if isinstance(value, dict):
        out = {k: ("*" if k in VOLATILE else _shape(v)) for k, v in value.items()}
        if "body" in out and isinstance(value.get("body"), str):
            out["body"] = json.loads(base64.b64decode(value["body"]))
        return out
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return value


def _only(client: redis.Redis, key: str) -> dict[str, Any]:
    raw = client.lrange(key, 0, -1)
    assert len(raw) == 1
    return json.loads(raw[0])


def test_direct_publish_matches_celery_send_task(redis_url: str) -> None:
    broker = Broker(redis_url)
    celery = reference_app(redis_url)
    client = redis.Redis.from_url(redis_url)
    queue = queue_name(Lane.PRIORITY)
    try:
        celery.send_task(
            TASK_SEND_CHUNK,
            args=[Chunk("b1", Lane.PRIORITY, MESSAGES).encode()],
            queue=queue,
            retry=False,
            headers={HEADER_PUBLISHED_AT: time.time()},
            argsrepr="<1 items>",
            kwargsrepr="{}",
        )
        reference = _only(client, queue)
        client.delete(queue)
        done, error = broker.publish([Batch("b1", Lane.PRIORITY, MESSAGES)])
        assert (done, error) == (["b1"], None)
        ours = _only(client, queue)
    finally:
        broker.close()
        celery.close()
        client.close()
    assert _shape(ours) == _shape(reference)
    assert (
        ours["headers"]["id"] == ours["headers"]["root_id"] == ours["properties"]["correlation_id"]
    )
    assert isinstance(ours["headers"][HEADER_PUBLISHED_AT], float)


def test_kombu_consumes_direct_messages(redis_url: str) -> None:
    broker = Broker(redis_url)
    queue = queue_name(Lane.BULK)
    try:
        broker.publish_task("smsd.example", {"ids": ["a", "b"]}, Lane.BULK)
        with Connection(redis_url) as conn, conn.SimpleQueue(queue) as q:
            message = q.get(timeout=5)
            args, kwargs, embed = message.decode()
            message.ack()
    finally:
        broker.close()
    assert args == [{"ids": ["a", "b"]}] and kwargs == {}
    assert embed == {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    assert message.headers["task"] == "smsd.example"
    assert message.headers["argsrepr"] == "<2 items>"


def test_publish_keeps_batch_order_in_one_round_trip(redis_url: str) -> None:
    broker = Broker(redis_url)
    client = redis.Redis.from_url(redis_url)
    try:
        batches = [Batch(f"b{i}", Lane.BULK, [{"id": f"m{i}"}]) for i in range(5)]
        done, error = broker.publish(batches)
        raw = client.lrange(queue_name(Lane.BULK), 0, -1)
    finally:
        broker.close()
        client.close()
    assert error is None and done == [b.id for b in batches]
    # LPUSH + the worker's BRPOP: the first published is the first consumed (last in the list).
    bodies = [json.loads(base64.b64decode(json.loads(r)["body"]))[0][0] for r in reversed(raw)]
    assert [b["batch"] for b in bodies] == done


def test_unreachable_redis_publishes_nothing() -> None:
    broker = Broker("redis://127.0.0.1:1/0")  # nothing listens on port 1
    try:
        done, error = broker.publish([Batch("b1", Lane.BULK, [{"id": "m1"}])])
        assert done == [] and isinstance(error, BrokerUnavailable)
        with pytest.raises(BrokerUnavailable):
            broker.publish_task("smsd.example", {"ids": []}, Lane.BULK)
        with pytest.raises(BrokerUnavailable):
            broker.queue_lengths()
    finally:
        broker.close()
