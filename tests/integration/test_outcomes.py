"""Retry then success, permanent rejects, expiry, validation and access over real processes."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from tests.support.stack import Stack, wait_until

pytestmark = pytest.mark.integration


def _events(client, message_id: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [e["kind"] for e in client.get(message_id)["events"]]


def test_retry_then_success(stack: Stack) -> None:
    client = stack.account()
    stack.sim_config(error_rate=1.0)
    try:
        r = client.send({"sender": "ACME", "message": "retry me", "phoneNumbers": ["+48111222001"]})
        mid = r.json()["data"][0]["id"]
        wait_until(lambda: "attempt_failed" in _events(client, mid), 20, what="failed attempt")
        assert client.status(mid) in ("retrying", "queued", "sending")
    finally:
        stack.sim_config(error_rate=0.0)
    wait_until(lambda: client.status(mid) == "sent", 30, what="sent after retry")
    view = client.get(mid)
    assert view["carrier"]["attempts"] >= 2
    assert sum(1 for s in stack.sim_submits() if s["ref"] == mid) == 1


def test_permanent_reject(stack: Stack) -> None:
    client = stack.account()
    stack.sim_config(reject_prefixes=["+48699"])
    try:
        r = client.send({"sender": "ACME", "message": "no", "phoneNumbers": ["+48699000001"]})
        mid = r.json()["data"][0]["id"]
        wait_until(lambda: client.status(mid) == "rejected", 20, what="rejected")
    finally:
        stack.sim_config(reject_prefixes=[])
    view = client.get(mid)
    assert view["isFinal"] and view["error"]["permanent"] is True
    assert view["error"]["code"] == "unknown_subscriber"
    assert view["carrier"]["attempts"] == 1


def test_expired_message_is_never_sent(stack: Stack) -> None:
    """A message whose validity lapses while it waits is expired by the worker, not sent."""
    client = stack.account()
    stack.stop("worker-bulk")
    try:
        r = client.send({"sender": "ACME", "message": "late", "phoneNumbers": ["+48111222002"]})
        mid = r.json()["data"][0]["id"]
        engine = stack.db()
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE messages SET valid_until = :t WHERE id = :i"),
                {"t": time.time() - 1, "i": mid},
            )
        engine.dispose()
    finally:
        stack.start_worker("bulk", 2)
    wait_until(lambda: client.status(mid) == "expired", 20, what="expired")
    assert not [s for s in stack.sim_submits() if s["ref"] == mid]
    assert client.get(mid)["error"]["code"] == "validity_expired"


def test_scheduled_message_waits_then_sends(stack: Stack) -> None:
    client = stack.account()
    at = int(time.time()) + 3
    r = client.send(
        {"sender": "ACME", "message": "later", "phoneNumbers": ["+48111222003"], "scheduleTime": at}
    )
    msg = r.json()["data"][0]
    assert msg["statusName"] == "scheduled"
    time.sleep(1)
    assert client.status(msg["id"]) == "scheduled"
    wait_until(lambda: client.status(msg["id"]) == "sent", 20, what="scheduled send")
    sub = next(s for s in stack.sim_submits() if s["ref"] == msg["id"])
    assert sub["at"] >= at - 0.05


def test_partial_success(stack: Stack) -> None:
    client = stack.account()
    r = client.send(
        {
            "sender": "ACME",
            "message": "hi",
            "phoneNumbers": ["+48111222004", "not-a-number", "+48111222004", "+1"],
        }
    )
    assert r.status_code == 200
    body = r.json()
    assert [m["phoneNumber"] for m in body["data"]] == ["+48111222004"]
    codes = [(e["code"], e["meta"]["source"]) for e in body["errors"]]
    assert codes == [
        ("invalid_phone_number", "phoneNumbers[1]"),
        ("duplicate_phone_number", "phoneNumbers[2]"),
        ("invalid_phone_number", "phoneNumbers[3]"),
    ]
    assert body["meta"]["sentSms"] == 1 and body["meta"]["notSentSms"] == 3


def test_nothing_valid_is_refused_and_nothing_stored(stack: Stack) -> None:
    client = stack.account()
    r = client.send({"sender": "ACME", "message": "hi", "phoneNumbers": ["123", "abc"]})
    assert r.status_code == 400
    assert {e["code"] for e in r.json()["errors"]} == {
        "invalid_phone_number",
        "no_valid_recipients",
    }
    assert client.http.get("/v2.1/sms").status_code == 404  # nothing stored


@pytest.mark.parametrize(
    ("patch", "code", "parameter"),
    [
        ({"sender": "THIS-IS-TOO-LONG"}, "invalid_sender", "sender"),
        ({"message": ""}, "empty_message", "message"),
        ({"message": "x" * 1531}, "message_too_long", "message"),
        ({"validity": 4321}, "invalid_validity", "validity"),
        ({"validity": 0}, "invalid_validity", "validity"),
        ({"scheduleTime": 4102444800}, "invalid_schedule_time", "scheduleTime"),
        ({"type": 2}, "invalid_type", "type"),
        ({"shortLink": True}, "short_link_unsupported", "shortLink"),
        ({"webhookUrl": "ftp://x"}, "invalid_webhook_url", "webhookUrl"),
        ({"externalId": ""}, "invalid_external_id", "externalId"),
        ({"phoneNumbers": []}, "missing_field", "phoneNumbers"),
        ({"phoneNumbers": ["+48111222333"] * 10_001}, "too_many_recipients", "phoneNumbers"),
        ({"phoneNumbers": "+48111222333"}, "invalid_field", "phoneNumbers"),
        ({"validity": "soon"}, "invalid_field", "validity"),
        ({"sender": None}, "invalid_field", "sender"),
    ],
)
def test_validation_errors_name_the_field(
    stack: Stack, patch: dict, code: str, parameter: str
) -> None:
    client = stack.account(priority=False)
    body = {"sender": "ACME", "message": "hi", "phoneNumbers": ["+48111222333"], **patch}
    r = client.send(body)
    assert r.status_code == 400, r.text
    errors = r.json()["errors"]
    assert errors[0]["code"] == code and errors[0]["meta"]["parameter"] == parameter
    assert r.json()["meta"]["uniqId"]


def test_missing_fields_and_bad_bodies(stack: Stack) -> None:
    client = stack.account()
    r = client.send({"message": "hi"})
    assert r.status_code == 400
    assert {e["meta"]["parameter"] for e in r.json()["errors"]} == {"sender", "phoneNumbers"}
    r = client.http.post(
        "/v2.1/sms", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "invalid_json"
    r = client.http.post(
        "/v2.1/sms", content=b"[1,2]", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "invalid_json"
    r = client.http.post(
        "/v2.1/sms", content=b"\xff\xfe{}", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    r = client.http.post("/v2.1/sms", content=b"sender=x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and r.json()["errors"][0]["code"] == "unsupported_media_type"
    r = client.http.post(
        "/v2.1/sms", content=b"x" * 2_000_000, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 413 and r.json()["errors"][0]["code"] == "payload_too_large"
    nested = b"[" * 100_000 + b"]" * 100_000
    r = client.http.post("/v2.1/sms", content=nested, headers={"Content-Type": "application/json"})
    assert r.status_code == 400


def test_priority_needs_the_add_on(stack: Stack) -> None:
    client = stack.account(priority=False)
    r = client.send(
        {"sender": "ACME", "message": "hi", "phoneNumbers": ["+48111222333"], "priority": True}
    )
    assert r.status_code == 403 and r.json()["errors"][0]["code"] == "priority_not_enabled"


def test_many_recipients_go_to_bulk_even_when_priority_asked(stack: Stack) -> None:
    client = stack.account()
    numbers = [f"+4811122{i:04d}" for i in range(11)]
    r = client.send({"sender": "ACME", "message": "hi", "phoneNumbers": numbers, "priority": True})
    assert r.status_code == 200 and r.json()["meta"]["lane"] == "bulk"


def test_unauthenticated_and_cross_account(stack: Stack) -> None:
    a = stack.account()
    b = stack.account()
    body = {"sender": "ACME", "message": "hi", "phoneNumbers": ["+48111222005"]}
    for headers in (
        {},
        {"Application-Key": a.keys["Application-Key"]},
        {"Application-Key": a.keys["Application-Key"], "Authorization": "wrong"},
        {"Application-Key": "wrong", "Authorization": a.keys["Authorization"]},
    ):
        import httpx

        r = httpx.post(stack.api_url + "/v2.1/sms", json=body, headers=headers)
        assert r.status_code == 401 and r.json()["errors"][0]["code"] == "unauthorized"
        assert httpx.get(stack.api_url + "/v2.1/sms", headers=headers).status_code == 401
    mid = a.send(body).json()["data"][0]["id"]
    ext = a.get(mid)["externalId"]
    assert b.http.get(f"/v2.1/sms/{mid}").status_code == 404
    assert b.http.get("/v2.1/sms", params={"externalId": ext}).status_code == 404
    assert b.http.get("/v2.1/sms/statuses", params={"externalId": ext}).status_code == 404
    assert a.http.get("/v2.1/sms/statuses", params={"externalId": ext}).status_code == 200


def test_idempotency(stack: Stack) -> None:
    client = stack.account()
    body = {
        "sender": "ACME",
        "message": "once",
        "phoneNumbers": ["+48111222006"],
        "externalId": "order-77",
    }
    first = client.send(body).json()["data"][0]["id"]
    again = client.send(body).json()
    assert again["data"][0]["id"] == first and again["meta"]["duplicate"] is True
    b2 = {"sender": "ACME", "message": "key", "phoneNumbers": ["+48111222007"]}
    k1 = client.send(b2, **{"Idempotency-Key": "k-1"}).json()["data"][0]["id"]
    assert client.send(b2, **{"Idempotency-Key": "k-1"}).json()["data"][0]["id"] == k1
    r = client.send({**b2, "message": "other"}, **{"Idempotency-Key": "k-1"})
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "idempotency_key_reused"
    wait_until(lambda: client.status(first) == "sent" and client.status(k1) == "sent", 20)
    refs = [s["ref"] for s in stack.sim_submits()]
    assert refs.count(first) == 1 and refs.count(k1) == 1


def test_listing_filters(stack: Stack) -> None:
    client = stack.account()
    ids = [
        client.send(
            {"sender": f"S{i}", "message": "x", "phoneNumbers": [f"+4811133300{i}"]}
        ).json()["data"][0]["id"]
        for i in range(3)
    ]
    r = client.http.get("/v2.1/sms", params={"phoneNumber": "0048 111 333 001"})
    assert [m["id"] for m in r.json()["data"]] == [ids[1]]
    r = client.http.get(
        "/v2.1/sms", params={"sender": "S0,S2", "orderBy": "createTime", "orderDirection": "ASC"}
    )
    assert [m["id"] for m in r.json()["data"]] == [ids[0], ids[2]]
    r = client.http.get("/v2.1/sms", params={"limit": 1})
    assert len(r.json()["data"]) == 1 and r.json()["meta"]["total"] == 3
    assert client.http.get("/v2.1/sms", params={"limit": 1001}).status_code == 400
    assert client.http.get("/v2.1/sms", params={"status": "bogus"}).status_code == 400
    assert client.http.get("/v2.1/sms", params={"dateFrom": "yesterday"}).status_code == 400
