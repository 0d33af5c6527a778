"""What the producer and the consumer agree on: queues, task names, payloads, statuses.

Standard library only, so both sides (and ``celeryconfig``) can import it without pulling in
the API or the workers. Tasks are enqueued *by name*; the producer never imports worker code.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NotRequired, TypedDict


class Lane(StrEnum):
    """A lane is a Celery queue with its own worker pool."""

    PRIORITY = "priority"  # OTP/2FA, alerts: never behind marketing, no prefetch
    BULK = "bulk"  # everything else, chunked
    DLR = "dlr"  # applying delivery reports (later issue)
    WEBHOOKS = "webhooks"  # customer webhooks (later issue)


SEND_LANES = (Lane.PRIORITY, Lane.BULK)
# Lanes whose tasks may run twice with no effect the second time, so a task left unacknowledged
# by a killed worker can be handed back long before kombu's visibility timeout
# (dispatcher/scheduler/unacked.py): reports and inbound messages are applied idempotently (a
# repeat counts as a duplicate), webhook deliveries are claimed compare-and-set. The send lanes
# are not in it: their tasks are recovered from the log (claims, reconciler, orphan audit).
REDELIVERABLE_LANES = (Lane.DLR, Lane.WEBHOOKS)
QUEUE_PREFIX = "smsd."
# Header (unix seconds) every publisher stamps on a task: the exporter's queue age.
HEADER_PUBLISHED_AT = "smsd_published_at"


def queue_name(lane: Lane | str) -> str:
    """The broker queue (a Redis list) of a lane."""
    return QUEUE_PREFIX + str(lane)


# Task names: the producer sends by name, the worker registers under these names.
TASK_SEND_CHUNK = "smsdispatch.send_chunk"
TASK_RECONCILE = "smsdispatch.reconcile_sending"  # args: {"ids": [...]}: claims left by a crash
# Delivery reports and inbound messages posted by carriers, applied on the dlr lane: args
# {"ids": [rows of the carrier callback inbox]} (dispatcher/store/callback_inbox.py); reports
# may add "fresh_before" (unix s: rows taken along arrived before it; workers/smpp/process.py).
TASK_APPLY_REPORTS = "smsdispatch.apply_reports"
TASK_APPLY_INBOUND = "smsdispatch.apply_inbound"


class CallbackKind(StrEnum):
    """What a carrier posted to a callback endpoint (a row kind of the callback inbox)."""

    REPORT = "report"
    INBOUND = "inbound"


CALLBACK_TASKS = {CallbackKind.REPORT: TASK_APPLY_REPORTS, CallbackKind.INBOUND: TASK_APPLY_INBOUND}
# Customer webhooks, on the webhooks lane: args {"ids": [webhook delivery ids]}.
TASK_DELIVER_WEBHOOKS = "smsdispatch.deliver_webhooks"

# Webhook event names (the ``type`` of a webhook payload).
EVENT_MESSAGE_STATUS = "message.status"
EVENT_MESSAGE_INBOUND = "message.inbound"
EVENT_MESSAGE_CLICK = "message.click"  # a short link was clicked (docs/short-links.md)


class Status(StrEnum):
    """Message states, lower-case, in the order a message moves through them."""

    SCHEDULED = "scheduled"  # held in the log until its scheduleTime
    QUEUED = "queued"  # committed and handed to a lane
    # A retryable failure or a rate-limit deferral; held until next_attempt_at.
    RETRYING = "retrying"
    # Its campaign is paused (docs/campaigns.md): held, not released, until resumed; its
    # validity clock keeps running.
    PAUSED = "paused"
    SENDING = "sending"  # claimed by a worker; the carrier call is under way
    SENT = "sent"  # the carrier accepted it (not yet a handset report)
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    EXPIRED = "expired"
    REJECTED = "rejected"  # refused permanently by the carrier or by us
    FAILED = "failed"  # gave up: retries exhausted or an internal permanent error
    CANCELLED = "cancelled"  # cancelled by the customer before a worker claimed it


FINAL_STATUSES = frozenset(
    {
        Status.DELIVERED,
        Status.UNDELIVERED,
        Status.EXPIRED,
        Status.REJECTED,
        Status.FAILED,
        Status.CANCELLED,
    }
)
# Held states the scheduler releases when next_attempt_at is due.
HELD_STATUSES = frozenset({Status.SCHEDULED, Status.RETRYING})
# States a message can be cancelled or paused in: no worker has claimed it.
WAITING_STATUSES = frozenset({Status.SCHEDULED, Status.QUEUED, Status.RETRYING, Status.PAUSED})
# Error codes of an attempt that may have reached the carrier (a timeout, a connection dropped
# after the write): workers.errors.AmbiguousCarrierError's (a unit test keeps the list
# complete). Stored on the message, they tell a later attempt to ask the carrier before
# sending, and keep a pause or a cancel off the message until the carrier has answered.
AMBIGUOUS_CODES = frozenset(
    {
        "carrier_timeout",
        "carrier_disconnected",
        "carrier_io_error",
        "carrier_unexpected",
        "carrier_bad_response",
        "carrier_missing_result",
    }
)

# Numeric codes in v2.1 responses. 1, 2, 9 and 21 are the original's; the rest are ours.
STATUS_CODES: dict[Status, int] = {
    Status.SCHEDULED: 1,
    Status.QUEUED: 1,
    Status.RETRYING: 1,
    Status.PAUSED: 1,
    Status.SENDING: 2,
    Status.SENT: 3,
    Status.REJECTED: 9,
    Status.DELIVERED: 21,
    Status.UNDELIVERED: 22,
    Status.EXPIRED: 23,
    Status.FAILED: 24,
    Status.CANCELLED: 25,
}


def is_final(status: str) -> bool:
    """Whether no further state change can happen (bar a late delivery report)."""
    return status in FINAL_STATUSES


class MessagePayload(TypedDict):
    """One message as carried inside a task: ids and content, never ORM objects."""

    id: str  # our message id, sent to the carrier as its client reference
    account: int
    to: str  # E.164
    sender: str
    text: str
    parts: int
    flash: bool
    valid_until: float  # unix seconds; past it the message is expired, never sent
    attempt: int  # attempts already made
    due_at: NotRequired[float]  # accepted, or the scheduled time: send latency counts from it
    connection: NotRequired[str | None]  # route chosen at accept time, when known


class MalformedTask(ValueError):
    """A task argument that does not match its definition here; ``field`` names what is wrong."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


