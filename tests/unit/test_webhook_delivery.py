"""The delivery state machine on a real database, with the real aiohttp poster against a local
receiver: signed POSTs, retries with backoff, the secondary URL, 410, suspension, the retry
window, URL refusal at send time, claims and crash recovery."""

from __future__ import annotations

import ast
import asyncio
import json
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
from smsdispatch_client.webhooks import verify
from sqlalchemy import Engine, select, update

from dispatcher.store import webhook_settings as admin
from dispatcher.store.schema import (
    accounts,
    webhook_attempts,
    webhook_deliveries,
    webhook_endpoints,
)
from dispatcher.store.webhooks import create_status_webhooks, recover_stale_deliveries
from tests.support.receiver import Answer, Receiver
from tests.support.services import free_port
from tests.unit.test_webhook_outbox import add_account, add_message
from workers.webhooks.backoff import WebhookBackoff
from workers.webhooks.deliver import DeliverOptions, DeliverReport, WebhookDeliverer
from workers.webhooks.http import AiohttpPoster, make_session
from workers.webhooks.store import SqlDeliveryStore

ROOT = pathlib.Path(__file__).resolve().parents[2]


class Clock:
    """A settable clock (starts now: signatures are checked against it)."""

    def __init__(self) -> None:
        self.t = float(int(time.time()))

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def rx() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def run(
    eng: Engine,
    ids: list[str],
    clock: Clock,
    allow_private: bool = True,
    timeout_s: float = 2.0,
    window_s: float = 26 * 3600,
    suspend_after_s: float = 24 * 3600,
    observe: Any = None,
) -> DeliverReport:
    async def go() -> DeliverReport:
        session = await make_session(allow_private)
        try:
            d = WebhookDeliverer(
                SqlDeliveryStore(eng, suspend_after_s),
                AiohttpPoster(session, timeout_s, allow_private),
                WebhookBackoff(window_s=window_s),
                DeliverOptions(timeout_s=timeout_s),
                clock=clock,
                observe=observe,
            )
            return await d.run(ids)
        finally:
            await session.close()

    return asyncio.run(go())


def webhook_for(eng: Engine, clock: Clock, acct: int, **message: Any) -> str:
    """A rejected message of ``acct`` and its delivery's id."""
    mid = add_message(eng, acct, "rejected", error_code="unknown_subscriber", **message)
    with eng.begin() as conn:
        assert create_status_webhooks(conn, [mid], clock()) == 1
        return str(
            conn.execute(
                select(webhook_deliveries.c.id).where(webhook_deliveries.c.message_id == mid)
            ).scalar_one()
        )


def delivery(eng: Engine, did: str) -> dict[str, Any]:
    with eng.connect() as conn:
        row = conn.execute(select(webhook_deliveries).where(webhook_deliveries.c.id == did))
        return dict(row.one()._mapping)


def attempts(eng: Engine, did: str) -> list[dict[str, Any]]:
    with eng.connect() as conn:
        rows = conn.execute(
            select(webhook_attempts)
            .where(webhook_attempts.c.delivery_id == did)
            .order_by(webhook_attempts.c.id)
        )
        return [dict(r._mapping) for r in rows]


def endpoint(eng: Engine, url: str) -> dict[str, Any]:
    with eng.connect() as conn:
        row = conn.execute(select(webhook_endpoints).where(webhook_endpoints.c.url == url))
        return dict(row.one()._mapping)


def secrets_of(eng: Engine, acct: int) -> list[str]:
    with eng.connect() as conn:
        r = conn.execute(select(accounts).where(accounts.c.id == acct)).one()
    return [s for s in (r.webhook_secret, r.webhook_secret_previous) if s]


def test_delivered_signed_and_recorded(engine: Engine, rx: Receiver) -> None:
    clock = Clock()
    acct = add_account(engine, webhook_url=rx.url("/a"))
    did = webhook_for(engine, clock, acct)
    report = run(engine, [did], clock)
    assert (report.claimed, report.delivered) == (1, 1)
    (req,) = rx.requests("/a")
    verify(req.body, req.headers, secrets_of(engine, acct), now=clock())  # secret made on use
    assert req.headers["webhook-id"] == did
    assert req.headers["content-type"] == "application/json"
    assert json.loads(req.body)["status"] == "Rejected"
    assert req.body.decode() == delivery(engine, did)["payload"]
    d = delivery(engine, did)
    assert (d["state"], d["attempts"], d["last_status_code"]) == ("delivered", 1, 200)
    assert d["delivered_at"] == clock() and d["next_attempt_at"] is None
    (a,) = attempts(engine, did)
    assert (a["url"], a["status_code"], a["error"], a["body"]) == (rx.url("/a"), 200, None, "ok")
    assert a["latency_ms"] > 0
    ep = endpoint(engine, rx.url("/a"))
    assert (ep["state"], ep["consecutive_failures"], ep["failing_since"]) == ("active", 0, None)
    assert run(engine, [did], clock).claimed == 0  # done: never sent twice
    assert len(rx.requests("/a")) == 1


