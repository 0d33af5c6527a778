"""Prices and balances walked in a real browser (Debian's Chromium driven by Playwright)
against a running stack with billing on, as an operator and a customer would:

* the operator sets the platform's price for Poland (a wrong price is shown on its field
  first), tops up a customer's account and sets its limits;
* the customer sends two messages with its API key (a bulk worker takes them to the
  simulated carrier), and its admin sees the new balance, the charge in the ledger and the
  usage table, and downloads the usage CSV.

Writes screenshots into ``docs/screenshots/`` (referenced from docs/panel.md, docs/prices.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import log_in, new_page
from tests.browser.panel_helpers import make_user
from tests.support.stack import ROOT, ApiClient, Stack, running_stack, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.integration]
SHOTS = os.path.join(ROOT, "docs", "screenshots")


@dataclass
class World:
    stack: Stack
    shop: ApiClient
    admin: str
    operator: str


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with running_stack(
        workers={"bulk": 1}, billing=True, prices_reload_s=0.2, default_region="PL"
    ) as stack:
        shop = stack.account("acme-shop")
        platform = stack.account("platform")
        yield World(
            stack,
            shop,
            make_user(stack, shop.account_id, "admin", "piotr.admin"),
            make_user(stack, platform.account_id, "operator", "olga.operator"),
        )


def shot(page: Page, name: str) -> None:
    page.screenshot(path=os.path.join(SHOTS, f"panel-{name}.png"), full_page=True)


def test_operator_sets_a_price_and_tops_up_then_the_admin_sees_the_balance_after_a_send(
    world: World, browser: Browser
) -> None:
    base = world.stack.api_url
    op = new_page(browser)
    log_in(op, base, world.operator, landed=True)
    op.get_by_role("link", name="Operator").click()
    op.get_by_role("link", name="Price lists").click()
    expect(op.get_by_role("heading", name="Platform default prices (0)")).to_be_visible()
    op.get_by_label("Destination").fill("PL")
    op.get_by_label("Price per part").fill("0.075")
    op.get_by_label("Currency").fill("PLN")
    op.get_by_role("button", name="Save price").click()
    expect(op.locator("#price-price-error")).to_contain_text("more than 2 decimals")
    op.get_by_label("Price per part").fill("0.07")
    op.get_by_role("button", name="Save price").click()
    expect(op.get_by_role("status")).to_contain_text("Saved the price for +48")
    op.get_by_label("Destination").fill("PL")
    op.get_by_label("Price per part").fill("0.06")
    op.get_by_label("Effective from (UTC; empty: now)").fill("2030-01-01")
    op.get_by_role("button", name="Save price").click()
    expect(op.locator("#price-entries")).to_contain_text("scheduled")
    expect(op.locator("#price-entries")).to_contain_text("in force")
    shot(op, "operator-prices")

    op.get_by_role("link", name="Accounts").click()
    op.locator("tr", has_text="acme-shop").get_by_role("link", name="Balance").click()
    expect(op.locator("#balance-none")).to_be_visible()
    op.locator("#topup-amount").fill("50.00")
    op.locator("#topup-currency").fill("PLN")
    op.locator("#topup-note").fill("invoice 2027/001")
    op.get_by_role("button", name="Top up").click()
    expect(op.get_by_role("status")).to_contain_text("Topped up")
    expect(op.locator("#balance-amount")).to_have_text("50.00 PLN")
    op.locator("#limits-credit").fill("0")
    op.locator("#limits-low").fill("10.00")
    op.get_by_role("button", name="Save limits").click()
    expect(op.get_by_role("status")).to_contain_text("Limits saved")
    expect(op.locator("#ledger")).to_contain_text("invoice 2027/001")
    shot(op, "operator-balance")

    phones = ["+48600100200", "+48600100201"]
    body = {"sender": "ACME", "message": "Your order shipped", "phoneNumbers": phones}
    wait_until(lambda: world.shop.send(body).status_code == 200, 20, what="a priced send")
    sent = world.shop.send(body)
    assert sent.status_code == 200, sent.text
    balance = sent.json()["meta"]["accountBalance"]
    assert balance == "49.72"  # two sends of two recipients at 0.07
    ids = [m["id"] for m in sent.json()["data"]]
    wait_until(
        lambda: all(world.shop.status(i) in ("sent", "delivered") for i in ids), 60, what="sent"
    )

    admin = new_page(browser)
    log_in(admin, base, world.admin, landed=True)
    admin.get_by_role("link", name="Balance").click()
    expect(admin.locator("#balance-amount")).to_have_text(f"{balance} PLN")
    expect(admin.locator("#ledger")).to_contain_text("Charge")
    expect(admin.locator("#ledger")).to_contain_text("-0.14 PLN")
    expect(admin.locator("#ledger")).to_contain_text("Top-up")
    expect(admin.locator("#usage")).to_contain_text("PL")
    expect(admin.locator("#usage tfoot")).to_contain_text("0.28 PLN")
    shot(admin, "balance")
    with admin.expect_download() as download:
        admin.get_by_role("link", name="Download CSV").click()
    path = download.value.path()
    assert path is not None
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert lines[0].startswith("account,day,country,connection,messages,parts,amount")
    assert any(line.startswith("acme-shop,") and ",PL,,4,4,0.28," in line for line in lines)
