"""Handing back tasks that a killed worker left unacknowledged, on lanes where a repeat is harmless.

kombu's Redis transport emulates acknowledgements: a task delivered to a worker is copied into the
``unacked`` hash (field: its delivery tag; value: JSON ``[message, exchange, routing_key]``) and
its delivery time into the ``unacked_index`` sorted set; the ack deletes both. A worker that dies
without restoring (its whole pool SIGKILLed, or a child killed while Redis was restarting) leaves
the entry behind, and kombu puts it back only after the visibility timeout
(``QoS.restore_visible``): an hour here, because a chunk task must never be redelivered while it
may still be running. For a delivery report that means a webhook an hour late.

:func:`restore_stale` does what ``restore_visible`` does, earlier, and only for the queues of
:data:`dispatcher.contract.REDELIVERABLE_LANES`: under kombu's ``unacked_mutex`` (so it never
races a worker's own sweep), entries older than a threshold are moved back onto their queue in one
``WATCH``/``MULTI`` transaction each (removed from the hash and the index, pushed on the right of
the list for the message's priority, so they are taken next), with kombu's key names from the
transport options. Entries of any other queue (the send lanes: their claims and the orphan audit
recover them from the log) and entries this module cannot read are never touched.

One deliberate difference from kombu: the restored message gets a new delivery tag. kombu keeps
the old one, so a worker that was only slow and acknowledges late would delete the *new*
delivery's entry, and a crash of the new worker would then lose the task; kombu's hour makes that
unlikely, a threshold of minutes less so.
"""

from __future__ import annotations

import json
from bisect import bisect
from collections.abc import Collection, Mapping, Set
from dataclasses import dataclass, field
from typing import Any, cast

import redis
import structlog
from kombu.transport.redis import Channel, Mutex, MutexHeld

from dispatcher.contract.celery_wire import priority_of, redelivered

log = structlog.get_logger(component="unacked")

# A transaction that keeps losing its WATCH (workers acknowledging other tasks in the same hash)
# is left for the next sweep rather than retried without end.
MAX_WATCH_RETRIES = 10
# Stale entries read per sweep: the oldest first. Dead workers leave a handful; this only bounds
# a pathological backlog.
SCAN_LIMIT = 1000


@dataclass(frozen=True)
class UnackedKeys:
    """kombu's key names and queue-key layout for one broker (see :meth:`from_options`)."""

    unacked: str
    index: str
    mutex: str
    mutex_expire: int
    sep: str
    priority_steps: tuple[int, ...]
    binding_prefix: str  # "_kombu.binding.%s": a named exchange's bindings
    prefix: str = ""  # kombu's ``global_keyprefix``, put before every key

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> UnackedKeys:
        """Keys from Celery's ``broker_transport_options``, kombu's defaults where unset."""

        def opt(name: str) -> Any:
            return options.get(name, getattr(Channel, name))

        prefix = str(opt("global_keyprefix") or "")
        return cls(
            unacked=prefix + str(opt("unacked_key")),
            index=prefix + str(opt("unacked_index_key")),
            mutex=prefix + str(opt("unacked_mutex_key")),
            mutex_expire=int(opt("unacked_mutex_expire")),
            sep=str(opt("sep")),
            priority_steps=tuple(opt("priority_steps")),
            binding_prefix=prefix + str(Channel.keyprefix_queue),
            prefix=prefix,
        )

    def queue_key(self, queue: str, priority: int) -> str:
        """The list a message of ``priority`` lives in (kombu's ``Channel._q_for_pri``)."""
        steps = self.priority_steps
        step = steps[bisect(steps, priority) - 1]
        return f"{self.prefix}{queue}{self.sep}{step}" if step else self.prefix + queue


def broker_keys() -> UnackedKeys:
    """The keys of the broker the workers use (``celeryconfig.broker_transport_options``)."""
    import celeryconfig

    return UnackedKeys.from_options(celeryconfig.broker_transport_options)


@dataclass
class RestoreResult:
    """What one sweep did."""

    restored: dict[str, int] = field(default_factory=dict)  # queue → tasks put back
    # Stale entries left alone: other queues' tasks, unreadable ones. Pass them back in as
    # ``skip`` so the next sweep does not read (possibly large) chunk tasks again.
    skipped: set[str] = field(default_factory=set)
    malformed: int = 0  # among ``skipped``, entries that could not be read (first seen here)
    mutex_held: bool = False  # someone else held kombu's mutex: nothing was done

    @property
    def total(self) -> int:
        """Tasks put back, all queues."""
        return sum(self.restored.values())


