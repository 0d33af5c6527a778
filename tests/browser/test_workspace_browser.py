"""The panel as the customer's workspace, walked in a real browser (Debian's Chromium driven
by Playwright) against the whole running pipeline, as a customer and an operator would:

* an admin creates an API key, sends with it using curl, and finds the message in the panel;
* sets a webhook URL and sends a test event, seeing the receiver's answer;
* uploads a 1,000-row CSV with placeholders, previews it, sends it and watches it complete
  (the simulator delivers every message), then sees the dashboard's charts move;
* a support user reaches no admin page; an operator approves a sender name, which then sends.

Writes a screenshot of every page into ``docs/screenshots/`` (referenced from docs/panel.md).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import log_in, new_page
from tests.browser.panel_helpers import make_user
from tests.support.receiver import Answer, Receiver
from tests.support.stack import ROOT, ApiClient, Stack, running_stack, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.integration]
SHOTS = os.path.join(ROOT, "docs", "screenshots")
TOKEN = "workspace-browser-callback-token"


@dataclass
class World:
    stack: Stack
    rx: Receiver
    shop: ApiClient
    admin: str
    support: str
    operator: str


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with (
        Receiver() as rx,
        running_stack(
            workers={},
            carrier_callback_token=TOKEN,
            webhook_allow_private=1,
            default_region="PL",
            auth_cache_ttl_s=1,
        ) as stack,
    ):
        stack.start_workers(("priority", "bulk", "dlr", "webhooks"))
        stack.sim_config(dlr_mix={"DELIVRD": 1.0})
        shop = stack.account("acme-shop", priority=True, sender_policy="registered")
        platform = stack.account("platform")
        yield World(
            stack,
            rx,
            shop,
            make_user(stack, shop.account_id, "admin", "piotr.admin"),
            make_user(stack, shop.account_id, "support", "anna.support"),
            make_user(stack, platform.account_id, "operator", "olga.operator"),
        )


def shot(page: Page, name: str) -> None:
    page.screenshot(path=os.path.join(SHOTS, f"panel-{name}.png"), full_page=True)


def test_1_operator_approves_a_sender_name_the_admin_requested(
    world: World, browser: Browser
) -> None:
    base = world.stack.api_url
    admin = new_page(browser)
    log_in(admin, base, world.admin, landed=True)
    admin.get_by_role("link", name="Sender names").click()
    admin.get_by_label("Sender name").fill("ACME")
    admin.get_by_role("button", name="Request").click()
    expect(admin.get_by_role("status")).to_contain_text("waiting for approval")
    expect(admin.locator("table")).to_contain_text("pending")
    refused = world.shop.send({"sender": "ACME", "message": "hi", "phoneNumbers": ["+48111222333"]})
    assert refused.status_code == 400 and "waiting" in refused.text
    op = new_page(browser)
    log_in(op, base, world.operator, landed=True)
    op.get_by_role("link", name="Operator").click()
    expect(op).to_have_title("Sender names to approve · smsdispatch panel")
    expect(op.locator("table").first).to_contain_text("acme-shop")
    shot(op, "operator-senders")
    op.get_by_role("button", name="Approve ACME for acme-shop").click()
    expect(op.get_by_role("status")).to_contain_text("ACME approved")
    admin.reload()
    expect(admin.locator("table")).to_contain_text("approved")
    shot(admin, "senders")
    sent = world.shop.send({"sender": "ACME", "message": "hi", "phoneNumbers": ["+48111222333"]})
    assert sent.status_code == 200, sent.text
    op.get_by_role("link", name="Accounts").click()
    expect(op.locator("table")).to_contain_text("acme-shop")
    shot(op, "operator-accounts")
    op.get_by_role("link", name="Connections").click()
    expect(op.locator("table")).to_contain_text("closed")
    shot(op, "operator-connections")
    op.get_by_role("link", name="Platform audit log").click()
    expect(op.locator("table")).to_contain_text("sender.approve")
    shot(op, "operator-audit")


def test_2_admin_creates_a_key_sends_with_curl_and_finds_the_message(
    world: World, browser: Browser
) -> None:
    base = world.stack.api_url
    page = new_page(browser)
    log_in(page, base, world.admin, landed=True)
    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Name", exact=True).fill("shop backend")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_role("alert")).to_contain_text("shown only once")
    expect(page.get_by_role("button", name="Copy").first).to_be_visible()  # the script ran
    app_key = page.locator("#new-app-key").inner_text().strip()
    authorization = page.locator("#new-authorization").inner_text().strip()
    assert len(app_key) == 32 and len(authorization) == 128
    shot(page, "keys")
    body = {
        "sender": "ACME",
        "message": "Hi! Your order #10234 has shipped.",
        "phoneNumbers": ["+48 111 222 444"],
    }
    done = subprocess.run(
        ["curl", "-sS", "--max-time", "30", "-X", "POST", base + "/v2.1/sms",
         "-H", f"Application-Key: {app_key}", "-H", f"Authorization: {authorization}",
         "-H", "Content-Type: application/json", "-d", json.dumps(body)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    answer = json.loads(done.stdout)
    message_id = answer["data"][0]["id"]
    page.get_by_role("link", name="Messages").first.click()
    page.get_by_label("Phone number").fill("111 222 444")
    page.get_by_role("button", name="Search").click()
    expect(page.locator(f'a[href="/panel/messages/{message_id}"]')).to_be_visible()
    wait_until(lambda: world.shop.status(message_id) == "delivered", 60, what="delivered")
    page.locator(f'a[href="/panel/messages/{message_id}"]').click()
    expect(page.locator(".status-line")).to_contain_text("delivered")
    page.get_by_role("link", name="API keys").click()
    row = page.locator("tr", has_text="shop backend")
    expect(row).not_to_contain_text("never")  # last used
    page.get_by_role("link", name="Audit log").click()
    expect(page.locator("table")).to_contain_text("key.create")
    shot(page, "audit")


def test_3_admin_sets_a_webhook_and_sends_a_test_event(world: World, browser: Browser) -> None:
    base = world.stack.api_url
    world.rx.script("/acme/hooks", Answer(200, '{"received": true}'))
    page = new_page(browser)
    log_in(page, base, world.admin, landed=True)
    page.get_by_role("link", name="Webhooks").click()
    page.get_by_label("Main URL (delivery reports)").fill("http://169.254.169.254/latest")
    page.get_by_role("button", name="Save URLs").click()
    expect(page.locator("#wh-url-error")).to_contain_text("cloud metadata")
    page.get_by_label("Main URL (delivery reports)").fill(world.rx.url("/acme/hooks"))
    page.get_by_role("button", name="Save URLs").click()
    expect(page.locator("#new-secret")).to_be_visible()
    page.get_by_role("button", name="Send a test event").click()
    answer = page.locator("#test-answer")
    expect(answer).to_contain_text("The receiver answered")
    expect(answer).to_contain_text("200")
    expect(answer).to_contain_text('{"received": true}')
    (got,) = world.rx.requests("/acme/hooks")
    assert b'"type":"webhook.test"' in got.body and "webhook-signature" in got.headers
    shot(page, "webhooks")


def test_4_a_1000_row_csv_with_placeholders_is_previewed_sent_and_completes(
    world: World, browser: Browser, tmp_path: object
) -> None:
    base = world.stack.api_url
    path = os.path.join(str(tmp_path), "customers.csv")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("first_name,phone,coupon\n")
        for n in range(999):
            fh.write(f"Client{n},+48 600 {n // 1000:03d} {n % 1000:03d},WINTER{n}\n")
        fh.write("Broken,12ab,NONE\n")
    page = new_page(browser)
    log_in(page, base, world.admin, landed=True)
    page.get_by_role("link", name="Campaigns").click()
    page.get_by_role("link", name="New campaign").click()
    page.get_by_label("Campaign name").fill("winter-sale")
    page.get_by_label("Sender name").fill("ACME")
    page.get_by_label("CSV file").set_input_files(path)
    page.get_by_label("Text").fill("Hi {first_name}, use {coupon} for 20% off at ACME")
    preview = page.locator("#campaign-preview")
    # The live preview (the script asks the server while the user types) …
    expect(preview).to_contain_text("Hi Client0, use WINTER0 for 20% off at ACME")
    expect(preview).to_contain_text("Send 999 messages")
    expect(preview.locator("#preview-rows tbody tr")).to_have_count(10)
    expect(preview).to_contain_text("GSM-7")
    shot(page, "campaign-new")
    preview.get_by_role("button", name="Send 999 messages").click()
    expect(page).to_have_title("Campaign winter-sale · smsdispatch panel")
    expect(page.get_by_role("link", name="Download the 1 rejected row (CSV)")).to_be_visible()

    def complete() -> bool:
        page.reload()
        return "100%" in page.locator(".big-number").inner_text()

    wait_until(complete, 240, interval=2, what="campaign complete")
    expect(page.locator("table.compact")).to_contain_text("delivered")
    expect(page.locator('svg[aria-label="Campaign progress"]')).to_be_visible()
    shot(page, "campaign")
    with page.expect_download() as dl:
        page.get_by_role("link", name="Download the 1 rejected row (CSV)").click()
    with open(dl.value.path(), encoding="utf-8") as fh:
        rejected = fh.read()
    assert rejected.splitlines()[1].startswith("1001,12ab,not a phone number")


def test_5_the_dashboard_charts_move(world: World, browser: Browser) -> None:
    base = world.stack.api_url
    page = new_page(browser)
    log_in(page, base, world.admin, landed=True)
    page.get_by_role("link", name="Dashboard").click()
    before = int(page.locator(".page-head strong").inner_text())
    chart = page.locator('svg[aria-label="Messages per hour by status"]')
    delivered_before = delivered_in(chart.inner_html())
    r = world.shop.send(
        {"sender": "ACME", "message": "one more", "phoneNumbers": ["+48111222555", "+48111222556"]}
    )
    assert r.status_code == 200
    wait_until(lambda: world.shop.status(r.json()["data"][0]["id"]) == "delivered", 60)
    page.reload()
    assert int(page.locator(".page-head strong").inner_text()) == before + 2
    assert delivered_in(chart.inner_html()) >= delivered_before + 2  # the bars grew
    expect(page.locator("#delivery-times")).to_contain_text("p99")
    shot(page, "dashboard")


def delivered_in(svg: str) -> int:
    """Messages in the "delivered" segments of a status chart (from the bars' titles)."""
    return sum(int(n) for n in re.findall(r": (\d+) delivered</title>", svg))


def test_6_support_reaches_no_admin_page(world: World, browser: Browser) -> None:
    base = world.stack.api_url
    page = new_page(browser)
    log_in(page, base, world.support, landed=True)
    nav = page.get_by_role("navigation", name="Main")
    for hidden in ("API keys", "Webhooks", "Audit log", "Operator"):
        expect(nav.get_by_role("link", name=hidden)).to_have_count(0)
    for path in (
        "/panel/account/api",
        "/panel/account/webhooks",
        "/panel/account/audit",
        "/panel/campaigns/new",
        "/panel/operator/senders",
        "/panel/operator/accounts",
        "/panel/operator/audit",
    ):
        r = page.goto(base + path)
        assert r is not None and r.status == 403, path
        expect(page.locator("h1")).to_have_text(re.compile("(Admins|Operators) only"))
    shot(page, "forbidden")
    page.goto(base + "/panel/senders")
    expect(page.get_by_role("button", name="Request")).to_have_count(0)
    page.goto(base + "/panel/messages?phone=111+222+444")
    expect(page.get_by_role("link", name="Export all matches as CSV")).to_be_visible()
    shot(page, "messages-support")
    page.goto(base + "/panel/campaigns")
    expect(page.get_by_role("link", name="winter-sale")).to_be_visible()
    expect(page.get_by_role("link", name="New campaign")).to_have_count(0)
    shot(page, "campaigns")
    page.goto(base + "/panel/suppressions")
    shot(page, "suppressions")
    page.goto(base + "/panel/messages?direction=in")
    shot(page, "incoming")
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_title("Sign in · smsdispatch panel")
    shot(page, "login")
