"""Two-way SMS and opt-out over real processes: the simulator posts inbound messages (MO) to the
API's carrier endpoint with the callback token, a dlr worker pool applies them, and accounts
see them through the API."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.stack import ROOT, ApiClient, Stack, running_stack, wait_until

pytestmark = pytest.mark.integration

TOKEN = "t0k"


@dataclass
class TwoWay:
    """The stack, account A (numbers 4321 and +48500100200) and account B (number 5555)."""

    stack: Stack
    a: ApiClient
    b: ApiClient

    def mo(self, frm: str, to: str, text: str, parts: int = 1, shuffle: bool = False) -> None:
        """Have the carrier deliver an inbound message to us."""
        body = {"from": frm, "to": to, "text": text, "parts": parts, "shuffle": shuffle}
        r = self.stack.sim("POST", "/_sim/mo", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["sent"] == parts and r.json()["failed"] == 0, r.json()


def numbers_cli(stack: Stack, *args: str) -> str:
    """Run ``smsdispatch numbers …`` against the stack's database."""
    out = subprocess.run(
        [sys.executable, "-m", "dispatcher.cli", "numbers", *args],
        env=stack.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def two_way() -> Iterator[TwoWay]:
    with running_stack(
        workers={"priority": 1, "bulk": 2, "dlr": 1},
        carrier_callback_token=TOKEN,
        carrier_tps=2000,
    ) as stack:
        stack.sim_config(mo_url=stack.api_url + "/carrier/default/inbound", mo_token=TOKEN)
        a = stack.account("alpha", priority=True)
        b = stack.account("beta", priority=True)
        numbers_cli(stack, "add", "4321", "--account", "alpha")
        numbers_cli(stack, "add", "+48 500 100 200", "--account", "alpha", "--kind", "long_number")
        numbers_cli(stack, "add", "5555", "--account", "beta")
        yield TwoWay(stack, a, b)


def inbound(client: ApiClient, **params: Any) -> list[dict[str, Any]]:
    r = client.http.get("/v2.1/sms/inbound", params=params)
    if r.status_code == 404:
        assert r.json()["errors"][0]["code"] == "no_results"
        return []
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


def suppressions(client: ApiClient) -> set[str]:
    r = client.http.get("/v2.1/suppressions")
    if r.status_code == 404:
        return set()
    assert r.status_code == 200, r.text
    return {s["phoneNumber"] for s in r.json()["data"]}


def bulk(client: ApiClient, phone: str, **extra: Any) -> Any:
    body = {"sender": "4321", "message": "Weekend sale!", "phoneNumbers": [phone], **extra}
    return client.send(body)


def test_inbound_is_stored_and_listed(two_way: TwoWay) -> None:
    phone = "+48600100001"
    two_way.mo(phone, "4321", "What time do you open on Sunday?")
    rows = wait_until(lambda: inbound(two_way.a, phoneNumber=phone), 30, what="inbound listed")
    (row,) = rows
    assert row["message"] == "What time do you open on Sunday?"
    assert (row["number"], row["numberOfParts"], row["keyword"]) == ("4321", 1, None)

    two_way.mo(phone, "48500100200", "And on Monday?")  # the long number, carrier spelling
    rows = wait_until(
        lambda: inbound(two_way.a, number="+48500100200"), 30, what="long number inbound"
    )
    assert [r["message"] for r in rows] == ["And on Monday?"]


def test_multipart_shuffled_is_joined_once(two_way: TwoWay) -> None:
    phone = "+48600100002"
    text = "".join(f"part of a long reply number {i:03d}. " for i in range(12))
    two_way.mo(phone, "4321", text, parts=3, shuffle=True)
    rows = wait_until(lambda: inbound(two_way.a, phoneNumber=phone), 30, what="joined message")
    two_way.mo(phone, "4321", "a later short one")  # also proves the parts were applied
    wait_until(lambda: len(inbound(two_way.a, phoneNumber=phone)) == 2, 30, what="second")
    rows = inbound(two_way.a, phoneNumber=phone, orderDirection="ASC")
    assert [(r["message"], r["numberOfParts"]) for r in rows] == [
        (text, 3),
        ("a later short one", 1),
    ]


def test_stop_blocks_bulk_not_priority_and_start_resumes(two_way: TwoWay) -> None:
    phone = "+48600100003"
    assert bulk(two_way.a, phone).status_code == 200

    two_way.mo(phone, "4321", "Stop.")
    wait_until(lambda: phone in suppressions(two_way.a), 30, what="suppressed")
    refused = bulk(two_way.a, phone)
    assert refused.status_code == 400, refused.text
    assert "recipient_opted_out" in [e["code"] for e in refused.json()["errors"]]

    otp = bulk(two_way.a, phone, message="Your code is 123456", priority=True)
    assert otp.status_code == 200, otp.text
    assert otp.json()["meta"]["lane"] == "priority"
    # Sent despite the opt-out (the simulator may report delivery before the first poll).
    otp_id = otp.json()["data"][0]["id"]
    wait_until(lambda: two_way.a.status(otp_id) in {"sent", "delivered"}, 30, what="otp")

    stop = inbound(two_way.a, phoneNumber=phone)[0]
    assert stop["keyword"] == "STOP"  # still stored (and forwarded to the account)

    two_way.mo(phone, "4321", "START")
    wait_until(lambda: phone not in suppressions(two_way.a), 30, what="opted in again")
    again = bulk(two_way.a, phone)
    assert again.status_code == 200 and again.json()["data"][0]["phoneNumber"] == phone


def test_numbers_api(two_way: TwoWay) -> None:
    r = two_way.a.http.get("/v2.1/numbers")
    assert r.status_code == 200
    assert [(n["number"], n["kind"]) for n in r.json()["data"]] == [
        ("+48500100200", "long_number"),
        ("4321", "short_code"),
    ]
    assert [n["number"] for n in two_way.b.http.get("/v2.1/numbers").json()["data"]] == ["5555"]


def test_accounts_see_only_their_own(two_way: TwoWay) -> None:
    phone = "+48600100004"
    two_way.mo(phone, "4321", "STOP")
    two_way.mo(phone, "5555", "hello beta")
    wait_until(lambda: phone in suppressions(two_way.a), 30, what="A suppression")
    wait_until(lambda: inbound(two_way.b), 30, what="B inbound")

    assert [r["message"] for r in inbound(two_way.b)] == ["hello beta"]
    assert all(r["number"] == "4321" or r["number"].startswith("+48") for r in inbound(two_way.a))
    assert "hello beta" not in [r["message"] for r in inbound(two_way.a)]
    assert suppressions(two_way.b) == set()
    assert bulk(two_way.b, phone).status_code == 200  # opted out of A only
    assert two_way.b.http.delete(f"/v2.1/suppressions/{phone}").status_code == 404
    assert phone in suppressions(two_way.a)

    removed = two_way.a.http.delete("/v2.1/suppressions/+48 600 100 004")
    assert removed.status_code == 200 and phone not in suppressions(two_way.a)


def test_unknown_number_is_not_stored_and_bodies_never_logged(two_way: TwoWay) -> None:
    two_way.mo("+48600100005", "9999", "nobody owns this number zq")
    wait_until(
        lambda: "inbound.unknown_number" in two_way.stack.log("worker-dlr"), 30, what="logged"
    )
    assert not inbound(two_way.a, phoneNumber="+48600100005")
    assert not inbound(two_way.b, phoneNumber="+48600100005")
    logs = two_way.stack.logs()
    for body in ("nobody owns this number zq", "What time do you open", "hello beta"):
        assert body not in logs