class _Malformed(Exception):
    """An ``unacked`` value that is not ``[message, exchange, routing_key]``."""


def restore_stale(
    client: redis.Redis,
    keys: UnackedKeys,
    queues: Collection[str],
    older_than: float,
    skip: Set[str] = frozenset(),
) -> RestoreResult:
    """Put back on their queue the tasks of ``queues`` unacknowledged since before ``older_than``
    (unix seconds, the workers' clock). Entries whose tag is in ``skip`` are not read.

    Raises :class:`redis.RedisError` on Redis trouble; what was restored before it stays restored.
    """
    result = RestoreResult()
    try:
        with Mutex(client, keys.mutex, keys.mutex_expire):
            tags = cast(
                list[bytes],
                client.zrangebyscore(keys.index, "-inf", older_than, start=0, num=SCAN_LIMIT),
            )
            # Newest first, as kombu does: each is pushed on the right (the consuming end), so
            # the oldest ends up taken first.
            for raw_tag in reversed(tags):
                tag = raw_tag.decode()
                if tag in skip:
                    result.skipped.add(tag)
                    continue
                try:
                    queue = _restore_one(client, keys, tag, queues)
                except _Malformed as exc:
                    # The tag only: the value is a task payload (phone numbers, texts).
                    log.warning("unacked.malformed", tag=tag, reason=str(exc))
                    result.malformed += 1
                    result.skipped.add(tag)
                    continue
                if queue is None:
                    result.skipped.add(tag)
                elif queue:
                    result.restored[queue] = result.restored.get(queue, 0) + 1
    except MutexHeld:
        result.mutex_held = True
    return result


def _restore_one(
    client: redis.Redis, keys: UnackedKeys, tag: str, queues: Collection[str]
) -> str | None:
    """Move one entry back: its queue; ``None`` to leave it alone (another queue's); ``""`` when
    it is gone (acknowledged meanwhile) or kept losing its ``WATCH`` (tried again next sweep)."""
    with client.pipeline() as pipe:
        for _ in range(MAX_WATCH_RETRIES):
            try:
                pipe.watch(keys.unacked)
                raw = pipe.hget(keys.unacked, tag)
                if raw is None:
                    pipe.unwatch()
                    return ""
                message, exchange, routing_key = _parse(cast(bytes, raw))
                targets = _lookup(pipe, keys, exchange, routing_key)
                if not targets or any(q not in queues for q in targets):
                    pipe.unwatch()
                    return None
                body = json.dumps(redelivered(message))
                priority = priority_of(message)
                pipe.multi()
                pipe.zrem(keys.index, tag)
                pipe.hdel(keys.unacked, tag)
                for queue in targets:
                    pipe.rpush(keys.queue_key(queue, priority), body)
                pipe.execute()
                return targets[0]
            except redis.WatchError:
                continue
    return ""


def _parse(raw: bytes) -> tuple[dict[str, Any], str, str]:
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise _Malformed("not JSON") from exc
    if not (isinstance(value, list) and len(value) == 3):
        raise _Malformed("not [message, exchange, routing_key]")
    message, exchange, routing_key = value
    if not isinstance(message, dict) or not isinstance(message.get("properties"), dict):
        raise _Malformed("message without properties")
    if not isinstance(exchange, str) or not isinstance(routing_key, str):
        raise _Malformed("exchange or routing key not a string")
    return message, exchange, routing_key


def _lookup(pipe: Any, keys: UnackedKeys, exchange: str, routing_key: str) -> list[str]:
    """The queues kombu would restore to (``Channel._lookup``): the anonymous exchange (what
    this project publishes with) routes by queue name; a named one through its direct bindings
    (members ``routing_key<sep>pattern<sep>queue``). Nothing found: the entry is left to kombu."""
    if not exchange:
        return [routing_key] if routing_key else []
    members = cast(set[bytes], pipe.smembers(keys.binding_prefix % exchange))
    queues = []
    for member in members:
        parts = member.decode().split(keys.sep)
        if len(parts) == 3 and parts[0] == routing_key and parts[2]:
            queues.append(parts[2])
    return sorted(queues)
