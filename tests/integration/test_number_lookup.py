"""Number look-ups (issue 16): ``POST /v2.1/sms/hlr`` through a carrier connection that answers
look-ups (the simulator), cached, with its errors, and in the support panel's message view.

Real processes: the API on a connections file, and a simulator of the test's own whose look-up
counter shows what reached the carrier. The connections cover each case: look-ups answered
(+48), a connection without look-ups (+49), a dead connection backed by a live one (+420), only
dead ones (+421), and a destination nobody serves (+44).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser.panel_helpers import csrf_of, logged_in, make_user
from tests.support.services import free_port
from tests.support.stack import LOCAL, ROOT, ApiClient, Stack, running_stack, wait_until

pytestmark = pytest.mark.integration
CACHE_S = 1.5

CONNECTIONS = """
[[connections]]
name = "sim"
type = "simulator"
url = "{sim}"
tps = 100
destinations = ["+48"]

[[connections]]
name = "no-lookups"
type = "http_json"
url = "{sim}"
tps = 100
destinations = ["+49"]

[[connections]]
name = "dead-first"
type = "simulator"
url = "{dead}"
tps = 100
destinations = ["+420"]

[[connections]]
name = "live-backup"
type = "http_json"
url = "{sim}"
tps = 100
destinations = ["+420"]
preference = 2
lookups = true

[[connections]]
name = "dead-only"
type = "simulator"
url = "{dead}"
tps = 100
destinations = ["+421"]
"""


@pytest.fixture(scope="module")
def sim() -> Iterator[str]:
    port = free_port()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "simulator", "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: _up(url), 20, what="simulator up")
            cfg = {
                "reject_prefixes": ["+48699"],
                "hlr_ported_prefixes": ["+48511"],
                "hlr_absent_prefixes": ["+48512"],
            }
            assert LOCAL.post(url + "/_sim/config", json=cfg).status_code == 200
            yield url
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _up(url: str) -> bool:
    try:
        return LOCAL.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def lstack(sim: str) -> Iterator[Stack]:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "connections.toml")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(CONNECTIONS.format(sim=sim, dead=dead))
        with running_stack(
            workers={},
            scheduler=False,
            connections=path,
            lookup_cache_s=CACHE_S,
            panel_trust_forwarded_proto=1,
            trusted_proxies="127.0.0.1",  # the test client plays the TLS proxy
        ) as s:
            yield s


@pytest.fixture(scope="module")
def client(lstack: Stack) -> ApiClient:
    return lstack.account("lookups")


def carrier_lookups(sim: str) -> int:
    return int(LOCAL.get(sim + "/_sim/stats").json()["hlr_lookups"])


def lookup(client: ApiClient, phone: Any) -> httpx.Response:
    return client.http.post("/v2.1/sms/hlr", json={"phone": phone})


def answer(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["errors"] == [] and body["meta"]["numberOfData"] == 1
    (view,) = body["data"]
    return dict(view)


def test_a_number_is_looked_up_at_the_carrier_then_cached(client: ApiClient, sim: str) -> None:
    before = carrier_lookups(sim)
    first = answer(lookup(client, "+48 500 100 200"))
    assert first == {
        **first,
        "phoneNumber": "+48500100200",
        "valid": True,
        "country": "PL",
        "network": {"mcc": "260", "mnc": "01", "name": "Simulated PL 01"},
        "ported": False,
        "reachable": True,
        "invalidReason": None,
        "connection": "sim",
        "cached": False,
    }
    assert isinstance(first["lookupTime"], int) and first["lookedUpAt"].endswith("Z")
    again = answer(lookup(client, "0048500100200"))
    assert again == {**first, "cached": True}
    assert carrier_lookups(sim) == before + 1
    time.sleep(CACHE_S + 0.2)  # the cached answer expires: the carrier is asked again
    assert answer(lookup(client, "+48500100200"))["cached"] is False
    assert carrier_lookups(sim) == before + 2


def test_what_the_carrier_knows_about_ported_absent_and_unknown_numbers(
    client: ApiClient,
) -> None:
    ported = answer(lookup(client, "+48511000004"))
    assert (ported["ported"], ported["reachable"], ported["network"]["mnc"]) == (True, True, "03")
    absent = answer(lookup(client, "+48512000000"))
    assert (absent["valid"], absent["reachable"]) == (True, False)
    unknown = answer(lookup(client, "+48699000000"))
    assert (unknown["valid"], unknown["network"], unknown["reachable"]) == (False, None, False)
    assert unknown["invalidReason"] is None and unknown["connection"] == "sim"


def test_a_number_we_could_never_send_to_is_answered_without_the_carrier(
    client: ApiClient, sim: str
) -> None:
    before = carrier_lookups(sim)
    view = answer(lookup(client, "+48 12"))
    assert (view["valid"], view["invalidReason"], view["connection"]) == (False, "too_short", None)
    assert view["country"] == "PL" and view["network"] is None
    assert carrier_lookups(sim) == before


@pytest.mark.parametrize(
    ("body", "status", "code", "parameter"),
    [
        ({"phone": "call me"}, 400, "invalid_phone_number", "phone"),
        ({}, 400, "missing_field", "phone"),
        ({"phone": 48500100200}, 400, "invalid_field", "phone"),
        ({"phone": "+49301234567"}, 400, "lookup_not_supported", "phone"),
        ({"phone": "+447700900123"}, 400, "lookup_not_supported", "phone"),
        ({"phone": "+421905123456"}, 502, "lookup_failed", "phone"),
    ],
)
def test_errors_name_the_field_and_are_catalogued(
    client: ApiClient, body: dict[str, Any], status: int, code: str, parameter: str
) -> None:
    r = client.http.post("/v2.1/sms/hlr", json=body)
    assert r.status_code == status, r.text
    (error,) = r.json()["errors"]
    assert (error["code"], error["meta"]["parameter"]) == (code, parameter)
    assert error["docs"] == "/docs/errors#" + code.replace("_", "-")
    if code == "lookup_failed":
        assert r.headers["retry-after"] == "5"
        assert "dead-only" in error["message"]
    if body.get("phone") == "+49301234567":
        assert "answers number look-ups" in error["message"]
    if body.get("phone") == "+447700900123":
        assert "no carrier connection serves" in error["message"]


def test_a_failing_connection_hands_the_lookup_to_the_next(client: ApiClient) -> None:
    view = answer(lookup(client, "+420601123456"))
    assert (view["connection"], view["country"], view["network"]["mcc"]) == (
        "live-backup",
        "CZ",
        "230",
    )


def test_the_panel_message_view_looks_the_recipient_up(
    lstack: Stack, client: ApiClient, sim: str
) -> None:
    r = client.send({"sender": "ACME", "message": "hello", "phoneNumbers": ["+48511000007"]})
    assert r.status_code == 200, r.text
    message_id = r.json()["data"][0]["id"]
    panel = logged_in(lstack, make_user(lstack, client.account_id))
    try:
        page = panel.get(f"/panel/messages/{message_id}")
        assert page.status_code == 200 and "Look up number" in page.text
        assert "Simulated PL" not in page.text
        path = f"/panel/messages/{message_id}/lookup"
        assert panel.post(path, csrf_token="forged").status_code == 403
        before = carrier_lookups(sim)
        shown = panel.post(path, csrf_token=csrf_of(page.text))
        assert shown.status_code == 200, shown.text
        assert 'id="lookup-result"' in shown.text
        assert "Simulated PL 03" in shown.text and "MCC 260, MNC 03" in shown.text
        assert "Yes: moved to another network" in shown.text
        assert carrier_lookups(sim) == before + 1
    finally:
        panel.close()