_MESSAGE_FIELDS: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "account": int,
    "to": str,
    "sender": str,
    "text": str,
    "parts": int,
    "flash": bool,
    "valid_until": (int, float),
    "attempt": int,
}


@dataclass(frozen=True, slots=True)
class Chunk:
    """Arguments of :data:`TASK_SEND_CHUNK`: the messages of one dispatch batch, for one lane.

    The producer builds it and :meth:`encode` s it into the task argument; the worker
    :meth:`decode` s that argument back, so both read one definition of the format.
    """

    batch: str  # dispatch batch id (the outbox row)
    lane: Lane
    messages: list[MessagePayload]

    def encode(self) -> dict[str, Any]:
        """The task argument (JSON types only)."""
        return {"batch": self.batch, "lane": str(self.lane), "messages": self.messages}

    @classmethod
    def decode(cls, arg: Any) -> Chunk:
        """The chunk a task argument carries; :class:`MalformedTask` when it is not one."""
        if not isinstance(arg, dict):
            raise MalformedTask("payload", "not an object")
        batch, lane, messages = arg.get("batch"), arg.get("lane"), arg.get("messages")
        if not isinstance(batch, str):
            raise MalformedTask("batch", "missing or not a string")
        if lane not in set(Lane):
            raise MalformedTask("lane", f"not a lane: {lane!r}")
        if not isinstance(messages, list):
            raise MalformedTask("messages", "missing or not a list")
        for i, m in enumerate(messages):
            if not isinstance(m, dict):
                raise MalformedTask(f"messages[{i}]", "not an object")
            for name, kind in _MESSAGE_FIELDS.items():
                value = m.get(name)
                if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                    raise MalformedTask(f"messages[{i}].{name}", "missing or of the wrong type")
        return cls(batch, Lane(lane), messages)
