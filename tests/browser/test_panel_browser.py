"""The support panel in a real browser (Debian's Chromium driven by Playwright) against the
whole running pipeline: a message really goes through the simulator, gets its delivery report
and its webhook attempts, and support finds all of it by phone number.

Also: account isolation (also by guessed URLs), CSRF refusal and the login rate limit, as a
browser sees them. Writes the screenshots in ``docs/screenshots/``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, expect
from sqlalchemy import update

from dispatcher.store import webhook_settings as webhook_admin
from dispatcher.store.schema import accounts
from tests.browser.conftest import log_in, new_page
from tests.browser.panel_helpers import make_user
from tests.support.receiver import Answer, Receiver
from tests.support.stack import ROOT, ApiClient, Stack, running_stack, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.integration]
SHOTS = os.path.join(ROOT, "docs", "screenshots")
TOKEN = "browser-test-callback-token"
PHONE = "+48111222333"


@dataclass
class Seeded:
    """What the module's stack holds."""

    stack: Stack
    otp_id: str
    support_a: str
    admin_a: str
    user_b: str
    hook_url: str
    shop: ApiClient


@pytest.fixture(scope="module")
def seeded() -> Iterator[Seeded]:
    with (
        Receiver() as rx,
        running_stack(
            workers={},  # started below, side by side: one after another takes twice as long
            carrier_callback_token=TOKEN,
            webhook_allow_private=1,
            default_region="PL",
            panel_login_attempts=3,
        ) as stack,
    ):
        stack.start_workers(("priority", "bulk", "dlr", "webhooks"))
        stack.sim_config(dlr_mix={"DELIVRD": 1.0})
        shop = stack.account("acme-shop", priority=True)
        other = stack.account("other-company")
        hook = rx.url("/acme/sms-status")
        otp_hook = rx.url("/acme/otp-status")
        # The endpoint of the OTP's webhook is briefly down: its first attempt gets a 503.
        rx.script("/acme/otp-status", Answer(503, "maintenance", {"Retry-After": "1"}), Answer(200))
        engine = stack.db()
        with engine.begin() as conn:
            conn.execute(
                update(accounts).where(accounts.c.id == shop.account_id).values(webhook_url=hook)
            )
            webhook_admin.ensure_secret(conn, shop.account_id)
        engine.dispose()

        def send(text: str, phones: list[str], **extra: object) -> list[str]:
            headers = {}
            if "campaign" in extra:
                headers["Smsdispatch-Campaign"] = str(extra.pop("campaign"))
            body = {"sender": "ACME", "message": text, "phoneNumbers": phones, **extra}
            r = shop.send(body, **headers)
            assert r.status_code == 200, r.text
            return [d["id"] for d in r.json()["data"]]

        send("Hi! Your order #10234 has shipped. Track it at acme.example/t/10234", [PHONE])
        send(
            "Black Friday at ACME: -30% on everything until Sunday. Reply STOP to opt out.",
            [PHONE, "+48500100200", "+48500100201", "+48500100202", "+48500100203"],
            campaign="black-friday-2026",
        )
        (otp_id,) = send(
            "Your ACME verification code is 482913. It expires in 5 minutes.",
            [PHONE],
            priority=True,
            webhookUrl=otp_hook,
        )
        other_id = send_other(other)
        assert other_id
        wait_until(lambda: shop.status(otp_id) == "delivered", 60, what="OTP delivered")
        wait_until(lambda: len(rx.requests("/acme/otp-status")) >= 2, 60, what="webhook retry")
        time.sleep(0.5)  # the second attempt's record is written after the answer
        yield Seeded(
            stack,
            otp_id,
            make_user(stack, shop.account_id, "support", "anna.support"),
            make_user(stack, shop.account_id, "admin", "piotr.admin"),
            make_user(stack, other.account_id, "support", "eve.other"),
            otp_hook,
            shop,
        )


def send_other(client: object) -> str:
    """A message of the other account to the same number (must never show for the shop)."""
    r = client.send(  # type: ignore[attr-defined]
        {"sender": "OTHERCO", "message": "Other company's secret", "phoneNumbers": [PHONE]}
    )
    assert r.status_code == 200, r.text
    return str(r.json()["data"][0]["id"])


