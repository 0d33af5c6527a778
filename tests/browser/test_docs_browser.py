"""The offline API reference in a real browser: ReDoc renders the schema, and the page makes no
request outside the API's origin (no CDN, no web fonts, no logo)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest
import uvicorn
from playwright.sync_api import expect, sync_playwright

from dispatcher.api.app import create_app
from dispatcher.config import Settings
from tests.support.services import free_port
from tests.support.stack import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.integration]
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    """The API app on loopback, without its lifespan (the docs need no Redis or database)."""
    port = free_port()
    config = uvicorn.Config(
        create_app(Settings.from_env({})), host="127.0.0.1", port=port, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 20, what="api started")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium")
def test_docs_render_with_no_request_outside_the_origin(api: str) -> None:
    requested: list[str] = []
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        page = browser.new_page()
        page.on("request", lambda r: requested.append(r.url))
        page.goto(api + "/docs")
        page.set_viewport_size({"width": 1400, "height": 900})
        heading = page.locator("h2", has_text="Send an SMS to one or many recipients")
        expect(heading.first).to_be_visible(timeout=30_000)
        expect(page.get_by_text("Error codes:").first).to_be_attached()
        page.goto(api + "/docs/snippets")
        expect(page.get_by_role("heading", name="Verify a webhook signature")).to_be_visible()
        browser.close()
    outside = [u for u in requested if not u.startswith((api, "data:", "blob:"))]
    assert not outside, outside
    assert api + "/openapi.json" in requested
