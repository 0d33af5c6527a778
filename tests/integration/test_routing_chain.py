"""Two smsdispatch stacks chained over the ``messageflow`` connector (issue 5).

A's customer sends to A; A relays to B's MessageFlow v2.1 API (``POST /v2.1/sms``, B's account
keys from the environment); B sends to its simulator; the simulator's delivery report reaches
B; B's signed ``message.status`` webhook goes to A's ``/carrier/upstream-b/reports`` (verified
with the connection's webhook secret and turned into a report); A applies it and its own
customer gets the final status by webhook. ``docs/routing.md`` describes the set-up.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import update

from dispatcher.store import webhook_settings as admin
from dispatcher.store.schema import accounts
from tests.support.receiver import Receiver
from tests.support.stack import running_stack, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONFIG = """
[[connections]]
name = "upstream-b"
type = "messageflow"
url = "{url}"
tps = 100
batch_size = 10
timeout_s = 2
destinations = ["+48"]
application_key_env = "H2_B_APPLICATION_KEY"
authorization_env = "H2_B_AUTHORIZATION"
webhook_secret_env = "H2_B_WEBHOOK_SECRET"
lookups = true
"""

FINAL = {"delivered", "undelivered", "expired", "rejected", "failed"}


def _set_webhook(db: Any, account_id: int, url: str) -> str | None:
    with db.begin() as conn:
        conn.execute(update(accounts).where(accounts.c.id == account_id).values(webhook_url=url))
        secret = admin.ensure_secret(conn, account_id) or admin.current_secret(conn, account_id)
    db.dispose()
    return secret


@pytest.fixture
def rx() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def test_a_relays_to_b_and_the_report_flows_back(tmp_path: Any, rx: Receiver) -> None:
    hooks = {"workers": {"bulk": 1, "dlr": 1, "webhooks": 1}, "webhook_allow_private": 1}
    with running_stack(carrier_callback_token="b-sim-token", **hooks) as b:  # type: ignore[arg-type]
        relay = b.account("relay-for-a", priority=False)
        b_secret = _set_webhook(b.db(), relay.account_id, "http://127.0.0.1:9/not-yet")
        assert b_secret
        path = tmp_path / "connections.toml"
        path.write_text(CONFIG.format(url=b.api_url))
        os.environ.update(
            H2_B_APPLICATION_KEY=relay.keys["Application-Key"],
            H2_B_AUTHORIZATION=relay.keys["Authorization"],
            H2_B_WEBHOOK_SECRET=b_secret,
        )
        try:
            with running_stack(connections=str(path), **hooks) as a:  # type: ignore[arg-type]
                # B reports to A's carrier endpoint for this connection.
                _set_webhook(b.db(), relay.account_id, a.api_url + "/carrier/upstream-b/reports")
                customer = a.account("customer", priority=False)
                _set_webhook(a.db(), customer.account_id, rx.url("/customer"))
                numbers = ["+48501000001", "+48501000002", "+48601000003"]
                r = customer.send({"sender": "Shop", "message": "via B", "phoneNumbers": numbers})
                assert r.status_code == 200, r.text
                ids = {d["phoneNumber"]: d["id"] for d in r.json()["data"]}
                # Every message ends final at A, with the status B's carrier reported.
                wait_until(
                    lambda: all(customer.status(i) in FINAL for i in ids.values()),
                    60,
                    interval=0.5,
                    what="final at A",
                )
                hooks_got = rx.wait_for(len(ids), "/customer", timeout=60)
                for phone, mid in ids.items():
                    at_a = customer.get(mid)
                    assert at_a["statusName"] != "failed", at_a
                    b_id = next(
                        e["detail"]["carrier_message_id"]
                        for e in at_a["events"]
                        if e["kind"] == "sent"
                    )
                    at_b = relay.get(b_id)  # B's message relaying A's: same number, same fate
                    assert at_b["phoneNumber"] == phone
                    assert at_b["statusName"] == at_a["statusName"]
                    sent = [e for e in at_a["events"] if e["kind"] == "sent"]
                    assert sent[-1]["detail"]["connection"] == "upstream-b"
                payloads = [json.loads(h.body) for h in hooks_got]
                assert {p["id"] for p in payloads} == set(ids.values())
                assert all(p["statusName"] in FINAL for p in payloads)
                # Number look-ups go through B's POST /v2.1/sms/hlr to B's simulator.
                r = customer.http.post("/v2.1/sms/hlr", json={"phone": "+48501000001"})
                assert r.status_code == 200, r.text
                (found,) = r.json()["data"]
                assert (found["connection"], found["valid"], found["country"]) == (
                    "upstream-b",
                    True,
                    "PL",
                )
                assert found["network"] == {"mcc": "260", "mnc": "02", "name": "Simulated PL 02"}
                # A bad signature on A's report endpoint is refused.
                import httpx

                bad = httpx.post(
                    a.api_url + "/carrier/upstream-b/reports",
                    content=b'{"type":"message.status"}',
                    headers={
                        "webhook-id": "x",
                        "webhook-timestamp": "1",
                        "webhook-signature": "v1,AAAA",
                    },
                )
                assert bad.status_code == 401, bad.text
        finally:
            for k in ("H2_B_APPLICATION_KEY", "H2_B_AUTHORIZATION", "H2_B_WEBHOOK_SECRET"):
                os.environ.pop(k, None)
