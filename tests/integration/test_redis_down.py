"""Outages at the API, with real processes: a 200 always means "stored, and will be sent".

- Redis (the broker) down: ``POST /v2.1/sms`` answers 200 only for messages durably stored, which
  the outbox sweep enqueues once Redis is back (each then reaches the carrier exactly once), or
  503 with ``Retry-After`` and nothing stored. The stack runs on a private ``redis-server`` this
  test stops and restarts; the shared server is never touched.
- PostgreSQL refusing the run's database: 503 with ``Retry-After``, nothing half-stored; the
  same request succeeds once the database is back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from chaos.redis_server import PrivateRedis
from chaos.run import cut_connections, refuse_connections
from dispatcher.store.schema import dispatch_batches, messages, submissions
from tests.support.services import backend
from tests.support.stack import ApiClient, Stack, running_stack, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def redis_server() -> Iterator[PrivateRedis]:
    with PrivateRedis() as r:
        yield r


@pytest.fixture(scope="module")
def ostack(redis_server: PrivateRedis) -> Iterator[Stack]:
    with running_stack(
        workers={"priority": 1, "bulk": 1},
        redis_url=redis_server.url,
        outbox_stale_s=2,
        sending_stale_s=3,
        orphan_stale_s=4,
    ) as s:
        yield s


def _rows(stack: Stack, text: str) -> list[Any]:
    engine = stack.db()
    with engine.connect() as conn:
        rows = conn.execute(
            select(messages.c.id, messages.c.status, dispatch_batches.c.enqueued_at)
            .select_from(
                messages.join(dispatch_batches, messages.c.batch_id == dispatch_batches.c.id)
            )
            .where(messages.c.body == text)
        ).all()
    engine.dispose()
    return list(rows)


def _carrier_counts(stack: Stack) -> dict[str, int]:
    return {k: int(v) for k, v in stack.sim("GET", "/_sim/refcounts").json().items()}


def _sent(stack: Stack, ids: set[str]) -> bool:
    engine = stack.db()
    with engine.connect() as conn:
        n = conn.execute(
            select(func.count()).where(messages.c.id.in_(sorted(ids)), messages.c.status == "sent")
        ).scalar_one()
    engine.dispose()
    return int(n) == len(ids)


def _send(client: ApiClient, text: str, numbers: list[str], priority: bool) -> httpx.Response:
    body = {"sender": "Shop", "message": text, "phoneNumbers": numbers, "priority": priority}
    return client.send(body)


def test_redis_down_at_the_api(ostack: Stack, redis_server: PrivateRedis) -> None:
    """Stored-and-later-sent (200) or refused (503 + Retry-After); never 200 and lost."""
    client = ostack.account()
    before = _send(client, "before the outage", ["+48520000001"], True)
    assert before.status_code == 200, before.text
    wait_until(lambda: _sent(ostack, {before.json()["data"][0]["id"]}), 30, what="sanity send")

    redis_server.kill()
    answers: dict[str, tuple[httpx.Response, list[str]]] = {}
    for text, numbers, priority in [
        ("otp during the outage", ["+48520000002"], True),
        ("offer during the outage", [f"+485201{i:05d}" for i in range(30)], False),
    ]:
        started = time.monotonic()
        r = _send(client, text, numbers, priority)
        took = time.monotonic() - started
        assert took < 10, f"the API waited {took:.1f}s for Redis"
        assert r.status_code in (200, 503), r.text
        answers[text] = (r, numbers)
        if r.status_code == 503:
            assert r.headers.get("Retry-After"), "503 must say when to retry"
            assert _rows(ostack, text) == [], "a refused request stored nothing"
            continue
        ids = {m["id"] for m in r.json()["data"]}
        rows = _rows(ostack, text)
        assert {row.id for row in rows} == ids, "a 200 means stored, every message"
        assert all(row.enqueued_at is None for row in rows), "not enqueued while Redis is down"
    accepted = {
        m["id"] for r, _ in answers.values() if r.status_code == 200 for m in r.json()["data"]
    }
    print(f"\nanswers during the outage: {[r.status_code for r, _ in answers.values()]}")
    time.sleep(3)  # longer than outbox_stale_s: the sweep tries, and fails, while Redis is down
    assert not accepted & set(_carrier_counts(ostack)), "nothing can be sent without Redis"

    redis_server.start()
    wait_until(lambda: _sent(ostack, accepted), 60, 0.2, what="every accepted message sent")
    time.sleep(2)
    counts = _carrier_counts(ostack)
    assert {i: counts.get(i, 0) for i in accepted} == dict.fromkeys(accepted, 1), "exactly once"
    after = _send(client, "after the outage", ["+48520000003"], True)
    assert after.status_code == 200, after.text


@pytest.mark.skipif(backend() != "postgres", reason="refuses connections to a PostgreSQL database")
def test_postgres_down_at_the_api(ostack: Stack) -> None:
    """The database refuses connections: 503 with Retry-After, nothing half-stored; then 200."""
    client = ostack.account()
    warm = _send(client, "warm the pool", ["+48521000001"], True)  # authenticated, pooled
    assert warm.status_code == 200, warm.text

    engine = ostack.db()
    with engine.connect() as conn:
        batches_before = conn.execute(select(func.count()).select_from(dispatch_batches)).scalar()
        subs_before = conn.execute(select(func.count()).select_from(submissions)).scalar()
    engine.dispose()

    text = "while the database is away"
    numbers = [f"+485211{i:05d}" for i in range(20)]
    refuse_connections(ostack.database_url, True)
    try:
        cut_connections(ostack.database_url)
        for _ in range(3):  # first use of cut connections, then fresh connections refused
            r = _send(client, text, numbers, False)
            assert r.status_code == 503, r.text
            assert r.headers.get("Retry-After"), "503 must say when to retry"
            assert r.json()["errors"][0]["code"] == "service_unavailable"
    finally:
        refuse_connections(ostack.database_url, False)

    assert _rows(ostack, text) == [], "nothing stored"
    engine = ostack.db()
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(dispatch_batches)).scalar() == (
            batches_before
        )
        assert conn.execute(select(func.count()).select_from(submissions)).scalar() == (subs_before)
    engine.dispose()

    def retried() -> httpx.Response | None:
        r = _send(client, text, numbers, False)
        return r if r.status_code == 200 else None

    ok = wait_until(retried, 30, 1, what="200 once the database is back")
    ids = {m["id"] for m in ok.json()["data"]}
    wait_until(lambda: _sent(ostack, ids), 60, 0.2, what="sent")
    counts = _carrier_counts(ostack)
    assert {i: counts.get(i, 0) for i in ids} == dict.fromkeys(ids, 1)
