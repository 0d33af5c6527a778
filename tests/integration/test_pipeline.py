"""The core path over real processes: API → Redis → worker pools → simulator → log."""

from __future__ import annotations

import time

import pytest

from tests.support.stack import Stack, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.pgbouncer]


def test_message_is_sent_and_visible(stack: Stack) -> None:
    client = stack.account()
    r = client.send({"sender": "ACME", "message": "Hello", "phoneNumbers": ["+48111222333"]})
    assert r.status_code == 200, r.text
    body = r.json()
    msg = body["data"][0]
    assert msg["statusName"] == "queued" and msg["phoneNumber"] == "+48111222333"
    assert body["meta"]["sentSms"] == 1 and body["errors"] == []
    wait_until(lambda: client.status(msg["id"]) == "sent", 20, what="sent")
    view = client.get(msg["id"])
    assert view["status"] == 3 and view["carrier"]["messageId"]
    kinds = [e["kind"] for e in view["events"]]
    assert kinds == ["accepted", "queued", "sent"], kinds
    sent_event = view["events"][-1]["detail"]
    assert sent_event["carrier_message_id"] == view["carrier"]["messageId"]
    assert sent_event["http_status"] == 200 and sent_event["latency_ms"] > 0
    submits = [s for s in stack.sim_submits() if s["ref"] == msg["id"]]
    assert len(submits) == 1 and submits[0]["to"] == "+48111222333"
    listed = client.http.get("/v2.1/sms", params={"externalId": msg["externalId"]}).json()
    assert [m["id"] for m in listed["data"]] == [msg["id"]]
    assert listed["data"][0]["statusName"] == "sent"


def test_otp_overtakes_bulk_backlog(stack: Stack) -> None:
    """20,000 bulk messages queued first; an OTP sent after them arrives long before they end."""
    client = stack.account()
    t0 = time.time()
    for batch in range(2):
        numbers = [f"+4860{batch}{i:06d}" for i in range(10_000)]
        r = client.send({"sender": "Shop", "message": "Sale today", "phoneNumbers": numbers})
        assert r.status_code == 200 and r.json()["meta"]["sentSms"] == 10_000
    accepted = time.time()
    r = client.send(
        {
            "sender": "Bank",
            "message": "Code 123456",
            "phoneNumbers": ["+48111000111"],
            "priority": True,
        }
    )
    assert r.status_code == 200 and r.json()["meta"]["lane"] == "priority"
    otp_id = r.json()["data"][0]["id"]

    def otp_at() -> float | None:
        for s in stack.sim_submits():
            if s["ref"] == otp_id:
                return float(s["at"])
        return None

    otp_received = wait_until(otp_at, 30, what="OTP at carrier")
    wait_until(
        lambda: stack.sim_stats()["unique_refs"] >= 20_001, 120, interval=0.5, what="bulk drained"
    )
    bulk_last = max(float(s["at"]) for s in stack.sim_submits() if s["ref"] != otp_id)
    bulk_before_otp = sum(1 for s in stack.sim_submits() if float(s["at"]) < otp_received)
    print(
        f"\nOTP accept→carrier {1000 * (otp_received - accepted):.0f} ms; "
        f"bulk drained {bulk_last - t0:.1f} s after the first bulk request; "
        f"{bulk_before_otp} bulk messages reached the carrier before the OTP"
    )
    assert otp_received < bulk_last - 1.0
    assert otp_received - accepted < 2.0
