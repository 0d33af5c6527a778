"""The panel as the customer's workspace, over real HTTP on a real stack (database, Redis,
API process): roles on every route (the walk), API keys (create, use, last used, revoke,
rotate), webhooks (URL checks, secret, test event, resume), sender names (request, operator
decision, then a send), operator accounts, and the audit log of all of it.

No workers run here: nothing needs sending (the browser walk follows messages end to end).
"""

from __future__ import annotations

import csv
import html
import io
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis
from smsdispatch_client.webhooks import verify
from sqlalchemy import insert, select, update

from dispatcher.accounts.account import find_account
from dispatcher.routing.breaker_state import KEY_PREFIX
from dispatcher.store.admission import weight_of
from dispatcher.store.balances import post, set_limits
from dispatcher.store.prices import NewPrice, add_price
from dispatcher.store.schema import api_keys, messages, submissions, webhook_endpoints
from dispatcher.store.senders import find_name
from dispatcher.store.webhooks import signing_secrets
from tests.browser.panel_helpers import PanelClient, add_opt_out, csrf_of, logged_in, make_user
from tests.integration.test_isolation import app_routes
from tests.support.receiver import Answer, Receiver
from tests.support.stack import ApiClient, Stack, running_stack, wait_until

pytestmark = pytest.mark.integration

# Every panel route, the least role that may use it, and a concrete path to walk it with.
# "any": every logged-in user; "public": no login. A route missing here fails the walk.
ROUTES: dict[tuple[str, str], tuple[str, str]] = {
    ("GET", "/panel"): ("public", "/panel"),
    ("GET", "/panel/login"): ("public", "/panel/login"),
    ("POST", "/panel/login"): ("public", "/panel/login"),
    ("POST", "/panel/logout"): ("any", "/panel/logout"),
    ("GET", "/panel/{rest:path}"): ("any", "/panel/nothing-here"),
    ("GET", "/panel/static"): ("public", "/panel/static/panel.css"),  # the mount
    ("GET", "/panel/messages"): ("any", "/panel/messages"),
    ("GET", "/panel/messages/{message_id}"): ("any", "/panel/messages/x"),
    ("POST", "/panel/messages/{message_id}/lookup"): ("any", "/panel/messages/x/lookup"),
    ("GET", "/panel/campaigns"): ("any", "/panel/campaigns"),
    ("GET", "/panel/campaigns/{kind}/{key:path}"): ("any", "/panel/campaigns/c/x"),
    ("GET", "/panel/suppressions"): ("any", "/panel/suppressions"),
    ("GET", "/panel/dashboard"): ("any", "/panel/dashboard"),
    ("GET", "/panel/messages.csv"): ("any", "/panel/messages.csv"),
    ("GET", "/panel/campaigns/new"): ("admin", "/panel/campaigns/new"),
    ("POST", "/panel/campaigns/preview"): ("admin", "/panel/campaigns/preview"),
    ("POST", "/panel/campaigns/send"): ("admin", "/panel/campaigns/send"),
    ("POST", "/panel/campaigns/control"): ("admin", "/panel/campaigns/control"),
    ("GET", "/panel/campaigns/rejected.csv"): ("any", "/panel/campaigns/rejected.csv?name=x"),
    ("POST", "/panel/suppressions/remove"): ("admin", "/panel/suppressions/remove"),
    ("GET", "/panel/senders"): ("any", "/panel/senders"),
    ("POST", "/panel/senders/request"): ("admin", "/panel/senders/request"),
    ("GET", "/panel/account/api"): ("admin", "/panel/account/api"),
    ("POST", "/panel/account/api/create"): ("admin", "/panel/account/api/create"),
    ("POST", "/panel/account/api/{key_id}/revoke"): ("admin", "/panel/account/api/999999/revoke"),
    ("POST", "/panel/account/api/{key_id}/rotate"): ("admin", "/panel/account/api/999999/rotate"),
    ("GET", "/panel/account/audit"): ("admin", "/panel/account/audit"),
    ("GET", "/panel/account/webhooks"): ("admin", "/panel/account/webhooks"),
    ("POST", "/panel/account/webhooks"): ("admin", "/panel/account/webhooks"),
    ("POST", "/panel/account/webhooks/rotate-secret"): (
        "admin",
        "/panel/account/webhooks/rotate-secret",
    ),
    ("POST", "/panel/account/webhooks/test"): ("admin", "/panel/account/webhooks/test"),
    ("POST", "/panel/account/webhooks/resume"): ("admin", "/panel/account/webhooks/resume"),
    ("GET", "/panel/operator/senders"): ("operator", "/panel/operator/senders"),
    ("POST", "/panel/operator/senders/{name_id}/approve"): (
        "operator",
        "/panel/operator/senders/999999/approve",
    ),
    ("POST", "/panel/operator/senders/{name_id}/reject"): (
        "operator",
        "/panel/operator/senders/999999/reject",
    ),
    ("GET", "/panel/operator/accounts"): ("operator", "/panel/operator/accounts"),
    ("POST", "/panel/operator/accounts"): ("operator", "/panel/operator/accounts"),
    ("POST", "/panel/operator/accounts/{account_id}/limits"): (
        "operator",
        "/panel/operator/accounts/999999/limits",
    ),
    ("GET", "/panel/operator/audit"): ("operator", "/panel/operator/audit"),
    ("GET", "/panel/operator/connections"): ("operator", "/panel/operator/connections"),
    ("GET", "/panel/operator/prices"): ("operator", "/panel/operator/prices"),
    ("POST", "/panel/operator/prices"): ("operator", "/panel/operator/prices"),
    ("GET", "/panel/operator/accounts/{account_id}/balance"): (
        "operator",
        "/panel/operator/accounts/999999/balance",
    ),
    ("POST", "/panel/operator/accounts/{account_id}/balance/{action}"): (
        "operator",
        "/panel/operator/accounts/999999/balance/topup",
    ),
    ("POST", "/panel/operator/accounts/{account_id}/balance/limits"): (
        "operator",
        "/panel/operator/accounts/999999/balance/limits",
    ),
    ("GET", "/panel/balance"): ("any", "/panel/balance"),
    ("GET", "/panel/balance/usage.csv"): ("any", "/panel/balance/usage.csv"),
}
RANK = {"support": 0, "admin": 1, "operator": 2}


