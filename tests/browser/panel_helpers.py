"""Helpers shared by the panel's HTTP and browser tests: users, logins, seeded rows."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import httpx

from dispatcher.store.schema import inbound_messages
from dispatcher.store.suppressions import add_suppression
from dispatcher.store.users import Role, create_user
from tests.support.stack import Stack

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def make_user(stack: Stack, account_id: int, role: str = "support", name: str = "") -> str:
    """A panel user of the account; its username (the password is :data:`PASSWORD`)."""
    username = name or f"{role}-{uuid.uuid4().hex[:8]}"
    engine = stack.db()
    with engine.begin() as conn:
        create_user(conn, account_id, username, PASSWORD, Role(role), time.time())
    engine.dispose()
    return username


def csrf_of(html: str) -> str:
    """The first CSRF token in a page."""
    m = _CSRF.search(html)
    assert m, "no CSRF token in the page"
    return m.group(1)


class PanelClient:
    """A browser-like HTTP client (keeps cookies, does not follow redirects)."""

    def __init__(self, base: str, **headers: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=30, headers=headers)

    def get(self, path: str, **params: Any) -> httpx.Response:
        """GET a panel page."""
        return self.http.get(path, params=params or None)

    def post(self, path: str, **data: str) -> httpx.Response:
        """POST a form."""
        return self.http.post(path, data=data)

    def login(self, username: str, password: str = PASSWORD, **headers: str) -> httpx.Response:
        """Open the login page, then post the form with its CSRF token."""
        page = self.http.get("/panel/login", headers=headers)
        return self.http.post(
            "/panel/login",
            data={"username": username, "password": password, "csrf_token": csrf_of(page.text)},
            headers=headers,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()


def logged_in(stack: Stack, username: str) -> PanelClient:
    """A client with a session of ``username``."""
    client = PanelClient(stack.api_url)
    r = client.login(username)
    assert r.status_code == 303, r.text
    return client


def add_inbound(stack: Stack, account_id: int, phone: str, body: str) -> str:
    """Store an inbound message directly (the two-way tests cover the carrier path)."""
    inbound_id = str(uuid.uuid4())
    engine = stack.db()
    with engine.begin() as conn:
        conn.execute(
            inbound_messages.insert().values(
                id=inbound_id,
                account_id=account_id,
                connection="default",
                number="+48500100200",
                phone=phone,
                body=body,
                parts=1,
                carrier_message_id=uuid.uuid4().hex,
                received_at=time.time(),
                keyword=None,
            )
        )
    engine.dispose()
    return inbound_id


def add_opt_out(stack: Stack, account_id: int, phone: str) -> None:
    """Put a number on the account's suppression list."""
    engine = stack.db()
    with engine.begin() as conn:
        add_suppression(conn, account_id, phone, time.time(), "keyword", "STOP")
    engine.dispose()
