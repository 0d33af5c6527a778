"""The support panel over real HTTP, on a real database and Redis: logins, sessions, CSRF,
the login rate limit, account isolation, search by any phone spelling, masking, campaigns.

The stack here has no workers: messages stay ``queued``, which is all these tests need (the
browser test follows a message through sending, its report and its webhook).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.browser.panel_helpers import (
    PASSWORD,
    PanelClient,
    add_inbound,
    add_opt_out,
    csrf_of,
    logged_in,
    make_user,
)
from tests.support.stack import ApiClient, Stack, running_stack

pytestmark = pytest.mark.integration
PHONE = "+48111222333"


@pytest.fixture(scope="module")
def pstack() -> Iterator[Stack]:
    with running_stack(
        workers={},
        scheduler=False,
        default_region="PL",
        panel_trust_forwarded_proto=1,
        trusted_proxies="127.0.0.1",  # the test client plays the TLS proxy
        panel_login_attempts=3,
    ) as s:
        yield s


@pytest.fixture(scope="module")
def acct_a(pstack: Stack) -> ApiClient:
    return pstack.account("panel-a")


@pytest.fixture(scope="module")
def acct_b(pstack: Stack) -> ApiClient:
    return pstack.account("panel-b")


def send(client: ApiClient, text: str, *phones: str, **headers: str) -> list[str]:
    r = client.send({"sender": "ACME", "message": text, "phoneNumbers": list(phones)}, **headers)
    assert r.status_code == 200, r.text
    return [d["id"] for d in r.json()["data"]]


def test_pages_need_a_login(pstack: Stack) -> None:
    anon = PanelClient(pstack.api_url)
    for path in ("/panel/messages", "/panel/campaigns", "/panel/suppressions", "/panel/nope"):
        r = anon.get(path)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/panel/login?next=%2Fpanel%2F")
    assert anon.get("/panel").headers["location"] == "/panel/messages"


def test_search_accepts_every_common_phone_spelling(pstack: Stack, acct_a: ApiClient) -> None:
    (mid,) = send(acct_a, "Hello from the panel test", PHONE)
    other = send(acct_a, "Someone else", "+48500100200")[0]
    panel = logged_in(pstack, make_user(pstack, acct_a.account_id))
    for spelling in ("0048 111 222 333", PHONE, "48111222333", "111 222 333", "+48 111-222-333"):
        page = panel.get("/panel/messages", phone=spelling)
        assert page.status_code == 200
        assert f"/panel/messages/{mid}" in page.text, spelling
        assert other not in page.text, spelling
    bad = panel.get("/panel/messages", phone="12ab")
    assert bad.status_code == 200
    assert "Not a phone number we can read" in bad.text
    assert 'aria-invalid="true"' in bad.text
    detail = panel.get(f"/panel/messages/{mid}")
    assert detail.status_code == 200
    assert "Hello from the panel test" in detail.text
    assert "<title>Message to +48111222333 · smsdispatch panel</title>" in detail.text


def test_filters_and_keyset_pages(pstack: Stack, acct_a: ApiClient) -> None:
    ids = send(acct_a, "page test", *[f"+4850010{n:04d}" for n in range(60)])
    panel = logged_in(pstack, make_user(pstack, acct_a.account_id))
    first = panel.get("/panel/messages", status="queued", lane="bulk", sender="ACME")
    shown = set(re.findall(r"/panel/messages/([0-9a-f-]{36})", first.text))
    assert len(shown) == 50
    nxt = re.search(r'href="(/panel/messages\?[^"]*after=[^"]+)" rel="next"', first.text)
    assert nxt, "no next-page link"
    second = panel.get(nxt.group(1).replace("&amp;", "&"))
    shown2 = set(re.findall(r"/panel/messages/([0-9a-f-]{36})", second.text))
    assert shown2 and not shown & shown2
    assert (
        set(ids)
        <= shown
        | shown2
        | set(re.findall(r"/panel/messages/([0-9a-f-]{36})", panel.get("/panel/messages").text))
        or len(shown | shown2) >= 60
    )
    none = panel.get("/panel/messages", status="delivered")
    assert "No messages" in none.text
    by_id = panel.get("/panel/messages", message_id=ids[0])
    assert set(re.findall(r"/panel/messages/([0-9a-f-]{36})", by_id.text)) == {ids[0]}
    bad_date = panel.get("/panel/messages", date_from="2026-13-01")
    assert "Use a date like" in bad_date.text


def test_an_account_sees_nothing_of_another(
    pstack: Stack, acct_a: ApiClient, acct_b: ApiClient
) -> None:
    (mid,) = send(acct_a, "private to A", "+48111222334")
    (bulk_id, _) = send(acct_a, "bulk of A", "+48111222335", "+48111222336")
    inbound = add_inbound(pstack, acct_a.account_id, "+48111222337", "reply to A")
    add_opt_out(pstack, acct_a.account_id, "+48111222338")
    panel_b = logged_in(pstack, make_user(pstack, acct_b.account_id, "admin"))
    found = panel_b.get("/panel/messages", phone="+48111222334")
    assert mid not in found.text and "No messages" in found.text
    assert panel_b.get("/panel/messages", message_id=mid).text.count(mid) == 1  # the form echo
    incoming = panel_b.get("/panel/messages", direction="in")
    assert inbound not in incoming.text
    missing = panel_b.get("/panel/messages/00000000-0000-0000-0000-000000000000")
    for guessed in (f"/panel/messages/{mid}", f"/panel/messages/{inbound}"):
        r = panel_b.get(guessed)
        assert r.status_code == 404, guessed
        assert "private to A" not in r.text and "reply to A" not in r.text
        assert r.text == missing.text  # exactly what an id that does not exist gets
    engine = pstack.db()
    from sqlalchemy import select

    from dispatcher.store.schema import messages

    with engine.connect() as conn:
        sub_id = conn.execute(select(messages.c.submission_id).where(messages.c.id == bulk_id))
        sub_id = sub_id.scalar_one()
    engine.dispose()
    assert panel_b.get(f"/panel/campaigns/s/{sub_id}").status_code == 404
    assert sub_id not in panel_b.get("/panel/campaigns").text
    assert "+48111222338" not in panel_b.get("/panel/suppressions").text
    r = panel_b.post(
        "/panel/suppressions/remove",
        phone="+48111222338",
        csrf_token=csrf_of(panel_b.get("/panel/suppressions").text),
    )
    assert r.status_code == 404  # B cannot remove A's entry
    panel_a = logged_in(pstack, make_user(pstack, acct_a.account_id, "admin"))
    assert "+48111222338" in panel_a.get("/panel/suppressions").text


def test_csrf_is_required_on_every_form(pstack: Stack, acct_a: ApiClient) -> None:
    add_opt_out(pstack, acct_a.account_id, "+48111222339")
    admin = logged_in(pstack, make_user(pstack, acct_a.account_id, "admin"))
    for token in ("", "forged-token"):
        r = admin.post("/panel/suppressions/remove", phone="+48111222339", csrf_token=token)
        assert r.status_code == 403
        assert "Form expired" in r.text
        assert admin.post("/panel/logout", csrf_token=token).status_code == 403
    assert "+48111222339" in admin.get("/panel/suppressions").text
    # A login form not issued to this browser (no login cookie) is refused too.
    stranger = PanelClient(pstack.api_url)
    r = stranger.post(
        "/panel/login", username="x", password=PASSWORD, csrf_token="guessed", next=""
    )
    assert r.status_code == 403
    # With the session's token, the same request works.
    page = admin.get("/panel/suppressions")
    r = admin.post(
        "/panel/suppressions/remove", phone="+48111222339", csrf_token=csrf_of(page.text)
    )
    assert r.status_code == 303
    assert "+48111222339" not in admin.get("/panel/suppressions").text.split("</form>", 1)[1]


def test_support_cannot_remove_from_the_suppression_list(pstack: Stack, acct_a: ApiClient) -> None:
    add_opt_out(pstack, acct_a.account_id, "+48111222340")
    support = logged_in(pstack, make_user(pstack, acct_a.account_id, "support"))
    page = support.get("/panel/suppressions")
    assert "+48111222340" in page.text
    assert "/panel/suppressions/remove" not in page.text
    r = support.post(
        "/panel/suppressions/remove", phone="+48111222340", csrf_token=csrf_of(page.text)
    )
    assert r.status_code == 403
    assert "+48111222340" in support.get("/panel/suppressions").text


def test_login_rate_limit_refuses_even_the_right_password(pstack: Stack, acct_a: ApiClient) -> None:
    username = make_user(pstack, acct_a.account_id)
    client = PanelClient(pstack.api_url)
    for _ in range(3):  # panel_login_attempts=3 in this stack
        assert client.login(username, "wrong password!").status_code == 401
    r = client.login(username, PASSWORD)
    assert r.status_code == 429
    assert "Too many failed attempts" in r.text
    assert "smsd_panel=" not in r.headers.get("set-cookie", "")
    # Another user from the same address is not locked out by this one.
    assert logged_in(pstack, make_user(pstack, acct_a.account_id)) is not None


def test_session_cookie_flags_and_logout(pstack: Stack, acct_a: ApiClient) -> None:
    username = make_user(pstack, acct_a.account_id)
    plain = PanelClient(pstack.api_url)
    r = plain.login(username)
    (cookie,) = [c for c in r.headers.get_list("set-cookie") if c.startswith("smsd_panel=")]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/panel" in cookie
    assert "Secure" not in cookie
    # Behind a TLS proxy (trusted in this stack's settings) both cookies are Secure. A cookie
    # jar would not send Secure cookies over this plain-HTTP test link, so send them by hand.
    https = {"X-Forwarded-Proto": "https"}
    proxied = PanelClient(pstack.api_url)
    form = proxied.http.get("/panel/login", headers=https)
    assert "Secure" in form.headers["set-cookie"]
    login_cookie = form.headers["set-cookie"].split(";")[0]
    r = httpx.post(
        pstack.api_url + "/panel/login",
        data={"username": username, "password": PASSWORD, "csrf_token": csrf_of(form.text)},
        headers={**https, "Cookie": login_cookie},
    )
    (cookie,) = [c for c in r.headers.get_list("set-cookie") if c.startswith("smsd_panel=")]
    assert "Secure" in cookie
    proxied.http.cookies.set("smsd_panel", cookie.split(";")[0].split("=", 1)[1])
    page = plain.get("/panel/messages")
    assert page.status_code == 200
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert plain.post("/panel/logout", csrf_token=csrf_of(page.text)).status_code == 303
    stale = PanelClient(pstack.api_url)
    stale.http.cookies.set("smsd_panel", dict(plain.http.cookies).get("smsd_panel", "x"))
    assert plain.get("/panel/messages").status_code == 303
    assert stale.get("/panel/messages").status_code == 303
    assert proxied.get("/panel/messages").status_code == 200  # other sessions live on


def test_codes_are_masked_for_support_not_for_admins(pstack: Stack, acct_a: ApiClient) -> None:
    (otp,) = send(acct_a, "Your verification code is 482913. Do not share it.", "+48111222341")
    (plain,) = send(acct_a, "Order 48291 has shipped", "+48111222341")
    support = logged_in(pstack, make_user(pstack, acct_a.account_id, "support"))
    admin = logged_in(pstack, make_user(pstack, acct_a.account_id, "admin"))
    s_page = support.get(f"/panel/messages/{otp}").text
    assert "482913" not in s_page and "••••••" in s_page
    assert "482913" in admin.get(f"/panel/messages/{otp}").text
    listing = support.get("/panel/messages", phone="+48111222341").text
    assert "Order 48291 has shipped" in listing and "482913" not in listing
    assert "482913" in admin.get("/panel/messages", phone="+48111222341").text
    assert "48291" in support.get(f"/panel/messages/{plain}").text  # not code-like: shown


def test_campaigns_group_requests_by_header_and_count_statuses(
    pstack: Stack, acct_a: ApiClient
) -> None:
    name = "spring-sale-2026"
    send(acct_a, "Sale!", "+48500100301", "+48500100302", **{"Smsdispatch-Campaign": name})
    send(acct_a, "Sale!", "+48500100303", **{"Smsdispatch-Campaign": name})
    bulk = send(
        acct_a, "One request, three numbers", "+48500100304", "+48500100305", "+48500100306"
    )
    bad = acct_a.send(
        {"sender": "ACME", "message": "x", "phoneNumbers": [PHONE]},
        **{"Smsdispatch-Campaign": "x" * 65},
    )
    assert bad.status_code == 400
    err = bad.json()["errors"][0]
    assert err["code"] == "invalid_campaign"
    assert err["meta"]["parameter"] == "Smsdispatch-Campaign"
    panel = logged_in(pstack, make_user(pstack, acct_a.account_id))
    listing = panel.get("/panel/campaigns")
    assert name in listing.text and "2 requests" in listing.text
    page = panel.get(f"/panel/campaigns/c/{name}")
    assert page.status_code == 200
    assert re.search(r"queued</span></td><td class=\"num\">3<", page.text), page.text
    assert page.text.count("/panel/messages/") == 3
    assert panel.get("/panel/campaigns/c/no-such-campaign").status_code == 404
    one = re.search(r'href="(/panel/campaigns/s/[0-9a-f-]{36})"', listing.text)
    assert one, "a request to several numbers is a campaign"
    page = panel.get(one.group(1))
    assert page.status_code == 200
    assert {m for m in bulk if f"/panel/messages/{m}" in page.text} == set(bulk)


def test_incoming_messages_are_listed_and_shown(pstack: Stack, acct_a: ApiClient) -> None:
    inbound = add_inbound(pstack, acct_a.account_id, "+48111222342", "Can you call me back?")
    panel = logged_in(pstack, make_user(pstack, acct_a.account_id))
    listing = panel.get("/panel/messages", direction="in", phone="0048 111 222 342")
    assert f"/panel/messages/{inbound}" in listing.text
    detail = panel.get(f"/panel/messages/{inbound}")
    assert detail.status_code == 200 and "Can you call me back?" in detail.text
    assert (
        "Applies to outgoing messages only"
        in panel.get("/panel/messages", direction="in", status="sent").text
    )


def test_cli_creates_users_with_a_password_from_stdin(pstack: Stack, acct_a: ApiClient) -> None:
    argv = [sys.executable, "-m", "dispatcher.cli", "users", "create", "cli-admin"]
    argv += ["--account", "panel-a", "--role", "admin"]
    env = pstack.env
    done = subprocess.run(argv, input=PASSWORD + "\n", env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert '"role": "admin"' in done.stdout
    again = subprocess.run(argv, input=PASSWORD + "\n", env=env, capture_output=True, text=True)
    assert again.returncode == 1 and "taken" in again.stderr
    short = subprocess.run(
        [*argv[:5], "cli-x", *argv[6:]], input="short\n", env=env, capture_output=True, text=True
    )
    assert short.returncode == 4 and "password" in short.stderr  # Exit.INPUT
    assert logged_in(pstack, "cli-admin").get("/panel/messages").status_code == 200


def test_an_admin_pauses_resumes_and_cancels_a_campaign(
    pstack: Stack, acct_a: ApiClient, acct_b: ApiClient
) -> None:
    name = "control-me"
    ids = send(acct_a, "Sale", "+48500100401", "+48500100402", **{"Smsdispatch-Campaign": name})
    support = logged_in(pstack, make_user(pstack, acct_a.account_id, "support"))
    page = support.get(f"/panel/campaigns/c/{name}")
    assert "State: <strong>running</strong>" in page.text
    assert 'id="campaign-control"' not in page.text  # buttons for admins only
    r = support.post(
        "/panel/campaigns/control", name=name, action="pause", csrf_token=csrf_of(page.text)
    )
    assert r.status_code == 403
    admin = logged_in(pstack, make_user(pstack, acct_a.account_id, "admin"))
    page = admin.get(f"/panel/campaigns/c/{name}")
    assert 'value="pause"' in page.text and 'value="cancel"' in page.text
    token = csrf_of(page.text)
    bad = admin.post("/panel/campaigns/control", name=name, action="pause", csrf_token="forged")
    assert bad.status_code == 403
    r = admin.post("/panel/campaigns/control", name=name, action="pause", csrf_token=token)
    assert r.status_code == 303 and r.headers["location"].endswith("?done=pause")
    page = admin.get(r.headers["location"])
    assert "State: <strong>paused</strong>" in page.text and "Paused:" in page.text
    assert re.search(r"paused</span></td><td class=\"num\">2<", page.text), page.text
    assert 'value="resume"' in page.text
    r = admin.post("/panel/campaigns/control", name=name, action="resume", csrf_token=token)
    assert "State: <strong>running</strong>" in admin.get(r.headers["location"]).text
    r = admin.post("/panel/campaigns/control", name=name, action="cancel", csrf_token=token)
    page = admin.get(r.headers["location"])
    assert "State: <strong>cancelled</strong>" in page.text
    assert 'id="campaign-control"' not in page.text  # final: nothing to press
    assert all(acct_a.status(i) == "cancelled" for i in ids)
    # Another account's admin cannot touch it (404), nor can a made-up action.
    other = logged_in(pstack, make_user(pstack, acct_b.account_id, "admin"))
    token_b = csrf_of(other.get("/panel/campaigns").text)
    r = other.post("/panel/campaigns/control", name=name, action="pause", csrf_token=token_b)
    assert r.status_code == 404
    r = admin.post("/panel/campaigns/control", name=name, action="explode", csrf_token=token)
    assert r.status_code == 404