@dataclass
class World:
    stack: Stack
    rx: Receiver
    a: ApiClient
    b: ApiClient
    support_a: PanelClient
    admin_a: PanelClient
    admin_b: PanelClient
    operator: PanelClient


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with (
        Receiver() as rx,
        running_stack(
            workers={},
            scheduler=False,
            webhook_allow_private=1,
            auth_cache_ttl_s=0.5,  # revocations show within the test's patience
            webhook_timeout_s=3,
        ) as s,
    ):
        a = s.account("ws-a", sender_policy="registered")
        b = s.account("ws-b")
        platform = s.account("ws-platform")
        yield World(
            s,
            rx,
            a,
            b,
            logged_in(s, make_user(s, a.account_id, "support")),
            logged_in(s, make_user(s, a.account_id, "admin")),
            logged_in(s, make_user(s, b.account_id, "admin")),
            logged_in(s, make_user(s, platform.account_id, "operator")),
        )


def panel_routes() -> set[tuple[str, str]]:
    return {(m, p) for m, p in app_routes() if p.startswith("/panel")}


def test_every_panel_route_checks_the_role(world: World) -> None:
    served = panel_routes()
    served.add(("GET", "/panel/static"))  # a mount: the walk of app_routes lists its inside
    assert served - set(ROUTES) == set(), "a panel route without its role in ROUTES"
    assert set(ROUTES) - served == set(), "ROUTES lists a route the app no longer serves"
    users = {"support": world.support_a, "admin": world.admin_a, "operator": world.operator}
    tokens = {role: csrf_of(c.get("/panel/messages").text) for role, c in users.items()}
    anon = PanelClient(world.stack.api_url)
    for (method, _), (least, path) in sorted(ROUTES.items()):
        if least == "public" or path == "/panel/logout":
            continue
        r = anon.http.request(method, path, data={"csrf_token": "x"} if method == "POST" else None)
        assert r.status_code == 303 and "/panel/login" in r.headers["location"], (method, path)
        if least == "any":
            continue
        for role, client in users.items():
            data = {"csrf_token": tokens[role]} if method == "POST" else None
            r = client.http.request(method, path, data=data)
            if RANK[role] < RANK[least]:
                assert r.status_code == 403, (role, method, path, r.status_code)
                assert "only" in r.text  # "Admins only" / "Operators only"
            else:
                assert r.status_code != 403, (role, method, path)
    # A support user sees no link to an admin page.
    page = world.support_a.get("/panel/messages").text
    assert "/panel/account/" not in page and "/panel/operator/" not in page
    assert "/panel/operator/" not in world.admin_a.get("/panel/messages").text


