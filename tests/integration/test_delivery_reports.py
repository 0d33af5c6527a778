"""Delivery reports over real processes: simulator → callback endpoint → dlr lane → log."""

from __future__ import annotations

import json
import time
from collections import Counter

import httpx
import pytest
from smsdispatch_client.webhooks import verify
from sqlalchemy import update

from dispatcher.store import webhook_settings as admin
from dispatcher.store.schema import accounts
from tests.support.receiver import Receiver
from tests.support.stack import Stack, running_stack, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.pgbouncer]
TOKEN = "cb-t0k3n"


@pytest.fixture(scope="module")
def dlr_stack():  # type: ignore[no-untyped-def]
    with running_stack(
        workers={"priority": 1, "bulk": 2, "dlr": 1, "webhooks": 1},
        carrier_callback_token=TOKEN,
        webhook_allow_private=1,
    ) as s:
        yield s


def test_report_makes_message_delivered(dlr_stack: Stack) -> None:
    client = dlr_stack.account()
    r = client.send({"sender": "ACME", "message": "hi", "phoneNumbers": ["+48111222333"]})
    mid = r.json()["data"][0]["id"]
    wait_until(lambda: client.status(mid) == "delivered", 20, what="delivered")
    view = client.get(mid)
    assert view["status"] == 21 and view["isFinal"] and view["error"] is None
    kinds = [e["kind"] for e in view["events"]]
    assert kinds[:3] == ["accepted", "queued", "sent"] and "report" in kinds


def test_undelivered_and_expired_reports_map_to_our_statuses(dlr_stack: Stack) -> None:
    client = dlr_stack.account()
    dlr_stack.sim_config(dlr_mix={"UNDELIV": 1.0})
    try:
        a = client.send({"sender": "ACME", "message": "x", "phoneNumbers": ["+48111222334"]})
        aid = a.json()["data"][0]["id"]
        wait_until(lambda: client.status(aid) == "undelivered", 20, what="undelivered")
        dlr_stack.sim_config(dlr_mix={"EXPIRED": 1.0})
        b = client.send({"sender": "ACME", "message": "x", "phoneNumbers": ["+48111222335"]})
        bid = b.json()["data"][0]["id"]
        wait_until(lambda: client.status(bid) == "expired", 20, what="expired")
    finally:
        dlr_stack.sim_config(dlr_mix={"DELIVRD": 1.0})
    assert client.get(aid)["error"]["permanent"] is True
    assert client.get(aid)["statusName"] == "undelivered"


def test_duplicated_and_reordered_reports_end_in_one_final_state(dlr_stack: Stack) -> None:
    client = dlr_stack.account()
    dlr_stack.sim_config(dlr_duplicate_rate=1.0, dlr_reorder=True)
    try:
        numbers = [f"+4850011{i:04d}" for i in range(200)]
        r = client.send({"sender": "ACME", "message": "dup", "phoneNumbers": numbers})
        ids = [m["id"] for m in r.json()["data"]]

        def finals() -> bool:
            listed = client.http.get(
                "/v2.1/sms", params={"externalId": r.json()["data"][0]["externalId"], "limit": 1000}
            ).json()["data"]
            return all(m["isFinal"] for m in listed)

        wait_until(finals, 40, interval=0.3, what="all final")
    finally:
        dlr_stack.sim_config(dlr_duplicate_rate=0.0, dlr_reorder=False)
    statuses = Counter(client.status(i) for i in ids[:50])
    assert set(statuses) == {"delivered"}


def test_callbacks_need_the_connection_token(dlr_stack: Stack) -> None:
    url = dlr_stack.api_url + "/carrier/default/reports"
    report = {"id": "sim-1", "stat": "DELIVRD"}
    assert httpx.post(url, json=report).status_code == 401
    assert httpx.post(url, json=report, headers={"Authorization": "Bearer no"}).status_code == 401
    ok = httpx.post(url, json=report, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json()["accepted"] == 1
    assert (
        httpx.post(
            dlr_stack.api_url + "/carrier/nope/reports",
            json=report,
            headers={"Authorization": f"Bearer {TOKEN}"},
        ).status_code
        == 404
    )
    bad = httpx.post(url, content=b"[1, 2]", headers={"Authorization": f"Bearer {TOKEN}"})
    assert bad.status_code == 400


def test_delivered_report_produces_one_signed_webhook(dlr_stack: Stack) -> None:
    """send → report → delivered in the API → a signed webhook, verified with our helper;
    duplicated and reordered reports still give exactly one webhook per message."""
    with Receiver() as rx:
        client = dlr_stack.account()
        engine = dlr_stack.db()
        with engine.begin() as conn:
            conn.execute(
                update(accounts)
                .where(accounts.c.id == client.account_id)
                .values(webhook_url=rx.url("/dlr"))
            )
            secret = admin.ensure_secret(conn, client.account_id)
        engine.dispose()
        assert secret
        r = client.send({"sender": "ACME", "message": "hi", "phoneNumbers": ["+48111222399"]})
        mid = r.json()["data"][0]["id"]
        wait_until(lambda: client.status(mid) == "delivered", 20, what="delivered")
        req = rx.wait_for(1, "/dlr", timeout=30)[0]
        verify(req.body, req.headers, [secret])
        payload = json.loads(req.body)
        assert (payload["id"], payload["status"], payload["statusName"]) == (
            mid,
            "Delivered",
            "delivered",
        )

        dlr_stack.sim_config(dlr_duplicate_rate=1.0, dlr_reorder=True)
        try:
            numbers = [f"+4850022{i:04d}" for i in range(50)]
            r = client.send({"sender": "ACME", "message": "dup", "phoneNumbers": numbers})
            ids = {m["id"] for m in r.json()["data"]}
            got = rx.wait_for(51, "/dlr", timeout=60)
        finally:
            dlr_stack.sim_config(dlr_duplicate_rate=0.0, dlr_reorder=False)
        time.sleep(2)  # any duplicate webhook would arrive by now
        per_message = Counter(json.loads(q.body)["id"] for q in rx.requests("/dlr"))
        assert set(per_message) == ids | {mid}
        assert max(per_message.values()) == 1, "a final status produced two webhooks"
        assert len(got) >= 51
