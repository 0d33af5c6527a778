"""The panel's login limit under attack, over real HTTP (a real API process and Redis).

* 30 concurrent wrong passwords for one user: only the limit's worth are verified (the check
  and the count are one Redis script); all others get 429 before any password check.
* Forwarded headers from a client that is not a configured proxy change nothing: a new
  ``X-Forwarded-For`` per attempt does not dodge the per-address limit, and
  ``X-Forwarded-Proto: https`` does not make cookies ``Secure``.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis

from tests.browser.panel_helpers import PASSWORD, PanelClient, csrf_of, make_user
from tests.support.stack import Stack, running_stack

pytestmark = [pytest.mark.integration, pytest.mark.any_db]
PER_USER, PER_IP = 5, 8


@pytest.fixture(scope="module")
def lstack() -> Iterator[Stack]:
    with running_stack(
        workers={},
        scheduler=False,
        panel_login_attempts=PER_USER,
        panel_login_ip_attempts=PER_IP,
    ) as s:
        yield s


@pytest.fixture
def limits(lstack: Stack) -> Iterator[None]:
    """Each test starts with no failed logins counted."""
    client = redis.Redis.from_url(lstack.env["REDIS_URL"])
    for key in client.scan_iter("smsd:panel:fail:*"):
        client.delete(key)
    yield
    client.close()


def _ready_form(stack: Stack, **headers: str) -> tuple[PanelClient, str]:
    client = PanelClient(stack.api_url, **headers)
    return client, csrf_of(client.get("/panel/login").text)


def test_concurrent_wrong_passwords_are_verified_at_most_the_limit(
    lstack: Stack, limits: None
) -> None:
    username = make_user(lstack, lstack.account().account_id)
    forms = [_ready_form(lstack) for _ in range(30)]

    def attempt(form: tuple[PanelClient, str]) -> int:
        client, token = form
        data = {"username": username, "password": "wrong password!", "csrf_token": token}
        return client.http.post("/panel/login", data=data).status_code

    with ThreadPoolExecutor(30) as pool:
        codes = list(pool.map(attempt, forms))
    assert sorted(codes) == [401] * PER_USER + [429] * (30 - PER_USER), codes
    # The right password is refused too until the window ends.
    client, token = _ready_form(lstack)
    data = {"username": username, "password": PASSWORD, "csrf_token": token}
    assert client.http.post("/panel/login", data=data).status_code == 429


def test_x_forwarded_for_from_a_client_does_not_dodge_the_address_limit(
    lstack: Stack, limits: None
) -> None:
    codes = []
    for i in range(PER_IP + 3):  # a new username each time: only the address limit applies
        spoof = {"X-Forwarded-For": f"203.0.113.{i + 1}"}
        client, token = _ready_form(lstack, **spoof)
        data = {"username": f"nobody-{i}", "password": "wrong password!", "csrf_token": token}
        codes.append(client.http.post("/panel/login", data=data).status_code)
    assert codes == [401] * PER_IP + [429] * 3, codes


def test_x_forwarded_proto_from_a_client_does_not_make_cookies_secure(
    lstack: Stack, limits: None
) -> None:
    form = httpx.get(lstack.api_url + "/panel/login", headers={"X-Forwarded-Proto": "https"})
    assert form.status_code == 200
    assert "Secure" not in form.headers["set-cookie"]
    username = make_user(lstack, lstack.account().account_id)
    r = httpx.post(
        lstack.api_url + "/panel/login",
        data={"username": username, "password": PASSWORD, "csrf_token": csrf_of(form.text)},
        headers={
            "X-Forwarded-Proto": "https",
            "Cookie": form.headers["set-cookie"].split(";")[0],
        },
    )
    assert r.status_code == 303, r.text
    [cookie] = [c for c in r.headers.get_list("set-cookie") if c.startswith("smsd_panel=")]
    assert "Secure" not in cookie