def _new_pair(page: str) -> tuple[str, str]:
    app = re.search(r'id="new-app-key">([A-Za-z0-9]+)<', page)
    auth = re.search(r'id="new-authorization">([A-Za-z0-9]+)<', page)
    assert app and auth, "the new pair is not on the page"
    return app.group(1), auth.group(1)


def _row(client: PanelClient, name: str) -> str:
    """The key list's row of the newest key called ``name``."""
    page = client.get("/panel/account/api").text
    found = re.search(r"<tr>\s*<td>" + re.escape(name) + r".*?</tr>", page, re.S)
    assert found, f"no row for {name}"
    return found.group(0)


def _send(stack: Stack, pair: tuple[str, str], sender: str = "ACME") -> httpx.Response:
    return httpx.post(
        stack.api_url + "/v2.1/sms",
        json={"sender": sender, "message": "hello", "phoneNumbers": ["+48111222333"]},
        headers={"Application-Key": pair[0], "Authorization": pair[1]},
        timeout=30,
    )


def test_api_keys_create_use_revoke_rotate_and_audit(world: World) -> None:
    admin, stack = world.admin_a, world.stack
    token = csrf_of(admin.get("/panel/account/api").text)
    bad = admin.post("/panel/account/api/create", name="", csrf_token=token)
    assert bad.status_code == 400 and "Name the key" in bad.text
    page = admin.post("/panel/account/api/create", name="shop backend", csrf_token=token)
    assert page.status_code == 200 and "shown only once" in page.text
    assert page.headers["cache-control"] == "no-store"
    pair = _new_pair(page.text)
    assert len(pair[0]) == 32 and len(pair[1]) == 128
    listing = admin.get("/panel/account/api").text
    assert pair[0] not in listing and pair[1] not in listing  # shown once, never again
    assert "never" in _row(admin, "shop backend")
    assert _send(stack, pair, "ws-open").status_code in (200, 400)  # authenticates
    r = _send(stack, pair)
    assert r.status_code != 401, r.text
    wait_until(lambda: "never" not in _row(admin, "shop backend"), 10, what="last used")
    engine = stack.db()
    with engine.connect() as conn:
        key_id = conn.execute(
            select(api_keys.c.id).where(api_keys.c.name == "shop backend")
        ).scalar_one()
    engine.dispose()
    # Another account's admin cannot touch it: 404, as for a key that does not exist.
    b_token = csrf_of(world.admin_b.get("/panel/account/api").text)
    for action in ("revoke", "rotate"):
        r = world.admin_b.post(f"/panel/account/api/{key_id}/{action}", csrf_token=b_token)
        assert r.status_code == 404, action
    assert "shop backend" not in world.admin_b.get("/panel/account/api").text
    # Rotate with no overlap: the new pair works, the old one stops.
    rotated = admin.post(f"/panel/account/api/{key_id}/rotate", overlap_h="0", csrf_token=token)
    assert rotated.status_code == 200
    new = _new_pair(rotated.text)
    wait_until(lambda: _send(stack, pair).status_code == 401, 10, what="old pair refused")
    assert _send(stack, new).status_code != 401
    with engine.connect() as conn:
        new_id = conn.execute(
            select(api_keys.c.id)
            .where(api_keys.c.name == "shop backend")
            .order_by(api_keys.c.id.desc())
        ).scalar()
    engine.dispose()
    assert admin.post(f"/panel/account/api/{key_id}/revoke", csrf_token=token).status_code == 404
    done = admin.post(f"/panel/account/api/{new_id}/revoke", csrf_token=token)
    assert done.status_code == 303
    wait_until(lambda: _send(stack, new).status_code == 401, 10, what="revoked pair refused")
    assert "revoked" in admin.get("/panel/account/api").text
    log = admin.get("/panel/account/audit").text
    for action in ("key.create", "key.rotate", "key.revoke"):
        assert action in log, action
    assert "panel:admin-" in log
    assert pair[1] not in log and new[1] not in log
    assert "key.create" not in world.admin_b.get("/panel/account/audit").text


