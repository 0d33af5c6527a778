"""Publishing chunk tasks to the lanes, by task name (the producer never imports workers).

Celery is kept at this edge: the rest of the producer side hands :class:`Batch` objects here.
Publishing does not retry inside a request: a batch that fails to publish stays in the outbox
(``enqueued_at IS NULL``) and the scheduler publishes it later, so the API never has to wait for
Redis, and never answers 200 for a message that is not durably stored.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from celery import Celery
from kombu.exceptions import KombuError, OperationalError
from redis.exceptions import RedisError

from dispatcher.contract import (
    HEADER_PUBLISHED_AT,
    TASK_RECONCILE,
    TASK_SEND_CHUNK,
    Lane,
    chunk_payload,
    queue_name,
)
from dispatcher.store.records import Batch


class BrokerUnavailable(Exception):
    """Redis (the broker) could not take the task."""


class Broker:
    """A producer-only Celery app with a pooled connection."""

    def __init__(self, redis_url: str) -> None:
        self.app = Celery("smsdispatch-producer", set_as_current=False)
        self.app.config_from_object("celeryconfig")
        self.app.conf.broker_url = redis_url

    def _send(self, name: str, payload: dict[str, Any], queue: str) -> None:
        try:
            self.app.send_task(
                name,
                args=[payload],
                queue=queue,
                retry=False,
                headers={HEADER_PUBLISHED_AT: time.time()},
                # Celery would otherwise build a repr of the whole payload (message texts) for
                # its own bookkeeping: costly, and bodies have no business in task metadata.
                argsrepr=f"<{len(payload.get('messages') or payload.get('ids') or ())} items>",
                kwargsrepr="{}",
            )
        except (OperationalError, KombuError, RedisError, OSError) as exc:
            raise BrokerUnavailable(type(exc).__name__) from exc

    def publish(self, batches: Sequence[Batch]) -> tuple[list[str], BrokerUnavailable | None]:
        """Publish ``batches`` in order; the ids published, and the error that stopped it."""
        done: list[str] = []
        for b in batches:
            try:
                self._send(
                    TASK_SEND_CHUNK, chunk_payload(b.id, b.lane, b.payloads), queue_name(b.lane)
                )
            except BrokerUnavailable as exc:
                return done, exc
            done.append(b.id)
        return done, None

    def publish_task(self, name: str, payload: dict[str, Any], lane: Lane) -> None:
        """Publish one task by name on a lane's queue; raises :class:`BrokerUnavailable`."""
        self._send(name, payload, queue_name(lane))

    def publish_reconcile(self, ids: Sequence[str]) -> None:
        """Ask a bulk worker to resolve stale claims."""
        self._send(TASK_RECONCILE, {"ids": list(ids)}, queue_name(Lane.BULK))

    def queue_lengths(self) -> dict[str, int]:
        """Waiting tasks per lane (kombu keeps priority sub-lists beside the main list)."""
        with self.app.connection_for_write() as conn:
            client = conn.default_channel.client
            out: dict[str, int] = {}
            for lane in Lane:
                q = queue_name(lane)
                keys = [q, *(f"{q}\x06\x16{p}" for p in range(1, 10))]
                pipe = client.pipeline()
                for k in keys:
                    pipe.llen(k)
                out[str(lane)] = int(sum(pipe.execute()))
            return out

    def close(self) -> None:
        """Release pooled connections."""
        self.app.close()
