"""The two-way and opt-out API (``/v2.1/sms/inbound``, ``/v2.1/numbers``,
``/v2.1/suppressions``) through the real FastAPI app on a migrated database, and the
``smsdispatch numbers`` commands."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dispatcher.accounts.account import create_account
from dispatcher.api.app import build_context, create_app
from dispatcher.cli.numbers import dedicated_number, register
from dispatcher.config import Settings
from dispatcher.store.db import make_engine
from dispatcher.store.numbers import NumberKind, add_number
from tests.support.services import fresh_database, fresh_redis
from workers.connectors.callbacks import parse_simple_inbound
from workers.inbound import apply_inbound

PHONE = "+48600111222"


@pytest.fixture
def db_url() -> Iterator[str]:
    with fresh_database() as url:
        yield url


class World:
    """Two accounts (A with the priority add-on and two numbers, B with one) and clients."""

    def __init__(self, db_url: str, a: TestClient, b: TestClient, anon: TestClient) -> None:
        self.db_url = db_url
        self.a, self.b, self.anon = a, b, anon

    def inbound(self, items: list[dict[str, Any]], at: float | None = None) -> None:
        engine = make_engine(self.db_url)
        try:
            apply_inbound(engine, parse_simple_inbound, "default", items, time.time(), at)
        finally:
            engine.dispose()


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    engine = make_engine(db_url)
    acct_a, keys_a = create_account(engine, "alpha", priority=True, sender_policy="open")
    acct_b, keys_b = create_account(engine, "beta")
    with engine.begin() as conn:
        add_number(conn, "4321", acct_a.id, "short_code", 1.0)
        add_number(conn, "+48500100200", acct_a.id, "long_number", 2.0)
        add_number(conn, "5555", acct_b.id, "short_code", 3.0)
    engine.dispose()
    with fresh_redis() as redis_url:
        settings = Settings.from_env({}, database_url=db_url, redis_url=redis_url)
        app = create_app(settings, build_context(settings))
        with TestClient(app) as http:
            headers = [
                {"Application-Key": k.application_key, "Authorization": k.authorization}
                for k in (keys_a, keys_b)
            ]
            a = TestClient(app, headers=headers[0])
            b = TestClient(app, headers=headers[1])
            yield World(db_url, a, b, http)


def mo(i: int, text: str, to: str = "4321", frm: str = PHONE) -> dict[str, Any]:
    return {"id": f"c-{i}", "from": frm, "to": to, "text": text}


def test_inbound_listing(world: World) -> None:
    world.inbound([mo(1, "first")], at=1_700_000_000.0)
    world.inbound([mo(2, "second", to="48500100200", frm="+48600999888")], at=1_700_000_100.0)
    world.inbound([mo(3, "for beta", to="5555")], at=1_700_000_200.0)

    r = world.a.get("/v2.1/sms/inbound")
    assert r.status_code == 200, r.text
    body = r.json()
    assert [m["message"] for m in body["data"]] == ["second", "first"]
    assert body["meta"]["total"] == 2 and body["meta"]["limit"] == 100
    first = body["data"][1]
    assert first == {
        "id": first["id"],
        "phoneNumber": PHONE,
        "number": "4321",
        "message": "first",
        "numberOfParts": 1,
        "receiveTime": 1700000000,
        "receivedAt": "2023-11-14T22:13:20.000Z",
        "keyword": None,
    }

    def messages(**params: Any) -> list[str]:
        resp = world.a.get("/v2.1/sms/inbound", params=params)
        return [m["message"] for m in resp.json()["data"]] if resp.status_code == 200 else []

    assert messages(phoneNumber="+48 600 111 222") == ["first"]
    assert messages(number="+48500100200") == ["second"]
    assert messages(number="48500100200,4321", orderDirection="ASC") == ["first", "second"]
    assert messages(dateFrom="2023-11-14T22:14:00Z") == ["second"]
    assert messages(dateTo="1700000050") == ["first"]
    assert messages(offset=1, limit=1) == ["first"]

    empty = world.a.get("/v2.1/sms/inbound", params={"number": "9999"})
    assert empty.status_code == 404 and empty.json()["errors"][0]["code"] == "no_results"
    bad = world.a.get("/v2.1/sms/inbound", params={"phoneNumber": "abc"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["code"] == "invalid_query"
    too_many = world.a.get("/v2.1/sms/inbound", params={"limit": 1001})
    assert too_many.status_code == 400
    assert world.a.get("/v2.1/sms/inbound", params={"dateFrom": "yesterday"}).status_code == 400

    beta = world.b.get("/v2.1/sms/inbound").json()
    assert [m["message"] for m in beta["data"]] == ["for beta"]
    assert world.anon.get("/v2.1/sms/inbound").status_code == 401


def test_numbers_listing(world: World) -> None:
    r = world.a.get("/v2.1/numbers")
    assert r.status_code == 200
    assert [(n["number"], n["kind"]) for n in r.json()["data"]] == [
        ("+48500100200", "long_number"),
        ("4321", "short_code"),
    ]
    assert [n["number"] for n in world.b.get("/v2.1/numbers").json()["data"]] == ["5555"]
    assert world.anon.get("/v2.1/numbers").status_code == 401


def test_suppressions_list_and_delete(world: World) -> None:
    world.inbound([mo(1, "STOP"), mo(2, "stop", frm="+48600999888")])
    r = world.a.get("/v2.1/suppressions")
    assert r.status_code == 200
    data = r.json()["data"]
    assert {s["phoneNumber"] for s in data} == {PHONE, "+48600999888"}
    assert data[0]["source"] == "keyword" and data[0]["keyword"] == "STOP"
    assert r.json()["meta"]["total"] == 2
    one = world.a.get("/v2.1/suppressions", params={"limit": 1, "offset": 1}).json()
    assert one["meta"]["numberOfData"] == 1
    only = world.a.get("/v2.1/suppressions", params={"phoneNumber": "0048 600 111 222"})
    assert [s["phoneNumber"] for s in only.json()["data"]] == [PHONE]

    other = world.b.get("/v2.1/suppressions")
    assert other.status_code == 404 and other.json()["errors"][0]["code"] == "no_results"
    assert world.b.delete("/v2.1/suppressions/" + PHONE).status_code == 404  # not B's

    gone = world.a.delete("/v2.1/suppressions/+48 600 111 222")
    assert gone.status_code == 200, gone.text
    assert gone.json()["data"][0]["phoneNumber"] == PHONE
    again = world.a.delete("/v2.1/suppressions/" + PHONE)
    assert again.status_code == 404 and again.json()["errors"][0]["code"] == "not_found"
    bad = world.a.delete("/v2.1/suppressions/not-a-number")
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["code"] == "invalid_phone_number"
    assert world.anon.delete("/v2.1/suppressions/" + PHONE).status_code == 401


def test_opted_out_number_refused_for_bulk_not_priority(world: World) -> None:
    world.inbound([mo(1, "Stop!")], at=10.0)
    send = {"sender": "4321", "message": "Sale today", "phoneNumbers": [PHONE, "+48600000001"]}
    r = world.a.post("/v2.1/sms", json=send)
    assert r.status_code == 200, r.text
    assert [m["phoneNumber"] for m in r.json()["data"]] == ["+48600000001"]
    assert r.json()["errors"][0]["code"] == "recipient_opted_out"

    otp = {"sender": "4321", "message": "Code 1234", "phoneNumbers": [PHONE], "priority": True}
    r = world.a.post("/v2.1/sms", json=otp)
    assert r.status_code == 200 and r.json()["meta"]["lane"] == "priority"

    world.inbound([mo(2, "START")], at=20.0)
    r = world.a.post("/v2.1/sms", json={**send, "phoneNumbers": [PHONE]})
    assert r.status_code == 200 and r.json()["data"][0]["phoneNumber"] == PHONE


def test_inbound_route_is_not_shadowed_by_message_lookup(world: World) -> None:
    """In the app as ``create_app`` builds it, ``/v2.1/sms/inbound`` is the listing (empty
    here: no_results), not the lookup of a message whose id is "inbound" (not_found)."""
    r = world.a.get("/v2.1/sms/inbound")
    assert r.status_code == 404 and r.json()["errors"][0]["code"] == "no_results", r.text


# -- smsdispatch numbers ----------------------------------------------------------------------


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    rc: int = args.func(args)
    return rc


def test_numbers_cli(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("SMSDISPATCH_LOG_FORMAT", "console")
    engine = make_engine(db_url)
    create_account(engine, "shop")
    create_account(engine, "other")
    engine.dispose()

    def out() -> Any:
        return json.loads(capsys.readouterr().out)

    assert run_cli(["numbers", "add", "4321", "--account", "shop"]) == 0
    assert out() == {"number": "4321", "kind": "short_code", "account": "shop"}
    assert run_cli(["numbers", "add", "+48 500 100 200", "--account", "shop"]) == 0
    assert out()["number"] == "+48500100200"
    assert run_cli(["numbers", "add", "12345", "--account", "other", "--kind", "long_number"]) == 4
    assert run_cli(["numbers", "add", "4321", "--account", "other"]) == 1
    assert "already assigned to account shop" in capsys.readouterr().err
    assert run_cli(["numbers", "add", "7777", "--account", "nobody"]) == 1
    capsys.readouterr()

    assert run_cli(["numbers", "list", "--account", "shop"]) == 0
    assert [n["number"] for n in out()] == ["+48500100200", "4321"]
    assert run_cli(["numbers", "remove", "48 500 100 200"]) == 1  # no + : national, unassigned
    capsys.readouterr()
    assert run_cli(["numbers", "remove", "+48 500 100 200"]) == 0
    assert out() == {"removed": "+48500100200"}
    assert run_cli(["numbers", "list"]) == 0
    assert out() == [{"number": "4321", "kind": "short_code", "account": "shop"}]


@pytest.mark.parametrize(
    ("raw", "kind", "expected"),
    [
        ("4321", None, ("4321", NumberKind.SHORT_CODE)),
        ("80 80", None, ("8080", NumberKind.SHORT_CODE)),
        ("+48500100200", None, ("+48500100200", NumberKind.LONG_NUMBER)),
        ("0048 500 100 200", "long_number", ("+48500100200", NumberKind.LONG_NUMBER)),
    ],
)
def test_dedicated_number_forms(raw: str, kind: str | None, expected: tuple[str, Any]) -> None:
    assert dedicated_number(raw, kind, None) == expected


@pytest.mark.parametrize(("raw", "kind"), [("12", "short_code"), ("123456789", "short_code")])
def test_dedicated_number_refused(raw: str, kind: str) -> None:
    with pytest.raises(ValueError):
        dedicated_number(raw, kind, None)