def test_webhooks_urls_test_event_secret_and_resume(world: World) -> None:
    admin, rx = world.admin_a, world.rx
    token = csrf_of(admin.get("/panel/account/webhooks").text)
    bad = admin.post(
        "/panel/account/webhooks",
        url="http://169.254.169.254/latest/meta-data",
        secondary="ftp://example.com/x",
        csrf_token=token,
    )
    assert bad.status_code == 400
    assert 'id="wh-url-error"' in bad.text and "cloud metadata" in bad.text
    assert 'id="wh-secondary-error"' in bad.text and "http and https" in bad.text
    assert "169.254.169.254" not in admin.get("/panel/account/webhooks").text.split("<form")[1]
    # An account's first URL creates its signing secret, shown once (account B has none yet).
    b_token = csrf_of(world.admin_b.get("/panel/account/webhooks").text)
    first = world.admin_b.post(
        "/panel/account/webhooks", url=rx.url("/ws-b/status"), csrf_token=b_token
    )
    assert first.status_code == 200 and "Your signing secret" in first.text
    assert 'id="new-secret"' not in world.admin_b.get("/panel/account/webhooks").text
    hook = rx.url("/ws/status")
    saved = admin.post("/panel/account/webhooks", url=hook, csrf_token=token)
    assert saved.status_code in (200, 303)
    # Rotating with no overlap: only the new secret signs from now on.
    rotated = admin.post("/panel/account/webhooks/rotate-secret", overlap_h="0", csrf_token=token)
    secret = re.search(r'id="new-secret">([^<]+)<', rotated.text)
    assert secret
    rx.script("/ws/status", Answer(202, "thanks, got it"))
    answer = admin.post("/panel/account/webhooks/test", which="url", csrf_token=token)
    assert answer.status_code == 200
    text = html.unescape(answer.text)
    assert "The receiver answered" in text and "202" in text and "thanks, got it" in text
    (got,) = rx.requests("/ws/status")
    assert b'"type":"webhook.test"' in got.body
    verify(got.body, got.headers, [html.unescape(secret.group(1))])
    rx.script("/ws/status", Answer(500, "broken"))
    failed = html.unescape(
        admin.post("/panel/account/webhooks/test", which="url", csrf_token=token).text
    )
    assert "500" in failed and "real events would be retried" in failed
    # A URL that is not set cannot be tested; a receiver that is down is reported as such.
    assert (
        admin.post("/panel/account/webhooks/test", which="inbound_url", csrf_token=token)
    ).status_code == 400
    # Rotation: the new secret is shown once; events are signed with both for the overlap.
    rotated2 = admin.post("/panel/account/webhooks/rotate-secret", overlap_h="1", csrf_token=token)
    new_secret = re.search(r'id="new-secret">([^<]+)<', rotated2.text)
    assert new_secret and new_secret.group(1) != secret.group(1)
    engine = world.stack.db()
    with engine.begin() as conn:
        signing = signing_secrets(conn, [world.a.account_id], time.time())[world.a.account_id]
        assert set(signing) == {html.unescape(secret.group(1)), html.unescape(new_secret.group(1))}
        conn.execute(
            insert(webhook_endpoints).values(
                account_id=world.a.account_id,
                url=hook,
                state="suspended",
                consecutive_failures=40,
                changed_at=time.time(),
                reason="failing for 24 h",
            )
        )
    page = admin.get("/panel/account/webhooks").text
    assert "Endpoints we stopped calling" in page and "failing for 24 h" in page
    assert admin.post("/panel/account/webhooks/resume", csrf_token=token).status_code == 303
    with engine.connect() as conn:
        state = conn.execute(
            select(webhook_endpoints.c.state).where(
                webhook_endpoints.c.account_id == world.a.account_id
            )
        ).scalar_one()
    engine.dispose()
    assert state == "active"
    log = admin.get("/panel/account/audit").text
    for action in ("webhook.url", "webhook.test", "webhook.secret_rotate", "webhook.resume"):
        assert action in log, action
    assert "answered 202" in log
    # Account B sees none of it.
    b_page = world.admin_b.get("/panel/account/webhooks").text
    assert (
        hook not in b_page and "webhook.test" not in world.admin_b.get("/panel/account/audit").text
    )


