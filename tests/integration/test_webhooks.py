"""Customer webhooks over real processes: a message the simulator rejects becomes ``rejected``
and its signed webhook reaches a test receiver; a receiver that is down is retried; a failing
main URL falls back to the secondary; 410 disables the endpoint; logs hold no secrets.

Needs the webhooks wiring: a webhooks worker pool (``smsdispatch worker --lane webhooks``), the
sender creating deliveries for final statuses (``create_status_webhooks``) and the scheduler
publishing ``due_deliveries``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from smsdispatch_client.webhooks import verify
from sqlalchemy import select, update

from dispatcher.store import webhook_settings as admin
from dispatcher.store.schema import accounts, webhook_attempts, webhook_deliveries
from dispatcher.store.schema import webhook_endpoints as endpoints_table
from tests.support.receiver import Answer, Receiver
from tests.support.stack import ApiClient, Stack, running_stack, wait_until

pytestmark = pytest.mark.integration

REJECTED_PREFIX = "+48699"


@pytest.fixture(scope="module")
def rx() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture(scope="module")
def wstack() -> Iterator[Stack]:
    with running_stack(
        workers={"priority": 1, "bulk": 2, "webhooks": 1},
        webhook_allow_private=True,
        webhook_timeout_s=2,
        carrier_tps=2000,
        webhook_on_sent_check_s=1,
    ) as s:
        s.sim_config(reject_prefixes=[REJECTED_PREFIX])
        yield s


def hooked_account(stack: Stack, **urls: str | None) -> tuple[ApiClient, str]:
    """A new account with webhook columns set; its client and signing secret."""
    client = stack.account()
    engine = stack.db()
    with engine.begin() as conn:
        if urls:
            conn.execute(update(accounts).where(accounts.c.id == client.account_id).values(**urls))
        secret = admin.ensure_secret(conn, client.account_id)
    engine.dispose()
    assert secret is not None
    return client, secret


def send_rejected(client: ApiClient, n: int, **extra: Any) -> str:
    """Send to a number the simulator rejects; the message id once it is ``rejected``."""
    body = {
        "sender": "ACME",
        "message": f"hook test {n}",
        "phoneNumbers": [f"{REJECTED_PREFIX}{n:06d}"],
    }
    r = client.send({**body, **extra})
    assert r.status_code == 200, r.text
    mid = str(r.json()["data"][0]["id"])
    wait_until(lambda: client.status(mid) == "rejected", 30, what="rejected")
    return mid


def deliveries_of(stack: Stack, mid: str) -> list[dict[str, Any]]:
    engine = stack.db()
    with engine.connect() as conn:
        rows = conn.execute(
            select(webhook_deliveries).where(webhook_deliveries.c.message_id == mid)
        )
        out = [dict(r._mapping) for r in rows]
    engine.dispose()
    return out


def attempts_of(stack: Stack, delivery_id: str) -> list[dict[str, Any]]:
    engine = stack.db()
    with engine.connect() as conn:
        rows = conn.execute(
            select(webhook_attempts)
            .where(webhook_attempts.c.delivery_id == delivery_id)
            .order_by(webhook_attempts.c.id)
        )
        out = [dict(r._mapping) for r in rows]
    engine.dispose()
    return out


def final_delivery(stack: Stack, mid: str, state: str, timeout: float = 40) -> dict[str, Any]:
    def done() -> dict[str, Any]:
        found = deliveries_of(stack, mid)
        return found[0] if found and found[0]["state"] == state else {}

    return wait_until(done, timeout, interval=0.1, what=f"delivery {state}")


def test_signed_webhook_for_a_rejected_message(wstack: Stack, rx: Receiver) -> None:
    client, secret = hooked_account(wstack, webhook_url=rx.url("/t1"))
    mid = send_rejected(client, 101)
    (req,) = rx.wait_for(1, "/t1", timeout=30)
    verify(req.body, req.headers, [secret])
    payload = json.loads(req.body)
    assert payload["type"] == "message.status" and payload["id"] == mid
    assert (payload["status"], payload["statusName"], payload["isFinal"]) == (
        "Rejected",
        "rejected",
        True,
    )
    assert payload["phoneNumber"] == f"{REJECTED_PREFIX}000101"
    assert payload["error"]["code"] == "unknown_subscriber" and payload["error"]["permanent"]
    assert payload["numberOfParts"] == 1 and payload["externalId"]
    d = final_delivery(wstack, mid, "delivered")
    assert req.headers["webhook-id"] == d["id"]
    (a,) = attempts_of(wstack, d["id"])
    assert (a["status_code"], a["url"]) == (200, rx.url("/t1"))


def test_message_webhook_url_wins_over_the_account_url(wstack: Stack, rx: Receiver) -> None:
    client, secret = hooked_account(wstack, webhook_url=rx.url("/t1b-account"))
    mid = send_rejected(client, 102, webhookUrl=rx.url("/t1b-message"))
    (req,) = rx.wait_for(1, "/t1b-message", timeout=30)
    verify(req.body, req.headers, [secret])
    assert json.loads(req.body)["id"] == mid
    final_delivery(wstack, mid, "delivered")
    assert rx.requests("/t1b-account") == []


def test_receiver_down_is_retried_then_delivered(wstack: Stack, rx: Receiver) -> None:
    rx.script("/t2", Answer(503, "down"), Answer(200))
    client, secret = hooked_account(wstack, webhook_url=rx.url("/t2"))
    mid = send_rejected(client, 103)
    first, second = rx.wait_for(2, "/t2", timeout=40)
    assert second.at - first.at >= 2.0  # backoff, not a tight loop
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    for req in (first, second):
        verify(req.body, req.headers, [secret])
    d = final_delivery(wstack, mid, "delivered")
    assert d["attempts"] == 2
    assert [a["status_code"] for a in attempts_of(wstack, d["id"])] == [503, 200]


def test_failing_main_url_falls_back_to_the_secondary(wstack: Stack, rx: Receiver) -> None:
    rx.script("/t3-main", 500)
    client, secret = hooked_account(
        wstack, webhook_url=rx.url("/t3-main"), webhook_url_secondary=rx.url("/t3-second")
    )
    mid = send_rejected(client, 104)
    (req,) = rx.wait_for(1, "/t3-second", timeout=30)
    verify(req.body, req.headers, [secret])
    d = final_delivery(wstack, mid, "delivered")
    assert [(a["url"], a["status_code"]) for a in attempts_of(wstack, d["id"])] == [
        (rx.url("/t3-main"), 500),
        (rx.url("/t3-second"), 200),
    ]


def test_410_disables_the_endpoint(wstack: Stack, rx: Receiver) -> None:
    rx.script("/t4", 410)
    client, _ = hooked_account(wstack, webhook_url=rx.url("/t4"))
    first = send_rejected(client, 105)
    final_delivery(wstack, first, "disabled")
    engine = wstack.db()
    with engine.connect() as conn:
        ep = conn.execute(
            select(endpoints_table).where(endpoints_table.c.url == rx.url("/t4"))
        ).one()
    engine.dispose()
    assert ep.state == "disabled" and "410" in ep.reason
    second = send_rejected(client, 106)
    d = final_delivery(wstack, second, "disabled")
    assert [a["error"] for a in attempts_of(wstack, d["id"])] == ["endpoint_disabled"]
    time.sleep(0.5)
    assert len(rx.requests("/t4")) == 1  # the disabled endpoint was not called again


def test_logs_hold_no_secret_signature_or_message_text(wstack: Stack, rx: Receiver) -> None:
    client, secret = hooked_account(wstack, webhook_url=rx.url("/t5"))
    send_rejected(client, 107)
    (req,) = rx.wait_for(1, "/t5", timeout=30)
    time.sleep(0.5)
    logs = wstack.logs()
    assert "webhook.delivered" in logs
    assert secret not in logs and secret[6:] not in logs
    for sig in req.headers["webhook-signature"].split():
        assert sig.split(",", 1)[1] not in logs
    assert "hook test 107" not in logs


def test_webhook_on_sent_when_the_account_asks(wstack: Stack, rx: Receiver) -> None:
    client, secret = hooked_account(wstack, webhook_url=rx.url("/sent"), webhook_on_sent=True)
    time.sleep(1.5)  # workers re-check within 1 s (here) whether any account wants them
    r = client.send({"sender": "ACME", "message": "hello", "phoneNumbers": ["+48111222777"]})
    mid = r.json()["data"][0]["id"]
    req = rx.wait_for(1, "/sent", timeout=30)[0]
    verify(req.body, req.headers, [secret])
    payload = json.loads(req.body)
    assert (payload["id"], payload["statusName"], payload["isFinal"]) == (mid, "sent", False)