def test_503_is_retried_with_backoff_then_delivered(engine: Engine, rx: Receiver) -> None:
    clock = Clock()
    rx.script("/b", 503, 200)
    acct = add_account(engine, webhook_url=rx.url("/b"))
    did = webhook_for(engine, clock, acct)
    assert run(engine, [did], clock).retrying == 1
    d = delivery(engine, did)
    assert d["state"] == "pending" and clock() + 2.5 <= d["next_attempt_at"] <= clock() + 5
    assert run(engine, [did], clock).claimed == 0  # not due yet: a stray task does nothing
    ep = endpoint(engine, rx.url("/b"))
    assert (ep["consecutive_failures"], ep["failing_since"]) == (1, clock())
    clock.t = d["next_attempt_at"]
    assert run(engine, [did], clock).delivered == 1
    first, second = rx.requests("/b")
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == did
    assert first.body == second.body
    assert [a["status_code"] for a in attempts(engine, did)] == [503, 200]
    assert attempts(engine, did)[0]["error"] == "http_503"
    assert delivery(engine, did)["attempts"] == 2
    assert endpoint(engine, rx.url("/b"))["consecutive_failures"] == 0


def test_429_retry_after_is_honoured(engine: Engine, rx: Receiver) -> None:
    clock = Clock()
    rx.script("/c", Answer(429, "slow down", {"Retry-After": "120"}))
    acct = add_account(engine, webhook_url=rx.url("/c"))
    did = webhook_for(engine, clock, acct)
    run(engine, [did], clock)
    d = delivery(engine, did)
    assert d["state"] == "pending" and d["next_attempt_at"] >= clock() + 120
    assert d["last_status_code"] == 429


def test_4xx_fails_without_retry_or_fallback(engine: Engine, rx: Receiver) -> None:
    clock = Clock()
    rx.script("/d", Answer(400, "bad payload " + "x" * 2000))
    acct = add_account(engine, webhook_url=rx.url("/d"), webhook_url_secondary=rx.url("/d2"))
    did = webhook_for(engine, clock, acct)
    assert run(engine, [did], clock).failed == 1
    assert delivery(engine, did)["state"] == "failed"
    (a,) = attempts(engine, did)
    assert a["error"] == "http_400" and len(a["body"]) == 512 and a["body"].startswith("bad")
    assert rx.requests("/d2") == []


def test_redirects_are_not_followed(engine: Engine, rx: Receiver) -> None:
    clock = Clock()
    rx.script("/r", Answer(302, "", {"Location": rx.url("/elsewhere")}))
    acct = add_account(engine, webhook_url=rx.url("/r"))
    did = webhook_for(engine, clock, acct)
    run(engine, [did], clock)
    assert delivery(engine, did)["state"] == "failed"
    assert attempts(engine, did)[0]["error"] == "redirect_not_followed"
    assert rx.requests("/elsewhere") == []


@pytest.mark.parametrize("failure", [Answer(503), Answer(200, delay_s=1.5), "closed-port"])
def test_main_failure_uses_the_secondary_in_the_same_attempt(
    engine: Engine,
    rx: Receiver,
    failure: Any,
) -> None:
    clock = Clock()
    closed = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    main = closed if failure == "closed-port" else rx.url("/main")
    if failure != "closed-port":
        rx.script("/main", failure)
    acct = add_account(engine, webhook_url=main, webhook_url_secondary=rx.url("/second"))
    did = webhook_for(engine, clock, acct)
    assert run(engine, [did], clock, timeout_s=0.5).delivered == 1
    tries = attempts(engine, did)
    assert [t["url"] for t in tries] == [main, rx.url("/second")]
    assert tries[0]["error"] in {"http_503", "timeout", "connect_error"}
    assert tries[1]["status_code"] == 200
    (req,) = rx.requests("/second")
    verify(req.body, req.headers, secrets_of(engine, acct), now=clock())
    assert endpoint(engine, main)["consecutive_failures"] == 1


def test_both_failing_is_retried(engine: Engine, rx: Receiver) -> None:
    clock = Clock()
    rx.script("/m", 500)
    rx.script("/s", 502)
    acct = add_account(engine, webhook_url=rx.url("/m"), webhook_url_secondary=rx.url("/s"))
    did = webhook_for(engine, clock, acct)
    assert run(engine, [did], clock).retrying == 1
    assert [t["status_code"] for t in attempts(engine, did)] == [500, 502]


