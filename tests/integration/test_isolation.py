"""Tenant isolation: every route of the API, walked with account B's credentials against
account A's objects (message ids, externalIds, idempotency keys, phone numbers, inbound
messages, dedicated numbers, suppressions, sender names, number look-ups), over real HTTP on a
real stack.

No response to B contains any of A's data, and A's data is unchanged afterwards. The route list
comes from the application itself: a route that is neither walked here nor exempted (with the
reason) fails the test, so a new endpoint cannot ship without its isolation check. The support
panel (``/panel``) has its own isolation test (``tests/integration/test_panel*``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from dispatcher.api.app import create_app
from dispatcher.config import Settings
from dispatcher.store.numbers import add_number
from dispatcher.store.senders import approve, find_name
from dispatcher.store.suppressions import add_suppression
from tests.support.stack import ApiClient, Stack, running_stack, wait_until

pytestmark = pytest.mark.integration

TOKEN = "iso-callback-token"
A_PHONE = "+48111999001"
A_SUPPRESSED = "+48111999002"
A_NUMBER = "+48500900900"
A_MO_FROM = "+48600900901"
A_EXTERNAL = "iso-a-ext-1"
A_IDEMPOTENCY = "iso-a-idem-1"
A_TEXT = "isolation text of A"
A_INBOUND_TEXT = "inbound text for A"
A_SENDER = "IsoSenderA"
A_CAMPAIGN = "iso-a-campaign"

# Routes without account data, or authenticated otherwise: exempt from the walk, with why.
EXEMPT = {
    ("GET", "/openapi.json"): "the public schema (checked below to hold none of A's data)",
    ("GET", "/healthz"): "liveness, no account data (checked below)",
    ("GET", "/readyz"): "readiness, no account data (checked below)",
    ("GET", "/metrics"): "aggregate metrics, no per-account labels (checked below)",
    ("POST", "/carrier/{connection}/reports"): "carrier auth per connection, not accounts",
    ("POST", "/carrier/{connection}/inbound"): "carrier auth per connection, not accounts",
}
PUBLIC_PREFIXES = ("/docs",)  # static API reference pages (checked below)
PANEL_PREFIX = "/panel"  # walked by the panel's own isolation test


def app_routes() -> set[tuple[str, str]]:
    """(method, path) of every route the application serves, included routers flattened."""

    def walk(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
        for route in routes:
            if hasattr(route, "original_router"):  # an included router (FastAPI >= 0.16x)
                yield from walk(route.original_router.routes, prefix + route.include_context.prefix)
            elif hasattr(route, "routes") and not hasattr(route, "methods"):  # a mount
                yield from walk(route.routes, prefix + getattr(route, "path", ""))
            else:
                for method in getattr(route, "methods", None) or {"GET"}:
                    if method != "HEAD":
                        yield method, prefix + route.path

    return set(walk(create_app(Settings()).routes))


@dataclass
class World:
    stack: Stack
    a: ApiClient
    b: ApiClient
    a_ids: list[str]
    responses_to_b: list[httpx.Response] = field(default_factory=list)

    def markers(self) -> list[str]:
        """Strings that identify A's objects: none may appear in an answer to B."""
        return [
            *self.a_ids,
            A_PHONE,
            A_SUPPRESSED,
            A_NUMBER,
            A_MO_FROM,
            A_EXTERNAL,
            A_TEXT,
            A_SENDER,
        ]

    def as_b(self, method: str, path: str, **kw: Any) -> httpx.Response:
        r = self.b.http.request(method, path, **kw)
        assert r.status_code < 500, r.text
        self.responses_to_b.append(r)
        return r