def test_support_finds_the_code_and_sees_its_report_and_webhooks(
    seeded: Seeded, browser: Browser
) -> None:
    base = seeded.stack.api_url
    page = new_page(browser, 860)
    page.goto(base + "/panel/messages")
    expect(page).to_have_title("Sign in · smsdispatch panel")
    log_in(page, base, seeded.support_a)
    expect(page).to_have_title("Messages · smsdispatch panel")
    for spelling in ("0048 111 222 333", "+48111222333"):
        page.get_by_label("Phone number").fill(spelling)
        page.get_by_role("button", name="Search").click()
        rows = page.locator("table tbody tr")
        expect(rows).to_have_count(3)  # shipped, campaign, OTP: not the other account's
        expect(page.locator(f'a[href="/panel/messages/{seeded.otp_id}"]')).to_be_visible()
        expect(page.get_by_text("OTHERCO")).to_have_count(0)
    expect(page.locator("table")).to_contain_text("verification code is ••••••")
    page.screenshot(path=os.path.join(SHOTS, "panel-search.png"), full_page=True)

    page.locator(f'a[href="/panel/messages/{seeded.otp_id}"]').click()
    expect(page).to_have_title("Message to +48111222333 · smsdispatch panel")
    expect(page.locator(".status-line")).to_contain_text("delivered")
    report = page.locator("section", has=page.get_by_role("heading", name="Delivery report"))
    expect(report).to_contain_text("Delivered to the handset")
    expect(report).to_contain_text("DELIVRD")
    timeline = page.locator("ol.timeline")
    for step in ("Accepted by the API", "Queued for sending", "Accepted by the carrier"):
        expect(timeline).to_contain_text(step)
    expect(timeline).to_contain_text("Delivery report")
    webhooks = page.locator("section", has=page.get_by_role("heading", name="Webhooks"))
    expect(webhooks).to_contain_text(seeded.hook_url)
    attempts = webhooks.locator("tbody tr")
    expect(attempts).to_have_count(2)
    expect(attempts.nth(0)).to_contain_text("503")
    expect(attempts.nth(1)).to_contain_text("200")
    expect(webhooks).to_contain_text(" ms")
    # Support does not see the code itself.
    expect(page.locator(".sms-body")).to_contain_text("••••••")
    expect(page.locator(".sms-body")).not_to_contain_text("482913")
    page.screenshot(path=os.path.join(SHOTS, "panel-message.png"), full_page=True)

    admin = new_page(browser, 860)
    log_in(admin, base, seeded.admin_a)
    admin.goto(f"{base}/panel/messages/{seeded.otp_id}")
    expect(admin.locator(".sms-body")).to_contain_text("482913")
    admin.goto(base + "/panel/campaigns")
    expect(admin.get_by_role("link", name="black-friday-2026")).to_be_visible()


def test_an_admin_pauses_resumes_and_cancels_a_campaign(seeded: Seeded, browser: Browser) -> None:
    """The campaign page's buttons (docs/campaigns.md): scheduled messages an hour ahead, so
    the campaign is still waiting while the admin presses them."""
    r = seeded.shop.send(
        {
            "sender": "ACME",
            "message": "Spring sale preview: -20% for subscribers.",
            "phoneNumbers": ["+48500100300", "+48500100301", "+48500100302"],
            "scheduleTime": int(time.time()) + 3600,
        },
        **{"Smsdispatch-Campaign": "spring-preview"},
    )
    assert r.status_code == 200, r.text
    base = seeded.stack.api_url
    support = new_page(browser, 860)
    log_in(support, base, seeded.support_a)
    support.goto(base + "/panel/campaigns/c/spring-preview")
    expect(support.locator("#campaign-state")).to_contain_text("running")
    expect(support.get_by_role("button", name="Pause")).to_have_count(0)  # admins only
    page = new_page(browser, 860)
    log_in(page, base, seeded.admin_a)
    page.goto(base + "/panel/campaigns/c/spring-preview")
    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_text("Paused: its unsent messages wait")).to_be_visible()
    expect(page.locator("#campaign-state")).to_contain_text("paused")
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#campaign-state")).to_contain_text("running")
    page.get_by_role("button", name="Cancel campaign").click()
    expect(page.locator("#campaign-state")).to_contain_text("cancelled")
    expect(page.get_by_role("button", name="Pause")).to_have_count(0)
    expect(page.locator("#counts-title + table")).to_contain_text("cancelled")
    page.screenshot(path=os.path.join(SHOTS, "panel-campaign-control.png"), full_page=True)


def test_another_account_gets_no_page_result_or_detail(seeded: Seeded, browser: Browser) -> None:
    base = seeded.stack.api_url
    page = new_page(browser, 860)
    log_in(page, base, seeded.user_b)
    expect(page).to_have_title("Messages · smsdispatch panel")
    page.get_by_label("Phone number").fill("0048 111 222 333")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("table tbody tr")).to_have_count(1)  # its own message only
    expect(page.get_by_text("OTHERCO")).to_be_visible()
    expect(page.locator(f'a[href="/panel/messages/{seeded.otp_id}"]')).to_have_count(0)
    guessed = page.goto(f"{base}/panel/messages/{seeded.otp_id}")
    assert guessed is not None and guessed.status == 404
    expect(page).to_have_title("Not found · smsdispatch panel")
    expect(page.locator("body")).not_to_contain_text("482913")
    page.goto(base + "/panel/campaigns")
    expect(page.get_by_text("black-friday-2026")).to_have_count(0)
    r = page.goto(base + "/panel/campaigns/c/black-friday-2026")
    assert r is not None and r.status == 404


def test_a_forged_form_is_refused(seeded: Seeded, browser: Browser) -> None:
    base = seeded.stack.api_url
    page = new_page(browser, 860)
    log_in(page, base, seeded.support_a)
    page.eval_on_selector(
        'form[action="/panel/logout"] input[name="csrf_token"]', "e => e.value = 'forged'"
    )
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_title("Form expired · smsdispatch panel")
    page.goto(base + "/panel/messages")  # still logged in: the forged logout did nothing
    expect(page).to_have_title("Messages · smsdispatch panel")
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_title("Sign in · smsdispatch panel")


def test_login_attempts_are_rate_limited(seeded: Seeded, browser: Browser) -> None:
    base = seeded.stack.api_url
    username = make_user(seeded.stack, 1, "support", "rate.limited")
    page = new_page(browser, 860)
    for _ in range(3):  # panel_login_attempts=3 in this stack
        log_in(page, base, username, "not the password")
        expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    log_in(page, base, username)
    expect(page.get_by_role("alert")).to_contain_text("Too many failed attempts")
    expect(page).to_have_title("Sign in · smsdispatch panel")
