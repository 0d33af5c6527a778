"""``POST /v2.1/sms`` answers the same through the fast path as through FastAPI's own routing.

The real app on a migrated database and a real Redis: each request is sent once with the fast
path on and once with it off (dependency overrides send every request the ordinary way), and
the answers must match (status, body with fresh ids and times blanked, Retry-After).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dispatcher.accounts.account import create_account
from dispatcher.api import fast_send
from dispatcher.api.app import build_context, create_app
from dispatcher.config import Settings
from dispatcher.store.db import make_engine
from dispatcher.store.suppressions import add_suppression
from tests.support.services import fresh_database, fresh_redis

OPTED_OUT = "+48600999888"
# Fresh per request:
VOLATILE = {"id", "externalId", "uniqId", "statusTime", "createTime", "statusAt", "createdAt"}


def _never() -> None:  # pragma: no cover - only its presence in the overrides matters
    return None


class World:
    def __init__(self, http: TestClient, keys: dict[str, dict[str, str]]) -> None:
        self.http = http
        self.keys = keys
        self.fast_calls = 0

    def send(self, fast: bool, body: Any, account: str | None = "alpha", **headers: str) -> Any:
        app: Any = self.http.app
        app.dependency_overrides = {} if fast else {_never: _never}
        h = {"Content-Type": "application/json", **(self.keys[account] if account else {})}
        h.update(headers)
        raw = body if isinstance(body, bytes) else None
        r = self.http.post("/v2.1/sms", content=raw, json=None if raw else body, headers=h)
        return r


@pytest.fixture(scope="module")
def shared() -> Iterator[World]:
    """One database and app for the module (each test's requests are independent)."""
    with fresh_database() as db_url, fresh_redis() as redis_url:
        engine = make_engine(db_url)
        alpha, keys_a = create_account(engine, "alpha", priority=True, sender_policy="open")
        _beta, keys_b = create_account(engine, "beta", sender_policy="open")
        with engine.begin() as conn:
            add_suppression(conn, alpha.id, OPTED_OUT, time.time())
        engine.dispose()
        settings = Settings.from_env({}, database_url=db_url, redis_url=redis_url)
        app = create_app(settings, build_context(settings))
        with TestClient(app) as http, pytest.MonkeyPatch.context() as mp:
            keys = {
                name: {"Application-Key": k.application_key, "Authorization": k.authorization}
                for name, k in (("alpha", keys_a), ("beta", keys_b))
            }
            w = World(http, keys)
            run = fast_send.FastSend._run

            async def counted(self: Any, plan: Any, *args: Any) -> Any:
                if plan.body is not None:
                    w.fast_calls += 1
                return await run(self, plan, *args)

            mp.setattr(fast_send.FastSend, "_run", counted)
            yield w


@pytest.fixture
def world(shared: World) -> World:
    shared.fast_calls = 0
    return shared


def _normal(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "*" if k in VOLATILE else _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def _same(world: World, body: Any, account: str | None = "alpha", **headers: str) -> int:
    before = world.fast_calls
    slow = world.send(False, body, account, **headers)
    assert world.fast_calls == before
    fast = world.send(True, body, account, **headers)
    assert fast.status_code == slow.status_code, (fast.text, slow.text)
    assert _normal(fast.json()) == _normal(slow.json())
    assert fast.headers.get("retry-after") == slow.headers.get("retry-after")
    assert fast.headers["content-type"] == slow.headers["content-type"]
    return int(fast.status_code)


BASE = {"sender": "ACME", "message": "Your code is 123456", "phoneNumbers": ["+48500100200"]}


def test_accepted_requests_take_the_fast_path_and_answer_the_same(world: World) -> None:
    assert _same(world, BASE) == 200
    assert world.fast_calls == 1
    mixed = {**BASE, "phoneNumbers": ["+48500100201", "12", "+48500100201", OPTED_OUT]}
    assert _same(world, mixed) == 200  # partial success: invalid, duplicate, opted out
    assert _same(world, {**BASE, "priority": True}) == 200
    assert _same(world, {**BASE, "scheduleTime": int(time.time()) + 3600}) == 200
    assert world.fast_calls == 4


@pytest.mark.parametrize(
    ("body", "account", "headers", "status"),
    [
        ({**BASE, "sender": "!!"}, "alpha", {}, 400),
        ({**BASE, "phoneNumbers": ["12"]}, "alpha", {}, 400),
        ({**BASE, "phoneNumbers": [OPTED_OUT]}, "alpha", {}, 400),
        ({**BASE, "validity": 0}, "alpha", {}, 400),
        ({**BASE, "shortLink": True}, "alpha", {}, 400),
        ({**BASE, "priority": True}, "beta", {}, 403),
        (BASE, None, {}, 401),
        (BASE, "alpha", {"Authorization": "wrong"}, 401),
        (BASE, "alpha", {"Idempotency-Key": "a\tb"}, 400),
        (BASE, "alpha", {"Smsdispatch-Campaign": "x" * 65}, 400),
    ],
)
def test_refusals_answer_the_same(
    world: World, body: Any, account: str | None, headers: dict[str, str], status: int
) -> None:
    assert _same(world, body, account, **headers) == status


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        b'{"sender": "ACME"}',
        b'{"sender": "ACME", "message": "x", "phoneNumbers": "+48500100200"}',
        b'{"sender": "ACME", "message": "x", "phoneNumbers": ["+48500100200"], "validity": "x"}',
    ],
)
def test_invalid_bodies_go_the_ordinary_way(world: World, body: bytes) -> None:
    assert _same(world, body) == 400
    assert world.fast_calls == 0


def test_repeats_are_recognised_on_the_fast_path(world: World) -> None:
    first = world.send(True, {**BASE, "externalId": "order-1"})
    again = world.send(True, {**BASE, "externalId": "order-1"})
    assert first.status_code == again.status_code == 200
    assert again.json()["meta"]["duplicate"] is True
    assert again.json()["data"][0]["id"] == first.json()["data"][0]["id"]
    key = {"Idempotency-Key": "k-1"}
    one = world.send(True, BASE, **key)
    two = world.send(True, BASE, **key)
    other = world.send(True, {**BASE, "message": "another text"}, **key)
    assert two.json()["data"][0]["id"] == one.json()["data"][0]["id"]
    assert other.status_code == 422
    assert other.json()["errors"][0]["code"] == "idempotency_key_reused"
    assert world.fast_calls == 5