def not_found(r: httpx.Response) -> None:
    assert r.status_code == 404, r.text
    assert r.json()["data"] == []


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with running_stack(workers={"dlr": 1}, scheduler=False, carrier_callback_token=TOKEN) as s:
        s.sim_config(mo_url=s.api_url + "/carrier/default/inbound", mo_token=TOKEN)
        a, b = s.account(), s.account()
        body = {"sender": "ACME", "message": A_TEXT, "phoneNumbers": [A_PHONE]}
        r = a.send(
            {**body, "externalId": A_EXTERNAL},
            **{"Idempotency-Key": A_IDEMPOTENCY, "Smsdispatch-Campaign": A_CAMPAIGN},
        )
        assert r.status_code == 200, r.text
        a_ids = [m["id"] for m in r.json()["data"]]
        # B has data of its own, so "B sees only its own" is not vacuous.
        assert (
            b.send({"sender": "BETA", "message": "b", "phoneNumbers": ["+48111888001"]}).status_code
            == 200
        )
        engine = s.db()
        with engine.begin() as conn:
            add_number(conn, A_NUMBER, a.account_id, "long_number", time.time())
            add_suppression(conn, a.account_id, A_SUPPRESSED, time.time())
        engine.dispose()
        mo = {"from": A_MO_FROM, "to": A_NUMBER, "text": A_INBOUND_TEXT, "parts": 1}
        assert s.sim("POST", "/_sim/mo", json=mo).status_code == 200
        wait_until(lambda: a.http.get("/v2.1/sms/inbound").status_code == 200, 30, what="A inbound")
        assert a.http.post("/v2.1/sms/senders", json={"sender": A_SENDER}).status_code == 200
        engine = s.db()
        with engine.begin() as conn:
            entry = find_name(conn, a.account_id, A_SENDER)
            assert entry is not None
            approve(conn, entry.id, "ops", time.time())
        engine.dispose()
        assert a.http.post("/v2.1/sms/hlr", json={"phone": A_PHONE}).status_code == 200
        yield World(s, a, b, a_ids)


def walk_send(w: World) -> None:
    # A's externalId and Idempotency-Key, same body: B gets its own new message, not A's.
    body = {"sender": "ACME", "message": A_TEXT, "phoneNumbers": [A_PHONE]}
    r = w.as_b(
        "POST",
        "/v2.1/sms",
        json={**body, "externalId": A_EXTERNAL},
        headers={"Idempotency-Key": A_IDEMPOTENCY},
    )
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["meta"]["duplicate"] is False
    assert not set(m["id"] for m in doc["data"]) & set(w.a_ids)
    w.responses_to_b.pop()  # it echoes what B itself sent (A's phone and text): not a leak


def walk_list(w: World) -> None:
    r = w.as_b("GET", "/v2.1/sms")
    assert r.status_code == 200 and all(m["id"] not in w.a_ids for m in r.json()["data"])
    for params in ({"externalId": A_EXTERNAL}, {"phoneNumber": A_PHONE}, {"sender": "ACME"}):
        data = w.as_b("GET", "/v2.1/sms", params=params).json()["data"]
        assert all(m["id"] not in w.a_ids for m in data), params


def walk_statuses(w: World) -> None:
    for params in ({}, {"externalId": A_EXTERNAL}, {"phoneNumber": A_PHONE}):
        data = w.as_b("GET", "/v2.1/sms/statuses", params=params).json()["data"]
        assert all(m["id"] not in w.a_ids for m in data), params


def walk_one(w: World) -> None:
    for mid in w.a_ids:
        not_found(w.as_b("GET", f"/v2.1/sms/{mid}"))


def walk_inbound(w: World) -> None:
    for params in ({}, {"number": A_NUMBER}, {"phoneNumber": A_MO_FROM}):
        not_found(w.as_b("GET", "/v2.1/sms/inbound", params=params))


def walk_numbers(w: World) -> None:
    not_found(w.as_b("GET", "/v2.1/numbers"))


def walk_suppressions(w: World) -> None:
    for params in ({}, {"phoneNumber": A_SUPPRESSED}):
        not_found(w.as_b("GET", "/v2.1/suppressions", params=params))


def walk_delete_suppression(w: World) -> None:
    not_found(w.as_b("DELETE", f"/v2.1/suppressions/{A_SUPPRESSED}"))


def walk_senders(w: World) -> None:
    for method in ("GET", "OPTIONS"):
        r = w.as_b(method, "/v2.1/sms/senders")
        assert r.status_code == 200 and r.json()["data"] == [], r.text


def walk_request_sender(w: World) -> None:
    # A's approved name, asked for by B: B's own request, pending; A's stays approved.
    r = w.as_b("POST", "/v2.1/sms/senders", json={"sender": A_SENDER})
    assert r.status_code == 200 and r.json()["data"][0]["state"] == "pending", r.text
    w.responses_to_b.pop()  # it echoes the name B asked for: not a leak
    mine = w.a.http.get("/v2.1/sms/senders").json()["data"]
    assert [(d["sender"], d["state"]) for d in mine if d["kind"] == "name"] == [
        (A_SENDER, "approved")
    ]


def walk_lookup(w: World) -> None:
    # A looked A_PHONE up a moment ago: B's answer must not say it was cached.
    r = w.as_b("POST", "/v2.1/sms/hlr", json={"phone": A_PHONE})
    assert r.status_code == 200 and r.json()["data"][0]["cached"] is False, r.text
    w.responses_to_b.pop()  # it echoes the number B asked about: not a leak