def test_410_disables_the_endpoint_and_later_deliveries_fail_at_once(
    engine: Engine,
    rx: Receiver,
) -> None:
    clock = Clock()
    rx.script("/gone", 410)
    acct = add_account(engine, webhook_url=rx.url("/gone"))
    first = webhook_for(engine, clock, acct)
    assert run(engine, [first], clock).disabled == 1
    assert delivery(engine, first)["state"] == "disabled"
    ep = endpoint(engine, rx.url("/gone"))
    assert ep["state"] == "disabled" and "410" in ep["reason"]
    second = webhook_for(engine, clock, acct)
    assert run(engine, [second], clock).disabled == 1
    assert len(rx.requests("/gone")) == 1  # not called again
    (a,) = attempts(engine, second)
    assert a["error"] == "endpoint_disabled" and "410" in a["body"] and a["status_code"] is None


def test_410_on_main_falls_back_to_the_secondary(engine: Engine, rx: Receiver) -> None:
    clock = Clock()
    rx.script("/gone", 410)
    acct = add_account(engine, webhook_url=rx.url("/gone"), webhook_url_secondary=rx.url("/ok"))
    did = webhook_for(engine, clock, acct)
    assert run(engine, [did], clock).delivered == 1
    assert endpoint(engine, rx.url("/gone"))["state"] == "disabled"
    later = webhook_for(engine, clock, acct)
    assert run(engine, [later], clock).delivered == 1
    assert [t["error"] for t in attempts(engine, later)] == ["endpoint_disabled", None]


def test_failing_endpoint_is_suspended_then_resumed(engine: Engine, rx: Receiver) -> None:
    clock = Clock()
    rx.script("/flaky", 503)
    acct = add_account(engine, webhook_url=rx.url("/flaky"))
    did = webhook_for(engine, clock, acct)
    run(engine, [did], clock, suspend_after_s=3600)
    assert endpoint(engine, rx.url("/flaky"))["state"] == "active"
    clock.t += 3600
    run(engine, [did], clock, suspend_after_s=3600)
    ep = endpoint(engine, rx.url("/flaky"))
    assert ep["state"] == "suspended" and "http_503" in ep["reason"]
    assert ep["consecutive_failures"] == 2
    # the pending one and new ones fail at once, without calling the endpoint
    calls = len(rx.requests("/flaky"))
    clock.t = delivery(engine, did)["next_attempt_at"]
    new = webhook_for(engine, clock, acct)
    assert run(engine, [did, new], clock, suspend_after_s=3600).failed == 2
    assert len(rx.requests("/flaky")) == calls
    assert attempts(engine, new)[0]["error"] == "endpoint_suspended"
    # the operator resumes it: the endpoint is active and both are sent again
    rx.script("/flaky", 200)
    with engine.begin() as conn:
        done = admin.resume(conn, acct, clock(), 26 * 3600)
    assert (done.endpoints, done.requeued) == (1, 2)
    assert run(engine, [did, new], clock).delivered == 2
    assert endpoint(engine, rx.url("/flaky"))["state"] == "active"


def test_retry_window_ends_in_failed(engine: Engine, rx: Receiver) -> None:
    clock = Clock()
    rx.script("/down", 503)
    acct = add_account(engine, webhook_url=rx.url("/down"))
    did = webhook_for(engine, clock, acct)
    run(engine, [did], clock, window_s=60)
    assert delivery(engine, did)["state"] == "pending"
    clock.t += 61
    run(engine, [did], clock, window_s=60)
    assert delivery(engine, did)["state"] == "failed"
    assert len(rx.requests("/down")) == 2


def test_private_url_is_refused_at_send_time(engine: Engine, rx: Receiver) -> None:
    clock = Clock()
    acct = add_account(engine)
    did = webhook_for(engine, clock, acct, webhook_url=rx.url("/private"))
    assert run(engine, [did], clock, allow_private=False).failed == 1
    assert rx.requests() == []
    (a,) = attempts(engine, did)
    assert a["error"] == "url_refused" and "loopback" in a["body"]
    with engine.connect() as conn:  # not an endpoint health problem
        assert conn.execute(select(webhook_endpoints)).all() == []


def test_claims_once_and_recovers_after_a_crash(engine: Engine, rx: Receiver) -> None:
    clock = Clock()
    acct = add_account(engine, webhook_url=rx.url("/once"))
    did = webhook_for(engine, clock, acct)
    store = SqlDeliveryStore(engine, 3600)
    (claimed,) = store.claim([did], clock(), 40.0)
    assert claimed.attempts == 1 and claimed.secrets[0].startswith("whsec_")
    assert store.claim([did], clock(), 40.0) == []  # a second worker gets nothing
    assert run(engine, [did, did], clock).claimed == 0
    # the first worker "crashed": after the lease the scheduler's sweep makes it pending again
    with engine.begin() as conn:
        assert recover_stale_deliveries(conn, clock() + 39) == 0
        assert recover_stale_deliveries(conn, clock() + 40) == 1
    clock.t += 40
    assert run(engine, [did, did], clock).delivered == 1
    assert len(rx.requests("/once")) == 1
    assert delivery(engine, did)["attempts"] == 2