def test_sender_names_request_then_operator_decides(world: World) -> None:
    admin, support, op = world.admin_a, world.support_a, world.operator
    refused = world.a.send({"sender": "WsShop", "message": "hi", "phoneNumbers": ["+48111222333"]})
    assert refused.status_code == 400 and refused.json()["errors"][0]["code"] == (
        "sender_not_registered"
    )
    token = csrf_of(admin.get("/panel/senders").text)
    bad = admin.post("/panel/senders/request", sender="!!", csrf_token=token)
    assert bad.status_code == 400 and 'aria-invalid="true"' in bad.text
    r = admin.post("/panel/senders/request", sender="WsShop", csrf_token=token)
    assert r.status_code == 303
    page = support.get("/panel/senders").text
    assert "WsShop" in page and "pending" in page
    assert "/panel/senders/request" not in page  # support reads only
    s_token = csrf_of(page)
    assert (
        support.post("/panel/senders/request", sender="Other", csrf_token=s_token).status_code
        == 403
    )
    assert "WsShop" not in world.admin_b.get("/panel/senders").text
    queue = op.get("/panel/operator/senders").text
    assert "WsShop" in queue and "ws-a" in queue
    engine = world.stack.db()
    with engine.connect() as conn:
        entry = find_name(conn, world.a.account_id, "WsShop")
    engine.dispose()
    assert entry is not None
    name_id = re.search(rf"/panel/operator/senders/({entry.id})/approve", queue)
    assert name_id, "no Approve button for the request"
    o_token = csrf_of(queue)
    no_reason = op.post(f"/panel/operator/senders/{name_id.group(1)}/reject", csrf_token=o_token)
    assert no_reason.status_code == 400
    ok = op.post(f"/panel/operator/senders/{name_id.group(1)}/approve", csrf_token=o_token)
    assert ok.status_code == 303
    assert "approved" in support.get("/panel/senders").text
    sent = world.a.send({"sender": "WsShop", "message": "hi", "phoneNumbers": ["+48111222333"]})
    assert sent.status_code == 200, sent.text
    assert "sender.approve" in admin.get("/panel/account/audit").text
    assert op.post("/panel/operator/senders/999999/approve", csrf_token=o_token).status_code == 404


def test_operator_creates_an_account_and_sets_its_limits(world: World) -> None:
    op, stack = world.operator, world.stack
    token = csrf_of(op.get("/panel/operator/accounts").text)
    bad = op.post(
        "/panel/operator/accounts",
        name="ws new!",
        admin_username="x",
        admin_password="short",
        csrf_token=token,
    )
    assert bad.status_code == 400
    assert all(f'id="acc-{k}-error"' in bad.text for k in ("name", "admin_username"))
    made = op.post(
        "/panel/operator/accounts",
        name="ws-new",
        sender_policy="open",
        admin_username="ws-new-admin",
        admin_password="a long enough password",
        csrf_token=token,
    )
    assert made.status_code == 200, made.text
    app = re.search(r'id="acc-app-key">([A-Za-z0-9]+)<', made.text)
    auth = re.search(r'id="acc-authorization">([A-Za-z0-9]+)<', made.text)
    assert app and auth
    assert _send(stack, (app.group(1), auth.group(1)), "Anything").status_code == 200
    again = op.post("/panel/operator/accounts", name="ws-new", csrf_token=token)
    assert again.status_code == 400 and "exists" in again.text
    customer = PanelClient(stack.api_url)
    assert customer.login("ws-new-admin", "a long enough password").status_code == 303
    assert customer.get("/panel/account/api").status_code == 200
    listing = op.get("/panel/operator/accounts").text
    engine = stack.db()
    created = find_account(engine, "ws-new")
    engine.dispose()
    assert created is not None and created.sender_policy == "open"
    acct = re.search(rf"/panel/operator/accounts/({created.id})/limits", listing)
    assert acct, "ws-new's limits form"
    r = op.post(
        f"/panel/operator/accounts/{acct.group(1)}/limits",
        api_rate_per_s="",
        daily_cap="1",
        sender_policy="open",
        csrf_token=token,
    )
    assert r.status_code == 303
    time.sleep(0.6)  # auth_cache_ttl_s=0.5 in this stack
    pair = (app.group(1), auth.group(1))
    codes = [_send(stack, pair, "Anything").status_code for _ in range(3)]
    assert 429 in codes or 403 in codes, codes  # the daily cap of 1 (one send already made)
    bad_limit = op.post(
        f"/panel/operator/accounts/{acct.group(1)}/limits",
        daily_cap="-3",
        sender_policy="open",
        csrf_token=token,
    )
    assert bad_limit.status_code == 400
    not_a_number = op.post(
        f"/panel/operator/accounts/{acct.group(1)}/limits",
        api_rate_per_s="nan",
        sender_policy="open",
        csrf_token=token,
    )
    assert not_a_number.status_code == 400
    # The account's weight in the fair bulk lane (docs/campaigns.md): set, refused when out of
    # range (naming it), left alone when the field is empty.
    weighted = op.post(
        f"/panel/operator/accounts/{acct.group(1)}/limits",
        sender_policy="open",
        daily_cap="1",
        bulk_weight="4",
        csrf_token=token,
    )
    assert weighted.status_code == 303
    bad_weight = op.post(
        f"/panel/operator/accounts/{acct.group(1)}/limits",
        sender_policy="open",
        bulk_weight="0",
        csrf_token=token,
    )
    assert bad_weight.status_code == 400 and "weight" in bad_weight.text
    op.post(
        f"/panel/operator/accounts/{acct.group(1)}/limits",
        sender_policy="open",
        daily_cap="1",
        csrf_token=token,
    )
    engine = stack.db()
    with engine.connect() as conn:
        assert weight_of(conn, created.id) == 4
    engine.dispose()
    assert f'id="weight-{created.id}"' in op.get("/panel/operator/accounts").text
    log = op.get("/panel/operator/audit").text
    assert "account.create" in log and "account.limits" in log and "platform" in log
    assert world.admin_a.get("/panel/operator/audit").status_code == 403