def walk_campaign_control(w: World) -> None:
    # B names A's campaign: no such campaign in B's account, and A's message is left as it was.
    before = w.a.get(w.a_ids[0])["status"]
    for action in ("pause", "resume", "cancel"):
        not_found(
            w.as_b(
                "POST",
                f"/v2.1/campaigns/{A_CAMPAIGN}/{action}",
                headers={"Content-Type": "application/json"},
            )
        )
    assert w.a.get(w.a_ids[0])["status"] == before


def walk_cancel_message(w: World) -> None:
    for mid in w.a_ids:
        not_found(
            w.as_b("POST", f"/v2.1/sms/{mid}/cancel", headers={"Content-Type": "application/json"})
        )
        assert w.a.get(mid)["status"] != "cancelled"


# The send walk runs last: afterwards B owns a message to A's phone with A's text.
WALKS: dict[tuple[str, str], Callable[[World], None]] = {
    ("GET", "/v2.1/sms"): walk_list,
    ("GET", "/v2.1/sms/statuses"): walk_statuses,
    ("GET", "/v2.1/sms/{message_id}"): walk_one,
    ("GET", "/v2.1/sms/inbound"): walk_inbound,
    ("GET", "/v2.1/numbers"): walk_numbers,
    ("GET", "/v2.1/suppressions"): walk_suppressions,
    ("DELETE", "/v2.1/suppressions/{phone}"): walk_delete_suppression,
    ("GET", "/v2.1/sms/senders"): walk_senders,
    ("OPTIONS", "/v2.1/sms/senders"): walk_senders,
    ("POST", "/v2.1/sms/senders"): walk_request_sender,
    ("POST", "/v2.1/sms/hlr"): walk_lookup,
    ("POST", "/v2.1/campaigns/{campaign:path}/pause"): walk_campaign_control,
    ("POST", "/v2.1/campaigns/{campaign:path}/resume"): walk_campaign_control,
    ("POST", "/v2.1/campaigns/{campaign:path}/cancel"): walk_campaign_control,
    ("POST", "/v2.1/sms/{message_id}/cancel"): walk_cancel_message,
    ("POST", "/v2.1/sms"): walk_send,
}


def test_every_route_is_walked_or_exempted() -> None:
    routes = app_routes()
    assert ("GET", "/v2.1/sms/{message_id}") in routes, routes  # the enumeration works
    unaccounted = {
        r
        for r in routes
        if r not in WALKS
        and r not in EXEMPT
        and not r[1].startswith(PUBLIC_PREFIXES)
        and not r[1].startswith(PANEL_PREFIX)
    }
    assert not unaccounted, f"add an isolation walk (or an exemption) for {sorted(unaccounted)}"
    assert not set(WALKS) - routes, f"walks for routes that no longer exist: {set(WALKS) - routes}"


def test_account_b_sees_and_changes_nothing_of_account_a(world: World) -> None:
    routes = app_routes()
    for method, path in sorted(routes):
        if (
            method == "GET"
            and "{" not in path
            and ((method, path) in EXEMPT or path.startswith(PUBLIC_PREFIXES))
        ):
            world.as_b("GET", path)
    for walk in WALKS.values():
        walk(world)
    for r in world.responses_to_b:
        # An error may echo what B itself sent (the id it asked for): only the rest is a leak.
        asked = str(r.request.url) + r.request.content.decode()
        leaked = [m for m in world.markers() if m in r.text and m not in asked]
        assert not leaked, f"{r.request.method} {r.request.url} returned A's {leaked}"
    # A's data is all still there and unchanged.
    a = world.a
    for mid in world.a_ids:
        view = a.get(mid)
        assert (view["phoneNumber"], view["externalId"]) == (A_PHONE, A_EXTERNAL)
    listed = a.http.get("/v2.1/sms", params={"externalId": A_EXTERNAL}).json()["data"]
    assert sorted(m["id"] for m in listed) == sorted(world.a_ids)
    sup = a.http.get("/v2.1/suppressions").json()["data"]
    assert [s["phoneNumber"] for s in sup] == [A_SUPPRESSED]
    assert [n["number"] for n in a.http.get("/v2.1/numbers").json()["data"]] == [A_NUMBER]
    inbound = a.http.get("/v2.1/sms/inbound").json()["data"]
    assert [(m["phoneNumber"], m["message"]) for m in inbound] == [(A_MO_FROM, A_INBOUND_TEXT)]
