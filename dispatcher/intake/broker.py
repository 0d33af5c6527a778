"""Publishing chunk tasks to the lanes, by task name (the producer never imports workers).

The rest of the producer side hands :class:`Batch` objects here. Celery itself is not imported:
tasks are written straight to Redis as the Celery messages ``send_task`` would write
(:mod:`dispatcher.contract.celery_wire`), every task of a call in one pipelined round trip.
Publishing does not retry inside a request: a batch that fails to publish stays in the outbox
(``enqueued_at IS NULL``) and the scheduler publishes it later, so the API never has to wait for
Redis, and never answers 200 for a message that is not durably stored.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from dispatcher.contract import (
    HEADER_PUBLISHED_AT,
    TASK_RECONCILE,
    TASK_SEND_CHUNK,
    Chunk,
    Lane,
    queue_name,
)
from dispatcher.contract.celery_wire import encode_task, origin, queue_keys
from dispatcher.redis_clients import sync_client
from dispatcher.store.records import Batch


class BrokerUnavailable(Exception):
    """Redis (the broker) could not take the task."""


class Broker:
    """Publishes tasks by name onto the lanes' Redis lists; connections are opened lazily."""

    def __init__(self, redis_url: str) -> None:
        # No client-side retries: a failed publish leaves the batch in the outbox, and a request
        # must not wait through reconnect attempts.
        self.redis = sync_client(
            redis_url,
            socket_connect_timeout=2,
            socket_timeout=5,
            health_check_interval=10,
            retry=Retry(NoBackoff(), 0),
        )
        self._origin = origin()

    def _encode(self, name: str, payload: dict[str, Any], queue: str) -> bytes:
        items = payload.get("messages") or payload.get("ids") or ()
        return encode_task(
            name,
            payload,
            queue,
            argsrepr=f"<{len(items)} items>",
            headers={HEADER_PUBLISHED_AT: time.time()},
            producer=self._origin,
        )

    def _push(self, tasks: Sequence[tuple[str, bytes]]) -> None:
        """``LPUSH`` each (queue, message) in order, in one round trip."""
        try:
            if len(tasks) == 1:
                self.redis.lpush(*tasks[0])
                return
            pipe = self.redis.pipeline(transaction=False)
            for queue, message in tasks:
                pipe.lpush(queue, message)
            pipe.execute()
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(type(exc).__name__) from exc

    def publish(self, batches: Sequence[Batch]) -> tuple[list[str], BrokerUnavailable | None]:
        """Publish ``batches``; the ids published, and the error that stopped it.

        One pipeline: when it fails, none is reported published (some may have been: their
        batches stay unmarked and are published again, which the workers' claims make harmless).
        """
        if not batches:
            return [], None
        tasks = []
        for b in batches:
            queue = queue_name(b.lane)
            tasks.append(
                (
                    queue,
                    self._encode(
                        TASK_SEND_CHUNK, Chunk(b.id, Lane(b.lane), b.payloads).encode(), queue
                    ),
                )
            )
        try:
            self._push(tasks)
        except BrokerUnavailable as exc:
            return [], exc
        return [b.id for b in batches], None

    def publish_task(self, name: str, payload: dict[str, Any], lane: Lane) -> None:
        """Publish one task by name on a lane's queue; raises :class:`BrokerUnavailable`."""
        queue = queue_name(lane)
        self._push([(queue, self._encode(name, payload, queue))])

    def publish_reconcile(self, ids: Sequence[str]) -> None:
        """Ask a bulk worker to resolve stale claims."""
        self.publish_task(TASK_RECONCILE, {"ids": list(ids)}, Lane.BULK)

    def queue_lengths(self) -> dict[str, int]:
        """Waiting tasks per lane (kombu keeps priority sub-lists beside the main list)."""
        pipe = self.redis.pipeline(transaction=False)
        per_lane = len(queue_keys(""))
        for lane in Lane:
            for k in queue_keys(queue_name(lane)):
                pipe.llen(k)
        try:
            counts = pipe.execute()
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(type(exc).__name__) from exc
        return {
            str(lane): int(sum(counts[i * per_lane : (i + 1) * per_lane]))
            for i, lane in enumerate(Lane)
        }

    def close(self) -> None:
        """Release pooled connections."""
        self.redis.close()