def _csv(rows: int) -> bytes:
    lines = ["first_name,phone,code"]
    lines += [f"Client{n},+4860{n:07d},C{n}" for n in range(rows - 2)]
    lines += ["Broken,12ab,X", "Twice,+48600000000,Y"]  # not a number; a duplicate of row 2
    return ("\n".join(lines) + "\n").encode()


def test_a_campaign_from_a_csv_is_previewed_sent_once_and_its_rejects_downloadable(
    world: World,
) -> None:
    admin, stack = world.admin_b, world.stack
    add_opt_out(stack, world.b.account_id, "+48600000005")
    token = csrf_of(admin.get("/panel/campaigns/new").text)
    form = {
        "csrf_token": token,
        "name": "winter-sale",
        "sender": "BShop",
        "text": "Hi {first_name}, your code {code} gives 20% off",
    }
    files = {"file": ("list.csv", _csv(1000), "text/csv")}
    bad = admin.http.post(
        "/panel/campaigns/preview", data={**form, "text": "Hi {name}"}, files=files
    )
    assert bad.status_code == 400 and "No column called {name}" in html.unescape(bad.text)
    page = admin.http.post("/panel/campaigns/preview", data=form, files=files)
    assert page.status_code == 200, page.text
    text = html.unescape(page.text)
    assert "Hi Client0, your code C0 gives 20% off" in text
    assert "Send 998 messages" in text and "GSM-7" in text
    fragment = admin.http.post(
        "/panel/campaigns/preview", data=form, files=files, headers={"X-Panel-Fragment": "1"}
    )
    assert fragment.status_code == 200 and "<html" not in fragment.text
    draft_id = re.search(r'name="draft_id" value="([^"]+)"', fragment.text)
    assert draft_id and "Send 998 messages" in fragment.text
    sent = admin.post("/panel/campaigns/send", csrf_token=token, draft_id=draft_id.group(1))
    assert sent.status_code == 303 and sent.headers["location"] == "/panel/campaigns/c/winter-sale"
    again = admin.post("/panel/campaigns/send", csrf_token=token, draft_id=draft_id.group(1))
    assert again.status_code == 409  # a second click sends nothing
    engine = stack.db()
    with engine.connect() as conn:
        rows = conn.execute(
            select(messages.c.phone, messages.c.body, messages.c.status, messages.c.sender)
            .join(submissions, submissions.c.id == messages.c.submission_id)
            .where(submissions.c.campaign == "winter-sale")
        ).all()
    engine.dispose()
    assert len(rows) == 997  # 998 previewed, one opted out
    by_phone = {r.phone: r for r in rows}
    assert by_phone["+48600000007"].body == "Hi Client7, your code C7 gives 20% off"
    assert {r.status for r in rows} == {"queued"} and {r.sender for r in rows} == {"BShop"}
    assert "+48600000005" not in by_phone
    page = admin.get("/panel/campaigns/c/winter-sale").text
    assert "Download the 3 rejected rows" in page
    csv_answer = admin.get("/panel/campaigns/rejected.csv", name="winter-sale")
    assert csv_answer.headers["content-type"].startswith("text/csv")
    got = csv_answer.text.splitlines()
    assert got[0] == "line,phone,reason" and len(got) == 4
    assert got[1].startswith("7,+48600000005,opted out")
    assert got[2].startswith("1000,12ab,not a phone number")
    assert got[3].startswith("1001,+48600000000,duplicate")
    # Account A sees neither the campaign nor its rejected rows.
    assert "winter-sale" not in world.admin_a.get("/panel/campaigns").text
    assert world.admin_a.get("/panel/campaigns/rejected.csv", name="winter-sale").text == (
        "line,phone,reason\r\n"
    )
    assert "campaign.send" in admin.get("/panel/account/audit").text
    engine = stack.db()
    # The campaign page draws its progress curve once messages move.
    with engine.begin() as conn:
        conn.execute(
            update(messages)
            .where(messages.c.submission_id.in_(
                select(submissions.c.id).where(submissions.c.campaign == "winter-sale")
            ))
            .values(status="delivered", sent_at=time.time(), final_at=time.time() + 2,
                    status_at=time.time() + 2)
        )  # fmt: skip
    engine.dispose()
    campaign_page = admin.get("/panel/campaigns/c/winter-sale").text
    assert 'aria-label="Campaign progress"' in campaign_page and "100%" in campaign_page


