"""The browser the panel's walks share: Debian's Chromium driven by Playwright, one per test
module, and the helpers every walk uses (a fresh page, logging in)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.browser.panel_helpers import PASSWORD

CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 20_000  # a loaded 2-core CI machine renders slowly


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert os.path.exists(CHROMIUM), "install Debian's chromium: apt-get install -y chromium"
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        yield b
        b.close()


def new_page(browser: Browser, height: int = 900) -> Page:
    """A page in a fresh context (its own cookies: one user per page)."""
    context = browser.new_context(viewport={"width": 1280, "height": height}, locale="en-GB")
    context.set_default_timeout(TIMEOUT_MS)
    return context.new_page()


def log_in(
    page: Page, base: str, username: str, password: str = PASSWORD, landed: bool = False
) -> None:
    """Fill and post the login form; with ``landed``, wait until a panel page replaced it
    (otherwise the caller checks where it lands: a refused login stays on the form)."""
    page.goto(base + "/panel/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    if landed:
        expect(page).not_to_have_title("Sign in · smsdispatch panel")
