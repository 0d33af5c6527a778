"""The webhook outbox in the log: deliveries created with the status change, exactly once,
to the right URLs with the documented payload; due/lease/recovery for the scheduler; secrets."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import Engine, insert, select, update

from dispatcher.accounts.account import create_account
from dispatcher.store.schema import accounts, messages, webhook_deliveries
from dispatcher.store.webhooks import (
    create_inbound_webhook,
    create_status_webhooks,
    due_deliveries,
    recover_stale_deliveries,
    signing_secrets,
)

NOW = 1_800_000_000.0


def add_account(engine: Engine, **webhook: Any) -> int:
    """An account with the given ``accounts`` webhook columns."""
    account, _ = create_account(engine, f"acct-{uuid.uuid4().hex[:10]}")
    if webhook:
        with engine.begin() as conn:
            conn.execute(update(accounts).where(accounts.c.id == account.id).values(**webhook))
    return account.id


def add_message(engine: Engine, account_id: int, status: str, **cols: Any) -> str:
    """A message row in ``status`` (other columns as a sender would leave them)."""
    mid = str(uuid.uuid4())
    row = {
        "id": mid,
        "account_id": account_id,
        "submission_id": str(uuid.uuid4()),
        "external_id": f"ext-{mid[:8]}",
        "phone": "+48699000001",
        "sender": "ACME",
        "body": "secret text of the message",
        "parts": 2,
        "encoding": "gsm7",
        "flash": False,
        "lane": "bulk",
        "status": status,
        "created_at": NOW - 10,
        "status_at": NOW - 1.5,
        "valid_until": NOW + 3600,
        "attempts": 1,
    }
    row.update(cols)
    with engine.begin() as conn:
        conn.execute(insert(messages).values(**row))
    return mid


def deliveries(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(webhook_deliveries).order_by(webhook_deliveries.c.created_at))
        return [dict(r._mapping) for r in rows]


def create(engine: Engine, ids: list[str], now: float = NOW) -> int:
    with engine.begin() as conn:
        return create_status_webhooks(conn, ids, now)


def test_final_status_creates_one_signed_payload(engine: Engine) -> None:
    acct = add_account(engine, webhook_url="https://a.example/h", webhook_url_secondary=None)
    mid = add_message(
        engine,
        acct,
        "rejected",
        error_code="unknown_subscriber",
        error_description="no such number",
        error_permanent=True,
    )
    assert create(engine, [mid]) == 1
    (d,) = deliveries(engine)
    assert (d["message_id"], d["event"], d["status_key"]) == (mid, "message.status", "rejected")
    assert (d["url"], d["url_secondary"], d["state"]) == ("https://a.example/h", None, "pending")
    assert d["next_attempt_at"] == NOW and d["attempts"] == 0
    payload = json.loads(d["payload"])
    assert payload == {
        "type": "message.status",
        "id": mid,
        "externalId": f"ext-{mid[:8]}",
        "phoneNumber": "+48699000001",
        "sender": "ACME",
        "status": "Rejected",
        "statusName": "rejected",
        "statusCode": 9,
        "isFinal": True,
        "statusTime": "2027-01-15T07:59:58.500Z",
        "numberOfParts": 2,
        "error": {
            "code": "unknown_subscriber",
            "description": "no such number",
            "permanent": True,
        },
    }
    assert "secret text" not in d["payload"]  # the message body is never in a webhook


def test_repeat_is_a_no_op_and_each_final_status_gets_its_own(engine: Engine) -> None:
    acct = add_account(engine, webhook_url="https://a.example/h")
    mid = add_message(engine, acct, "expired", error_code="report_timeout")
    assert create(engine, [mid, mid]) == 1
    assert create(engine, [mid]) == 0
    with engine.begin() as conn:
        conn.execute(update(messages).where(messages.c.id == mid).values(status="delivered"))
    assert create(engine, [mid]) == 1
    assert [d["status_key"] for d in deliveries(engine)] == ["expired", "delivered"]
    assert json.loads(deliveries(engine)[1]["payload"])["status"] == "Delivered"


def test_urls_message_url_first_then_account_with_secondary(engine: Engine) -> None:
    acct = add_account(
        engine, webhook_url="https://main.example/h", webhook_url_secondary="https://b.example/h"
    )
    own = add_message(engine, acct, "failed", webhook_url="https://own.example/h")
    plain = add_message(engine, acct, "undelivered")
    assert create(engine, [own, plain]) == 2
    by_msg = {d["message_id"]: d for d in deliveries(engine)}
    assert (by_msg[own]["url"], by_msg[own]["url_secondary"]) == (
        "https://own.example/h",
        "https://b.example/h",
    )
    assert (by_msg[plain]["url"], by_msg[plain]["url_secondary"]) == (
        "https://main.example/h",
        "https://b.example/h",
    )


def test_no_url_non_final_and_sent_without_the_option_create_nothing(engine: Engine) -> None:
    bare = add_account(engine)
    hooked = add_account(engine, webhook_url="https://a.example/h")
    ids = [
        add_message(engine, bare, "rejected"),
        add_message(engine, hooked, "queued"),
        add_message(engine, hooked, "sending"),
        add_message(engine, hooked, "sent"),
    ]
    assert create(engine, ids) == 0
    assert deliveries(engine) == []


def test_sent_when_the_account_asks(engine: Engine) -> None:
    acct = add_account(engine, webhook_url="https://a.example/h", webhook_on_sent=True)
    mid = add_message(engine, acct, "sent")
    assert create(engine, [mid]) == 1
    payload = json.loads(deliveries(engine)[0]["payload"])
    assert (payload["status"], payload["isFinal"], payload["error"]) == ("Sent", False, None)


def test_inbound_webhook(engine: Engine) -> None:
    acct = add_account(
        engine,
        webhook_url="https://main.example/h",
        inbound_webhook_url="https://in.example/h",
        inbound_webhook_url_secondary="https://in2.example/h",
    )
    fallback = add_account(engine, webhook_url="https://main.example/f")
    bare = add_account(engine)
    inbound = {
        "id": "in-1",
        "account_id": acct,
        "phone": "+48600100200",
        "number": "+48500600700",
        "body": "STOP",
        "parts": 1,
        "received_at": NOW,
        "keyword": "STOP",
    }
    with engine.begin() as conn:
        did = create_inbound_webhook(conn, inbound, NOW)
        assert did is not None
        assert create_inbound_webhook(conn, inbound, NOW) is None  # once
        assert (
            create_inbound_webhook(conn, {**inbound, "id": "in-2", "account_id": bare}, NOW) is None
        )
        other = create_inbound_webhook(conn, {**inbound, "id": "in-3", "account_id": fallback}, NOW)
    by_id = {d["id"]: d for d in deliveries(engine)}
    d = by_id[did]
    assert (d["url"], d["url_secondary"], d["event"]) == (
        "https://in.example/h",
        "https://in2.example/h",
        "message.inbound",
    )
    assert json.loads(d["payload"]) == {
        "type": "message.inbound",
        "id": "in-1",
        "from": "+48600100200",
        "to": "+48500600700",
        "text": "STOP",
        "parts": 1,
        "receivedAt": "2027-01-15T08:00:00.000Z",
        "keyword": "STOP",
    }
    assert other is not None and by_id[other]["url"] == "https://main.example/f"


def test_due_deliveries_lease_and_recovery(engine: Engine) -> None:
    acct = add_account(engine, webhook_url="https://a.example/h")
    ids = [add_message(engine, acct, "rejected") for _ in range(3)]
    create(engine, ids[:2], now=NOW)
    create(engine, ids[2:], now=NOW + 100)  # not due yet
    with engine.begin() as conn:
        due = due_deliveries(conn, NOW + 1, lease_s=30, limit=500)
    assert len(due) == 2
    with engine.begin() as conn:
        assert due_deliveries(conn, NOW + 2) == []  # queued: not published twice
        assert recover_stale_deliveries(conn, NOW + 30) == 0  # lease still running
    with engine.begin() as conn:
        assert recover_stale_deliveries(conn, NOW + 31.5) == 2  # task lost: back to pending
        again = due_deliveries(conn, NOW + 32, limit=1)
        assert len(again) == 1 and again[0] in due
        assert set(due_deliveries(conn, NOW + 101)) == {d["id"] for d in deliveries(engine)} - set(
            again
        )


def test_signing_secrets_created_once_and_rotation_overlap(engine: Engine) -> None:
    acct = add_account(engine)
    with engine.begin() as conn:
        first = signing_secrets(conn, [acct], NOW)[acct]
    with engine.begin() as conn:
        assert signing_secrets(conn, [acct, acct], NOW)[acct] == first
    assert len(first) == 1 and first[0].startswith("whsec_")
    with engine.begin() as conn:
        conn.execute(
            update(accounts)
            .where(accounts.c.id == acct)
            .values(
                webhook_secret="whsec_bmV3bmV3bmV3bmV3bmV3bmV3bmV3bmV3",
                webhook_secret_previous=first[0],
                webhook_secret_previous_until=NOW + 60,
            )
        )
        assert signing_secrets(conn, [acct], NOW)[acct] == [
            "whsec_bmV3bmV3bmV3bmV3bmV3bmV3bmV3bmV3",
            first[0],
        ]
        assert len(signing_secrets(conn, [acct], NOW + 61)[acct]) == 1


def test_times_are_iso_utc_with_milliseconds_as_the_api_writes_them() -> None:
    from dispatcher.times import iso_ms

    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"
    assert iso_ms(1764175512.345) == "2025-11-26T16:45:12.345Z"
    # Rounded to the millisecond, carrying into the next second.
    assert iso_ms(1764175512.9996) == "2025-11-26T16:45:13.000Z"