def test_a_scheduled_campaign_waits_and_a_window_moves_its_start(world: World) -> None:
    admin = world.admin_b
    token = csrf_of(admin.get("/panel/campaigns/new").text)
    tomorrow = time.strftime("%Y-%m-%dT10:30", time.gmtime(time.time() + 86400))
    form = {
        "csrf_token": token,
        "name": "later",
        "sender": "BShop",
        "text": "See you {phone}",
        "numbers": "+48111000001\n+48111000002",
        "schedule": tomorrow,
        "window_from": "12:00",
        "window_to": "14:00",
    }
    page = admin.post("/panel/campaigns/preview", **form)
    assert page.status_code == 200, page.text
    assert tomorrow[:10] + " 12:00" in page.text  # 10:30 is before the window: starts at 12:00
    draft_id = re.search(r'name="draft_id" value="([^"]+)"', page.text)
    assert draft_id
    assert (
        admin.post(
            "/panel/campaigns/send", csrf_token=token, draft_id=draft_id.group(1)
        ).status_code
        == 303
    )
    engine = world.stack.db()
    with engine.connect() as conn:
        rows = conn.execute(
            select(messages.c.status, messages.c.scheduled_at)
            .join(submissions, submissions.c.id == messages.c.submission_id)
            .where(submissions.c.campaign == "later")
        ).all()
    engine.dispose()
    assert len(rows) == 2 and {r.status for r in rows} == {"scheduled"}
    assert time.strftime("%H:%M", time.gmtime(rows[0].scheduled_at)) == "12:00"
    bad = admin.post("/panel/campaigns/preview", **{**form, "name": "later", "window_to": ""})
    assert bad.status_code == 400
    assert "A campaign with this name exists" in bad.text and "both ends" in bad.text


def test_dashboard_charts_are_svg_of_the_accounts_own_traffic(world: World) -> None:
    r = world.b.send(
        {"sender": "BShop", "message": "chart me", "phoneNumbers": ["+48111000101", "+48111000102"]}
    )
    assert r.status_code == 200
    failed_id = r.json()["data"][0]["id"]
    engine = world.stack.db()
    with engine.begin() as conn:
        conn.execute(
            update(messages)
            .where(messages.c.id == failed_id)
            .values(status="undelivered", error_code="ABSENT_SUBSCRIBER", connection="default")
        )
    engine.dispose()
    support_b = logged_in(world.stack, make_user(world.stack, world.b.account_id, "support"))
    page = support_b.get("/panel/dashboard")
    assert page.status_code == 200
    assert page.text.count("<svg") >= 4 and "<script" not in page.text.split("</head>")[1]
    assert "ABSENT_SUBSCRIBER" in page.text  # failures by reason
    assert "Per connection" not in page.text  # operators only
    total = int(re.search(r"\(UTC\): <strong>(\d+)</strong>", page.text).group(1))  # type: ignore[union-attr]
    assert total >= 2  # these two (and any campaign sent before)
    week = support_b.get("/panel/dashboard", period="7d")
    assert week.status_code == 200 and "last 7 days" in week.text
    again = support_b.get("/panel/dashboard", period="7d").text  # the week is reused 10 min
    assert "computed at most 10 minutes ago" in again and "ABSENT_SUBSCRIBER" in again
    a_page = world.admin_a.get("/panel/dashboard").text
    assert "ABSENT_SUBSCRIBER" not in a_page
    op = world.operator.get("/panel/dashboard").text
    assert "Per connection" in op and ">default<" in op


