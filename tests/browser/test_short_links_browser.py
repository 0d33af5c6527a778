"""The campaign's click-through rate in the panel, in a real browser (issue 21): a campaign sent
with ``shortLink`` through the running pipeline, real clicks on the redirect service (and a
link-preview fetch that must not count), then support reads the rate on the campaign page and
both texts and the clicks on a message's page. Writes ``docs/screenshots/panel-campaign-links.png``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, expect, sync_playwright
from sqlalchemy import func, select

from dispatcher.store.schema import link_clicks
from tests.browser.panel_helpers import PASSWORD, make_user
from tests.support.services import free_port
from tests.support.stack import ROOT, running_stack, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.integration]
CHROMIUM = "/usr/bin/chromium"
SHOTS = os.path.join(ROOT, "docs", "screenshots")
PHONE_UA = "Mozilla/5.0 (Linux; Android 14; Pixel 8) Chrome/126.0 Mobile Safari/537.36"
PREVIEW_UA = "WhatsApp/2.23.20.0 A"
URL = "https://shop.example.com/spring-sale?utm_source=sms&utm_campaign=spring"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert os.path.exists(CHROMIUM), "install Debian's chromium: apt-get install -y chromium"
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    expect.set_options(timeout=15_000)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        yield b
        b.close()


def clicks_written(stack: object, n: int) -> bool:
    engine = stack.db()  # type: ignore[attr-defined]
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(link_clicks)).scalar_one()
    engine.dispose()
    return bool(count >= n)


def test_support_sees_the_campaigns_click_through_rate(browser: Browser) -> None:
    port = free_port()
    with running_stack(
        workers={"bulk": 1},
        short_link_base=f"http://127.0.0.1:{port}",
        links_port=port,
    ) as stack:
        stack.spawn("links", [sys.executable, "-m", "dispatcher.cli", "links"])
        wait_until(lambda: _ok(f"http://127.0.0.1:{port}/readyz"), 30, what="links service ready")
        shop = stack.account("spring-shop")
        r = shop.send(
            {
                "sender": "ACME",
                "message": f"Spring sale: -30% until Sunday {URL} Reply STOP to opt out",
                "phoneNumbers": ["+48500100301", "+48500100302", "+48500100303", "+48500100304"],
                "shortLink": True,
            },
            **{"Smsdispatch-Campaign": "spring-2026"},
        )
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        shorts = [m["shortLinks"][0]["shortUrl"] for m in data]
        # Two recipients click (one of them twice); a third's link is only unfurled by a
        # messaging app's preview fetcher: two of four messages clicked, 50 %.
        for url, agent in (
            (shorts[0], PHONE_UA),
            (shorts[0], PHONE_UA),
            (shorts[1], PHONE_UA),
            (shorts[2], PREVIEW_UA),
        ):
            hop = httpx.get(url, headers={"User-Agent": agent}, timeout=10)
            assert (hop.status_code, hop.headers["location"]) == (302, URL)
        wait_until(lambda: clicks_written(stack, 4), 30, what="clicks written")

        support = make_user(stack, shop.account_id, "support", "lena.support")
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.goto(stack.api_url + "/panel/login")
        page.get_by_label("Username").fill(support)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.goto(stack.api_url + "/panel/campaigns")
        row = page.locator("tr", has=page.get_by_role("link", name="spring-2026"))
        expect(row.locator("td.num")).to_have_text("50.0%")
        page.get_by_role("link", name="spring-2026").click()
        expect(page.locator("#click-through-rate")).to_have_text("50.0%")
        section = page.locator("#campaign-links")
        expect(section).to_contain_text("2 of 4 messages with short links were clicked")
        expect(section).to_contain_text("3 clicks")
        expect(section).to_contain_text("1 preview")
        page.screenshot(path=os.path.join(SHOTS, "panel-campaign-links.png"), full_page=True)

        page.goto(f"{stack.api_url}/panel/messages/{data[0]['id']}")
        expect(page.locator("#original-text")).to_contain_text(URL)
        expect(page.locator("#sent-text")).to_contain_text(shorts[0])
        expect(page.locator("#sent-text")).not_to_contain_text(URL)
        expect(page.locator("#links tbody tr")).to_have_count(1)
        expect(page.locator("#links tbody td.num").first).to_have_text("2")


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
