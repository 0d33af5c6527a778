"""Celery task messages (protocol 2) as kombu's Redis transport stores them, built and read
without kombu: the one module that knows that wire format (the publisher, the exporter's queue
gauges and the scheduler's hand-back of unacknowledged tasks all go through it).

The API publishes one task per dispatch batch. ``Celery.send_task`` does far more Python work
per task than the message needs (producer pool, routing, a binding lookup round trip, stdlib
JSON twice) on the accept path, which is CPU-bound (docs/benchmarks.md, "Measurements behind code
choices"); here the bytes are built directly, and every task of a group commit goes to Redis in
one pipelined round trip. The workers consume these messages unchanged: they are what
``send_task(name, args=[payload], queue=q)`` writes with this project's configuration (JSON
serialiser, anonymous exchange, priority 0), which ``tests/unit/test_task_wire.py`` checks key
by key against a message published through Celery.
"""

from __future__ import annotations

import base64
import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from dispatcher.contract import HEADER_PUBLISHED_AT
from dispatcher.ids import uuid7_time

# What Celery's JSON serialiser declares; kombu's Redis transport base64-encodes the body.
CONTENT_TYPE = "application/json"
CONTENT_ENCODING = "utf-8"
# Celery appends this to every task body: no callbacks, errbacks, chain or chord.
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
# kombu's Redis transport: a queue's messages of priority n > 0 wait in "{queue}\x06\x16{n}";
# delivered, unacknowledged messages are kept in the ``unacked`` hash.
PRIORITY_SEP = "\x06\x16"
PRIORITY_LEVELS = range(1, 10)
MIN_PRIORITY, MAX_PRIORITY = 0, 9
UNACKED_KEY = "unacked"


def origin() -> str:
    """The producer name Celery puts in ``headers.origin`` (``gen<pid>@<host>``)."""
    return f"gen{os.getpid()}@{socket.gethostname()}"


def encode_task(
    name: str,
    payload: dict[str, Any],
    queue: str,
    *,
    argsrepr: str,
    headers: dict[str, Any] | None = None,
    producer: str | None = None,
    reply_to: str | None = None,
) -> bytes:
    """The bytes to ``LPUSH`` onto ``queue`` for task ``name`` called with ``args=[payload]``.

    ``argsrepr`` replaces Celery's ``saferepr`` of the arguments (message texts have no place in
    task metadata). ``headers`` are extra task headers (e.g. the publish time).
    """
    task_id = str(uuid.uuid4())
    body = orjson.dumps([[payload], {}, _EMBED])
    task_headers: dict[str, Any] = {
        "lang": "py",
        "task": name,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": argsrepr,
        "kwargsrepr": "{}",
        "origin": producer or origin(),
        "ignore_result": None,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    if headers:
        task_headers.update(headers)
    message = {
        "body": base64.b64encode(body).decode("ascii"),
        "content-encoding": CONTENT_ENCODING,
        "content-type": CONTENT_TYPE,
        "headers": task_headers,
        "properties": {
            "correlation_id": task_id,
            "reply_to": reply_to or str(uuid.uuid4()),
            "argsrepr": argsrepr,
            "kwargsrepr": "{}",
            "delivery_mode": 2,  # persistent
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return orjson.dumps(message)


def queue_keys(queue: str) -> list[str]:
    """The Redis lists holding a queue's waiting messages: the queue and its priority lists."""
    return [queue, *(f"{queue}{PRIORITY_SEP}{p}" for p in PRIORITY_LEVELS)]


@dataclass(frozen=True, slots=True)
class TaskMessage:
    """What a stored task message says: the task's name, its headers and its one argument."""

    name: str
    headers: dict[str, Any]
    arg: Any  # the payload (``args[0]``), ``None`` when the task has no positional argument


def decode_task(raw: bytes | str | None) -> TaskMessage | None:
    """Read a stored message (ours or Celery's); ``None`` when it is not a protocol 2 task."""
    if raw is None:
        return None
    try:
        msg = orjson.loads(raw)
        headers = msg.get("headers") or {}
        body: Any = msg.get("body")
        if (msg.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        decoded = orjson.loads(body)
    except (ValueError, TypeError, AttributeError):
        return None
    # Protocol 2 bodies are ``[args, kwargs, embed]``.
    if not (isinstance(decoded, list) and decoded and isinstance(decoded[0], list)):
        return None
    if not isinstance(headers, dict):
        return None
    args = decoded[0]
    return TaskMessage(str(headers.get("task", "")), headers, args[0] if args else None)


def published_at(raw: bytes | str | None) -> float | None:
    """When a stored message was published (unix seconds): the header every publisher of ours
    stamps, else the time in a chunk's batch id (a UUIDv7); ``None`` if it cannot tell."""
    task = decode_task(raw)
    if task is None:
        return None
    stamp = task.headers.get(HEADER_PUBLISHED_AT)
    if isinstance(stamp, int | float):
        return float(stamp)
    batch = task.arg.get("batch") if isinstance(task.arg, dict) else None
    return uuid7_time(batch) if isinstance(batch, str) else None


def priority_of(message: Mapping[str, Any]) -> int:
    """kombu's ``_get_message_priority``: ``properties.priority`` clamped to 0-9, else 0."""
    try:
        value = int(message["properties"]["priority"])
    except (TypeError, ValueError, KeyError):
        return MIN_PRIORITY
    return max(min(value, MAX_PRIORITY), MIN_PRIORITY)


def redelivered(message: Mapping[str, Any]) -> dict[str, Any]:
    """The message as kombu restores it (flagged ``redelivered``), under a new delivery tag."""
    out = dict(message)
    props = out["properties"] = dict(out["properties"])
    props["delivery_tag"] = str(uuid.uuid4())
    if isinstance(out.get("headers"), dict):
        out["headers"] = {**out["headers"], "redelivered": True}
    if isinstance(props.get("delivery_info"), dict):
        props["delivery_info"] = {**props["delivery_info"], "redelivered": True}
    return out
