"""Hostile input over real HTTP (a real API process, database and Redis): per-message
``webhookUrl`` gets the guard of registered endpoints at submission, with a per-request error;
the per-account cap on webhook endpoints holds under concurrency; carrier callbacks with values
the log cannot hold are refused with an error per place, and nothing of them is stored; the
body guard lets escaped backslashes through (docs/security.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from dispatcher.store.schema import carrier_callbacks, messages, webhook_endpoints
from tests.support.stack import ApiClient, Stack, running_stack

pytestmark = pytest.mark.integration
TOKEN = "hostile-cb-token"
CAP = 3
GOOD = {"sender": "ACME", "message": "hello", "phoneNumbers": ["+48111222333"]}


@pytest.fixture(scope="module")
def hstack() -> Iterator[Stack]:
    with running_stack(
        workers={}, scheduler=False, carrier_callback_token=TOKEN, webhook_max_endpoints=CAP
    ) as s:
        yield s


def count(stack: Stack, table: Any, *where: Any) -> int:
    engine = stack.db()
    with engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()
    engine.dispose()
    return int(n)


def refused(r: httpx.Response, status: int = 400) -> list[dict[str, Any]]:
    assert r.status_code == status, (r.status_code, r.text[:400])
    errors: list[dict[str, Any]] = r.json()["errors"]
    assert errors
    return errors


INWARD = [
    "http://\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11:8080/hook",  # full-width
    "http://127\u30020\u30020\u30021/hook",  # ideographic full stops
    "http://2130706433/hook",
    "http://0x7f.1/hook",
    "http://[::ffff:169.254.169.254]/latest",
    "http://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/hook",
    "http://169.254.169.254/latest/meta-data/",
]
MALFORMED = [
    ("https://user:pw@hooks.example.com/", "credentials"),
    ("https://hooks.example.com:25/", "port 25"),
    ("ftp://hooks.example.com/", "http and https"),
    ("https://\u0661\u0662\u0667.0.0.1/", "internationalised"),
]


def test_per_message_webhook_urls_are_judged_at_submission(hstack: Stack) -> None:
    client = hstack.account()
    before = count(hstack, messages)
    for url in INWARD:
        [err] = refused(client.send({**GOOD, "webhookUrl": url}))
        assert err["code"] in ("webhook_url_forbidden", "invalid_webhook_url"), (url, err)
        assert (err["meta"]["parameter"], err["meta"]["value"]) == ("webhookUrl", url)
        assert err["docs"].startswith("/docs/errors#")
    for url, why in MALFORMED:
        [err] = refused(client.send({**GOOD, "webhookUrl": url}))
        assert err["code"] == "invalid_webhook_url" and why in err["message"], (url, err)
    assert count(hstack, messages) == before  # nothing stored


def test_a_public_webhook_url_is_stored_in_the_form_that_is_called(hstack: Stack) -> None:
    client = hstack.account()
    r = client.send({**GOOD, "webhookUrl": "HTTPS://93.184.216.34:8443/Hook?x=1#frag"})
    assert r.status_code == 200, r.text
    engine = hstack.db()
    with engine.connect() as conn:
        stored = conn.execute(
            select(messages.c.webhook_url).where(messages.c.account_id == client.account_id)
        ).scalar_one()
    engine.dispose()
    assert stored == "https://93.184.216.34:8443/Hook?x=1"


def test_the_endpoint_cap_holds_even_for_concurrent_requests(hstack: Stack) -> None:
    client = hstack.account()

    def send(i: int) -> int:
        body = {**GOOD, "webhookUrl": f"https://93.184.216.{10 + i}/hook"}
        return ApiClient(client.base, client.keys, client.account_id).send(body).status_code

    with ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(send, range(12)))
    assert sorted(codes) == [200] * CAP + [422] * (12 - CAP), codes
    mine = webhook_endpoints.c.account_id == client.account_id
    assert count(hstack, webhook_endpoints, mine) == CAP
    [err] = refused(client.send({**GOOD, "webhookUrl": "https://93.184.216.99/hook"}), 422)
    assert err["code"] == "webhook_endpoint_limit" and err["meta"]["parameter"] == "webhookUrl"
    engine = hstack.db()
    with engine.connect() as conn:
        admitted = conn.execute(select(webhook_endpoints.c.url).where(mine)).scalars().all()
    engine.dispose()
    assert all(client.send({**GOOD, "webhookUrl": u}).status_code == 200 for u in admitted)
    other = hstack.account()  # the cap is per account
    assert other.send({**GOOD, "webhookUrl": "https://93.184.216.99/hook"}).status_code == 200


def post_callback(stack: Stack, kind: str, body: Any) -> httpx.Response:
    return httpx.post(
        f"{stack.api_url}/carrier/default/{kind}",
        content=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        timeout=30,
    )


def test_callbacks_with_values_the_log_cannot_hold_are_refused_naming_each_place(
    hstack: Stack,
) -> None:
    before = count(hstack, carrier_callbacks)
    cases: list[tuple[str, Any, list[tuple[str, str, str]]]] = [
        (
            "reports",
            [{"id": "ok-1", "stat": "DELIVRD"}, {"id": "c-\x00", "stat": "DELIVRD"}],
            [("id", "body[1].id", "NUL")],
        ),
        (
            "inbound",
            {"id": "m-1", "from": "+48600100200", "to": "4321", "text": "STOP\x00", "udh": {}},
            [("text", "body.text", "NUL")],
        ),
        (
            "inbound",
            [{"id": "m-2", "udh": {"ref": "r" * 5000}}],
            [("udh", "body[0].udh.ref", "longer than 4096")],
        ),
        (
            "reports",
            [{"id": "x", "a": {"b": {"c": {"d": {"e": "deep"}}}}}],
            [("a", "body[0].a.b.c.d", "nested deeper")],
        ),
        (
            "reports",
            [{"id": "x", "k" * 65: 1}, {f"f{i}": i for i in range(51)}],
            [("body", "body[0]", "field name"), ("body", "body[1]", "more than 50 fields")],
        ),
    ]
    for kind, body, want in cases:
        errors = refused(post_callback(hstack, kind, body))
        got = [(e["meta"]["parameter"], e["meta"]["source"], e["message"]) for e in errors]
        assert len(got) == len(want), got
        for (param, source, message), (wparam, wsource, wtext) in zip(got, want, strict=True):
            assert (param, source) == (wparam, wsource) and wtext in message, got
        assert all(e["code"] == "invalid_field" for e in errors)
    assert count(hstack, carrier_callbacks) == before  # nothing of a refused request stored
    r = post_callback(hstack, "reports", [{"id": "ok-1", "stat": "DELIVRD"}])
    assert r.status_code == 200 and r.json()["accepted"] == 1
    assert count(hstack, carrier_callbacks) == before + 1


def test_escaped_backslashes_are_text_not_nul_or_surrogates(hstack: Stack) -> None:
    client = hstack.account()
    text = "path C:\\u0000\\ud800 is fine"
    r = client.send({**GOOD, "message": text})
    assert r.status_code == 200, r.text
    engine = hstack.db()
    with engine.connect() as conn:
        stored = conn.execute(
            select(messages.c.body).where(messages.c.id == r.json()["data"][0]["id"])
        ).scalar_one()
    engine.dispose()
    assert stored == text
    [err] = refused(client.send({**GOOD, "message": "a\x00b"}))
    assert err["code"] == "invalid_json"
