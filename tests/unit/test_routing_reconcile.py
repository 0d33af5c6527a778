"""The log side of routing on a real (SQLite) database: stale claims are asked of the
connection they were sent over, and failed attempts name their connection on the timeline."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, insert, select

from dispatcher.contract import Status
from dispatcher.store.progress import Failure, SendProgress
from dispatcher.store.schema import message_events, messages
from workers.connectors.registry import ConnectorSet
from workers.sending.reconcile import reconcile

NOW = 1_800_000_000.0


class Carrier:
    """A connector that knows some refs."""

    def __init__(self, known: dict[str, str]) -> None:
        self.known = known
        self.asked: list[str] = []

    async def lookup(self, refs: Sequence[str]) -> dict[str, str] | None:
        self.asked.extend(refs)
        return {r: self.known[r] for r in refs if r in self.known}


def add(engine: Engine, mid: str, connection: str | None, status: str = Status.SENDING) -> None:
    row: dict[str, Any] = {
        "id": mid,
        "account_id": 1,
        "submission_id": "s1",
        "external_id": "e1",
        "phone": "+48501000001",
        "sender": "ACME",
        "body": "hi",
        "parts": 1,
        "encoding": "gsm7",
        "flash": False,
        "lane": "bulk",
        "status": status,
        "created_at": NOW - 600,
        "status_at": NOW - 300,
        "valid_until": NOW + 3600,
        "attempts": 1,
        "connection": connection,
    }
    with engine.begin() as conn:
        conn.execute(insert(messages), [row])


def statuses(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {r[0]: r[1] for r in conn.execute(select(messages.c.id, messages.c.status))}


def test_stale_claims_are_asked_of_their_own_connection(engine: Engine) -> None:
    a, b = Carrier({"m1": "a-1"}), Carrier({"m3": "b-3"})
    for mid, conn in (("m1", "a"), ("m2", "a"), ("m3", "b"), ("m4", "gone")):
        add(engine, mid, conn)
    store = SendProgress(engine)
    ids = ["m1", "m2", "m3", "m4"]
    report = asyncio.run(reconcile(store, ConnectorSet({"a": a, "b": b}), ids, NOW - 120, NOW))  # type: ignore[dict-item]
    assert sorted(a.asked) == ["m1", "m2"] and b.asked == ["m3"]
    assert (report.checked, report.found_sent, report.requeued, report.unknown) == (4, 2, 1, 1)
    assert statuses(engine) == {
        "m1": Status.SENT,
        "m2": Status.RETRYING,
        "m3": Status.SENT,
        "m4": Status.FAILED,  # its connection was removed: it cannot be asked
    }


def test_failed_attempts_name_their_connection(engine: Engine) -> None:
    add(engine, "m1", "sim-a")
    add(engine, "m2", "sim-b", Status.QUEUED)
    store = SendProgress(engine)
    assert store.last_connections(["m1", "m2", "m9"]) == {"m1": "sim-a", "m2": "sim-b"}
    failure = Failure("m1", Status.RETRYING, "internal", "HTTP 500", False, 500, 3.0, NOW + 1)
    assert store.record_failures([failure], NOW, Status.SENDING, "sim-a") == 1
    with engine.connect() as conn:
        events = conn.execute(
            select(message_events.c.kind, message_events.c.detail).order_by(message_events.c.id)
        ).all()
    assert [e[0] for e in events] == ["attempt_failed", "routed"]
    assert events[1][1] == {"connection": "sim-a"}


def test_the_claim_returns_the_previous_attempts_error(engine: Engine) -> None:
    """The sender tells an ambiguous previous attempt from the claim's answer alone."""
    for mid in ("m1", "m2", "m3"):
        add(engine, mid, "sim-a")
    store = SendProgress(engine)
    failures = [
        Failure("m1", Status.RETRYING, "carrier_timeout", "no answer", False, None, 10.0, NOW),
        Failure("m2", Status.RETRYING, "internal", "HTTP 500", False, 500, 3.0, NOW),
    ]
    assert store.record_failures(failures, NOW, Status.SENDING, "sim-a") == 2
    with engine.begin() as conn:  # the scheduler's requeue of due retries, and a first attempt
        conn.execute(messages.update().values(status=Status.QUEUED))
        conn.execute(messages.update().where(messages.c.id == "m3").values(error_code=None))
    claims = store.claim(["m1", "m2", "m3"], "sim-b", NOW + 1)
    assert {i: c.last_error for i, c in claims.items()} == {
        "m1": "carrier_timeout",
        "m2": "internal",
        "m3": None,
    }
    assert {c.valid_until for c in claims.values()} == {NOW + 3600}
    assert store.claim(["m1", "m2", "m3"], "sim-b", NOW + 1) == {}  # compare-and-set