def test_export_streams_every_match_masked_for_support(world: World) -> None:
    r = world.b.send(
        {
            "sender": "BShop",
            "message": "Your verification code is 482913",
            "phoneNumbers": [f"+4811100{n:04d}" for n in range(30)],
        }
    )
    assert r.status_code == 200
    support_b = logged_in(world.stack, make_user(world.stack, world.b.account_id, "support"))
    answer = support_b.get("/panel/messages.csv", sender="BShop")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert rows[0][:3] == ["id", "created", "direction"]
    codes = [row for row in rows[1:] if "verification code" in row[-1]]
    assert len(codes) == 30 and all(row[-1].endswith("••••••") for row in codes)
    assert "482913" not in answer.text
    assert len(rows) - 1 > 1000  # every match, not one page of 50
    admin_text = world.admin_b.get("/panel/messages.csv", sender="BShop").text
    assert "482913" in admin_text
    assert "winter-sale" not in world.admin_a.get("/panel/messages.csv").text
    assert "BShop" not in world.admin_a.get("/panel/messages.csv").text
    bad = support_b.get("/panel/messages.csv", phone="12ab")
    assert bad.status_code == 400


def test_operator_sees_connections_and_their_breakers(world: World) -> None:
    page = world.operator.get("/panel/operator/connections")
    assert page.status_code == 200
    assert "<strong>default</strong>" in page.text and ">closed<" in page.text
    r = redis.Redis.from_url(world.stack.env["REDIS_URL"])
    try:
        r.hset(KEY_PREFIX + "default", mapping={"state": 1, "since": time.time()})
        assert ">open<" in world.operator.get("/panel/operator/connections").text
    finally:
        r.delete(KEY_PREFIX + "default")
        r.close()
    assert world.admin_a.get("/panel/operator/connections").status_code == 403


def test_the_clis_actions_are_in_the_audit_log(world: World) -> None:
    def cli(*argv: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "dispatcher.cli", *argv],
            env=world.stack.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr

    cli("senders", "request", "ws-b", "CliName", "--by", "ann")
    cli("senders", "approve", "ws-b", "CliName", "--by", "ann")
    cli("accounts", "rotate-key", "ws-b", "--overlap", "3600")
    log = html.unescape(world.admin_b.get("/panel/account/audit").text)
    for action in ("sender.request", "sender.approve", "key.rotate"):
        assert action in log, action
    assert "ann" in log and "cli:" in log
    assert "CliName" not in world.admin_a.get("/panel/account/audit").text


def test_with_billing_the_preview_prices_the_campaign_and_unpaid_rows_are_rejected() -> None:
    with running_stack(workers={}, scheduler=False, billing=1, prices_reload_s=0) as stack:
        shop = stack.account("billed-shop")
        engine = stack.db()
        with engine.begin() as conn:
            add_price(conn, None, NewPrice("+4860", "0.07", "PLN"), "t")  # not +4870: unpriced
            post(conn, shop.account_id, "topup", 100, 985, "t")  # 1.00 PLN: 14 parts
            set_limits(conn, shop.account_id, 985, credit_limit=0)
        engine.dispose()
        admin = logged_in(stack, make_user(stack, shop.account_id, "admin"))
        token = csrf_of(admin.get("/panel/campaigns/new").text)
        numbers = "\n".join([f"+4860{n:07d}" for n in range(20)] + ["+48700000001"])
        form = {"csrf_token": token, "name": "billed", "sender": "Shop", "text": "Hi"}
        page = admin.post("/panel/campaigns/preview", **form, numbers=numbers)
        assert page.status_code == 200, page.text
        price = re.search(r'id="preview-price">([^<]+)<', page.text)
        assert price and price.group(1).startswith("1.40 PLN")  # 20 × 0.07
        assert "no price for 1 recipient" in price.group(1)
        draft_id = re.search(r'name="draft_id" value="([^"]+)"', page.text)
        assert draft_id
        sent = admin.post("/panel/campaigns/send", csrf_token=token, draft_id=draft_id.group(1))
        assert sent.status_code == 303
        rejected = admin.get("/panel/campaigns/rejected.csv", name="billed").text.splitlines()
        reasons = " ".join(rejected[1:])
        assert len(rejected) - 1 == 7  # 6 over the balance (14 paid of 20), 1 unpriced
        assert "no price" in reasons and "balance" in reasons
