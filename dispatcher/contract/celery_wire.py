"""Celery task messages (protocol 2) as kombu's Redis transport stores them, built without kombu.

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
from typing import Any

import orjson

# What Celery's JSON serialiser declares; kombu's Redis transport base64-encodes the body.
CONTENT_TYPE = "application/json"
CONTENT_ENCODING = "utf-8"
# Celery appends this to every task body: no callbacks, errbacks, chain or chord.
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


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
