"""Sender names (issue 16): requested through the API or the CLI, approved or rejected by the
operator with the CLI, enforced at send time by the account's policy.

The real app (every middleware, the fast send path) on a migrated database and a real Redis;
the operator's commands are the real ``smsdispatch`` CLI against the same database.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import time
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text

from dispatcher.accounts.account import create_account, find_account
from dispatcher.api.app import build_context, create_app
from dispatcher.cli.main import main
from dispatcher.config import Settings
from dispatcher.intake.enqueue import Producer
from dispatcher.intake.submit import RequestRefused
from dispatcher.store.db import make_engine
from dispatcher.store.migrate import alembic_config
from dispatcher.store.numbers import NumberKind, add_number
from dispatcher.store.schema import messages
from dispatcher.store.senders import SenderPolicy, get_policy
from tests.support.services import fresh_database, fresh_redis

CACHE_S = 0.3  # the API's key cache: decisions that narrow what may send wait this long


class World:
    def __init__(self, http: TestClient, engine: Engine, settings: Settings) -> None:
        self.http = http
        self.engine = engine
        self.settings = settings

    def account(self, policy: str | None) -> dict[str, str]:
        """Keys of a new account made by ``smsdispatch accounts create``."""
        name = f"acct-{time.monotonic_ns()}"
        flags = [] if policy is None else ["--sender-policy", policy]
        out = cli("accounts", "create", name, *flags)
        return {
            "name": name,
            "Application-Key": out["Application-Key"],
            "Authorization": out["Authorization"],
        }

    def send(self, keys: dict[str, str], sender: str, phone: str = "+48500100200") -> Any:
        return self.http.post(
            "/v2.1/sms",
            json={"sender": sender, "message": "Your code is 123456", "phoneNumbers": [phone]},
            headers=_auth(keys),
        )

    def stored(self, keys: dict[str, str]) -> int:
        account = find_account(self.engine, keys["name"])
        assert account is not None
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).where(messages.c.account_id == account.id)
                ).scalar_one()
            )


def _auth(keys: dict[str, str]) -> dict[str, str]:
    return {k: keys[k] for k in ("Application-Key", "Authorization")}


def cli(*argv: str) -> Any:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(list(argv)) == 0
    return json.loads(out.getvalue())


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with fresh_database() as db_url, fresh_redis() as redis_url:
        env = {"DATABASE_URL": db_url, "REDIS_URL": redis_url}
        settings = Settings.from_env({}, **_lower(env), auth_cache_ttl_s=CACHE_S)
        app = create_app(settings, build_context(settings))
        engine = make_engine(db_url)
        with mock.patch.dict(os.environ, env), TestClient(app) as http:
            yield World(http, engine, settings)
        engine.dispose()


def _lower(env: dict[str, str]) -> dict[str, str]:
    return {"database_url": env["DATABASE_URL"], "redis_url": env["REDIS_URL"]}


def refusal(r: Any) -> dict[str, Any]:
    assert r.status_code == 400, r.text
    body = r.json()
    (error,) = body["errors"]
    assert error["code"] == "sender_not_registered"
    assert (error["meta"]["parameter"], error["meta"]["source"]) == ("sender", "sender")
    assert error["docs"] == "/docs/errors#sender-not-registered"
    assert body["data"] == [] and body["meta"]["sentSms"] == 0
    assert body["meta"]["notSentSms"] == 1
    return dict(error)


def test_new_accounts_send_only_from_names_the_operator_approved(world: World) -> None:
    keys = world.account(None)  # the default, as in the original: registered
    assert cli("senders", "policy", keys["name"])["sender_policy"] == "registered"

    error = refusal(world.send(keys, "ACME"))
    assert error["meta"]["value"] == "ACME" and "request it" in error["message"]

    r = world.http.post("/v2.1/sms/senders", json={"sender": " ACME "}, headers=_auth(keys))
    assert r.status_code == 200, r.text
    (entry,) = r.json()["data"]
    assert (entry["sender"], entry["state"], entry["kind"]) == ("ACME", "pending", "name")
    assert r.json()["meta"]["senderPolicy"] == "registered"
    assert "approval" in refusal(world.send(keys, "ACME"))["message"]

    queue = cli("senders", "list", "--state", "pending")
    assert [(q["account"], q["sender"]) for q in queue] == [(keys["name"], "ACME")]
    # Named by the key pair that asked (its id: this account's first pair has no name).
    assert re.fullmatch(r"api:key#\d+", queue[0]["requested_by"]), queue
    decided = cli("senders", "approve", keys["name"], "ACME", "--by", "ops:ann")
    assert (decided["state"], decided["decided_by"]) == ("approved", "ops:ann")

    # At once: the key cache still holds the account as it was before the approval.
    r = world.send(keys, "ACME")
    assert r.status_code == 200, r.text
    assert r.json()["data"][0]["sender"] == "ACME"
    assert refusal(world.send(keys, "OTHER"))["meta"]["value"] == "OTHER"
    assert world.stored(keys) == 1  # the refused sends stored nothing

    cli("senders", "reject", keys["name"], "ACME", "--reason", "not your brand")
    time.sleep(CACHE_S + 0.1)
    assert refusal(world.send(keys, "ACME"))["message"] == "ACME was rejected: not your brand"
    assert world.stored(keys) == 1


def test_the_list_answers_get_and_options_with_every_state(world: World) -> None:
    keys = world.account("registered")
    for name in ("ACME", "Shop 24", "BAD NAME"):
        cli("senders", "request", keys["name"], name)
    cli("senders", "approve", keys["name"], "ACME")
    cli("senders", "reject", keys["name"], "BAD NAME", "--reason", "misleading")
    account = find_account(world.engine, keys["name"])
    assert account is not None
    with world.engine.begin() as conn:
        add_number(conn, "+48500999000", account.id, NumberKind.LONG_NUMBER, time.time())
    for method in ("GET", "OPTIONS"):
        r = world.http.request(method, "/v2.1/sms/senders", headers=_auth(keys))
        assert r.status_code == 200, (method, r.text)
        body = r.json()
        got = [(d["sender"], d["kind"], d["state"], d["reason"]) for d in body["data"]]
        assert got == [
            ("ACME", "name", "approved", None),
            ("Shop 24", "name", "pending", None),
            ("BAD NAME", "name", "rejected", "misleading"),
            ("+48500999000", "number", "approved", None),
        ]
        assert all(isinstance(d["createTime"], int) for d in body["data"])
        assert body["meta"]["senderPolicy"] == "registered"
    assert "OPTIONS" in r.headers["allow"]
    # The account's dedicated number sends, with or without its +.
    assert world.send(keys, "+48500999000").status_code == 200
    assert world.send(keys, "48500999000", "+48500100201").status_code == 200
    unauth = world.http.options("/v2.1/sms/senders")
    assert unauth.status_code == 401


def test_a_refused_request_for_a_name_names_the_field(world: World) -> None:
    keys = world.account("registered")
    r = world.http.post(
        "/v2.1/sms/senders", json={"sender": "Much Too Long Name"}, headers=_auth(keys)
    )
    assert r.status_code == 400
    (error,) = r.json()["errors"]
    assert (error["code"], error["meta"]["parameter"]) == ("invalid_sender", "sender")
    r = world.http.post("/v2.1/sms/senders", json={}, headers=_auth(keys))
    assert r.status_code == 400 and r.json()["errors"][0]["meta"]["parameter"] == "sender"


def test_open_accounts_send_from_any_valid_name(world: World) -> None:
    keys = world.account("open")
    assert world.send(keys, "ANYTHING").status_code == 200
    cli("senders", "policy", keys["name"], "registered")
    time.sleep(CACHE_S + 0.1)
    refusal(world.send(keys, "ANYTHING"))
    cli("senders", "policy", keys["name"], "open")
    time.sleep(CACHE_S + 0.1)
    assert world.send(keys, "ANYTHING").status_code == 200


def test_the_library_producer_applies_the_same_policy(world: World) -> None:
    keys = world.account("registered")
    producer = Producer(world.settings)
    try:
        with pytest.raises(RequestRefused) as refused:
            producer.send_sms(
                keys["name"], sender="ACME", message="hi", phone_numbers=["+48500100200"]
            )
        assert [e.code for e in refused.value.errors] == ["sender_not_registered"]
        with pytest.raises(RequestRefused):
            producer.send_bulk(keys["name"], sender="ACME", items=[("+48500100200", "hi")])
        cli("senders", "request", keys["name"], "ACME")
        cli("senders", "approve", keys["name"], "ACME")
        # The producer caches the account; a refusal checks the log again.
        ids = producer.send_sms(
            keys["name"], sender="ACME", message="hi", phone_numbers=["+48500100200"]
        )
        assert len(ids) == 1
        assert len(producer.send_bulk(keys["name"], sender="ACME", items=[("+48500100201", "x")]))
    finally:
        producer.close()


def test_accounts_that_existed_before_the_policy_are_open() -> None:
    with fresh_database() as url:
        cfg = alembic_config(url)
        command.downgrade(cfg, "0006")
        engine = make_engine(url, pool_size=1)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO accounts (name, priority_enabled, created_at) "
                    "VALUES ('old', false, 1)"
                )
            )
        command.upgrade(cfg, "head")
        old = find_account(engine, "old")
        new, _ = create_account(engine, "new")
        with engine.connect() as conn:
            assert old is not None and get_policy(conn, old.id) == SenderPolicy.OPEN
            assert get_policy(conn, new.id) == SenderPolicy.REGISTERED
        engine.dispose()


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (("senders", "approve", "nobody", "ACME"), "no account named 'nobody'"),
        (("senders", "policy", "nobody"), "no account named 'nobody'"),
        (("senders", "request", "{account}", "Much Too Long"), "invalid sender name"),
        (("senders", "approve", "{account}", "NEVER"), "has not requested 'NEVER'"),
        (("senders", "reject", "{account}", "ACME", "--reason", " "), "--reason must say why"),
    ],
)
def test_the_operator_commands_refuse_clearly(
    world: World, argv: tuple[str, ...], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = world.account("registered")
    cli("senders", "request", keys["name"], "ACME")
    capsys.readouterr()
    assert main([a.format(account=keys["name"]) for a in argv]) == 1
    assert says in json.loads(capsys.readouterr().err)["error"]
    assert cli("senders", "list", "--account", keys["name"])[0]["state"] == "pending"