def test_rotation_signs_with_both_secrets(engine: Engine, rx: Receiver) -> None:
    clock = Clock()
    acct = add_account(engine, webhook_url=rx.url("/rot"))
    with engine.begin() as conn:
        old = admin.ensure_secret(conn, acct)
        new = admin.rotate_secret(conn, acct, clock(), 3600)
    assert old and new and old != new
    did = webhook_for(engine, clock, acct)
    run(engine, [did], clock)
    (req,) = rx.requests("/rot")
    assert len(req.headers["webhook-signature"].split(" ")) == 2
    verify(req.body, req.headers, [old], now=clock())
    verify(req.body, req.headers, [new], now=clock())
    with engine.begin() as conn:  # after the overlap only the new one is used
        conn.execute(
            update(accounts)
            .where(accounts.c.id == acct)
            .values(webhook_secret_previous_until=clock() - 1)
        )
    run(engine, [webhook_for(engine, clock, acct)], clock)
    assert len(rx.requests("/rot")[1].headers["webhook-signature"].split(" ")) == 1


def test_many_deliveries_in_one_task(engine: Engine, rx: Receiver) -> None:
    clock = Clock()
    acct = add_account(engine, webhook_url=rx.url("/many"))
    ids = [webhook_for(engine, clock, acct) for _ in range(30)]
    assert run(engine, ids, clock).delivered == 30
    assert sorted(r.headers["webhook-id"] for r in rx.requests("/many")) == sorted(ids)


def test_delivery_logic_is_plain_python() -> None:
    for path in (
        *(ROOT / "workers" / "webhooks" / n for n in ("deliver.py", "classify.py", "backoff.py")),
        ROOT / "workers" / "webhooks" / "store.py",
        ROOT / "dispatcher" / "webhooks" / "records.py",
        ROOT / "dispatcher" / "store" / "webhook_attempts.py",
    ):
        name = path.name
        tree = ast.parse(path.read_text())
        mods = {
            (n.module if isinstance(n, ast.ImportFrom) else a.name) or ""
            for n in ast.walk(tree)
            if isinstance(n, ast.Import | ast.ImportFrom)
            for a in n.names
        }
        assert not {m for m in mods if m.split(".")[0] in {"celery", "kombu", "aiohttp"}}, name


def test_dispatcher_webhooks_never_import_workers() -> None:
    for path in [
        *(ROOT / "dispatcher" / "webhooks").glob("*.py"),
        ROOT / "dispatcher/cli/webhooks.py",
    ]:
        tree = ast.parse(path.read_text())
        for n in ast.walk(tree):
            if isinstance(n, ast.ImportFrom) and n.module:
                assert not n.module.startswith("workers"), path


def test_the_task_is_registered_under_the_contract_name() -> None:
    from dispatcher.contract import TASK_DELIVER_WEBHOOKS
    from workers.app import app
    from workers.tasks_webhooks import deliver_webhooks

    assert deliver_webhooks.name == TASK_DELIVER_WEBHOOKS and TASK_DELIVER_WEBHOOKS in app.tasks
    assert deliver_webhooks.acks_late and deliver_webhooks.reject_on_worker_lost


def test_outcomes_are_observed_for_metrics(engine: Engine, rx: Receiver) -> None:
    from workers.metrics import record_webhook_outcomes

    clock = Clock()
    rx.script("/obs", 503)
    acct = add_account(engine, webhook_url=rx.url("/obs"), webhook_url_secondary=rx.url("/ok"))
    seen: list[Any] = []
    run(engine, [webhook_for(engine, clock, acct)], clock, observe=seen.extend)
    (o,) = seen
    assert o.state == "delivered" and [a.status_code for a in o.attempts] == [503, 200]
    record_webhook_outcomes(seen)  # the metrics module reads our records as they are


def test_runtime_builds_and_delivers(engine: Engine, rx: Receiver) -> None:
    from dispatcher.config import Settings
    from workers.webhooks.runtime import WebhookRuntime

    acct = add_account(engine, webhook_url=rx.url("/rt"))
    did = webhook_for(engine, Clock(), acct)
    settings = Settings(
        database_url=engine.url.render_as_string(hide_password=False),
        webhook_allow_private=True,
    )
    rt = WebhookRuntime(settings)
    try:
        assert rt.run(rt.deliverer.run([did])).delivered == 1
    finally:
        rt.close()
    assert delivery(engine, did)["state"] == "delivered"
