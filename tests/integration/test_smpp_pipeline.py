"""SMPP connections through the whole pipeline, against an SMSC no one here wrote (the npm
``smpp`` package's server, ``tests/smsc/smsc.js``): API → lanes → two session-holder processes
→ SMSC, and receipts and MO back through the callback inbox and the dlr lane (issue 15).

The SMSC enforces no bind limit of its own here (``max_binds=0``): the limit that holds is the
holders' Redis leases.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import text

from tests.support.services import free_port
from tests.support.smsc import Smsc, running_smsc
from tests.support.stack import LOCAL, ROOT, ApiClient, Stack, running_stack, wait_until

pytestmark = pytest.mark.integration

CONFIG = """
[breaker]
failure_threshold = 3
window_s = 10
min_calls = 10
cooldown_s = 2
probes = 1
wait_s = 0.5

[[connections]]
name = "op"
type = "smpp"
host = "127.0.0.1"
port = {port}
system_id = "smsd"
password_env = "SMPP_T_OP_PW"
binds = 2
window = 4
priority_window = 1
tps = 200
timeout_s = 3
destinations = ["+4850", "+4860"]

[[connections]]
name = "op-bad"
type = "smpp"
host = "127.0.0.1"
port = {port}
system_id = "bad"
password_env = "SMPP_T_BAD_PW"
tps = 50
timeout_s = 3
destinations = ["+4479"]

[[connections]]
name = "op-backup"
type = "smpp"
host = "127.0.0.1"
port = {port}
system_id = "backup"
password_env = "SMPP_T_BACKUP_PW"
tps = 50
timeout_s = 3
preference = 2
destinations = ["+4479"]
"""
ACCOUNTS = {"smsd": "secret12", "bad": "right123", "backup": "backup12"}
SECRETS = {"SMPP_T_OP_PW": "secret12", "SMPP_T_BAD_PW": "wrong123", "SMPP_T_BACKUP_PW": "backup12"}


@dataclass
class World:
    stack: Stack
    smsc: Smsc
    client: ApiClient
    metrics: dict[str, int]  # holder name → metrics port

    def start_holder(self, name: str) -> None:
        port = free_port()
        self.metrics[name] = port
        self.stack.env["SMSDISPATCH_SMPP_METRICS_PORT"] = str(port)
        self.stack.spawn(name, [sys.executable, "-m", "dispatcher.cli", "smpp"])

    def holder_metrics(self, name: str) -> str:
        return LOCAL.get(f"http://127.0.0.1:{self.metrics[name]}/metrics", timeout=5).text

    def binds_up(self, name: str, connection: str = "op") -> float:
        """The holder's own count of its bound binds (its /metrics)."""
        found = re.search(
            rf'smsdispatch_smpp_binds_up{{connection="{connection}"}} ([0-9.]+)',
            self.holder_metrics(name),
        )
        return float(found.group(1)) if found else 0.0

    def owner(self) -> str:
        """The holder process with op's binds."""
        return wait_until(
            lambda: next((n for n in self.metrics if self.binds_up(n) > 0), None),
            30,
            what="a holder with op's binds",
        )

    def send(self, to: str, message: str, sender: str = "MyShop", **extra: Any) -> str:
        body = {"sender": sender, "message": message, "phoneNumbers": [to], **extra}
        r = self.client.send(body)
        assert r.status_code == 200, r.text
        return str(r.json()["data"][0]["id"])

    def row(self, message_id: str) -> dict[str, Any]:
        engine = self.stack.db()
        with engine.connect() as conn:
            r = conn.execute(
                text(
                    "SELECT status, connection, carrier_message_id, attempts, "
                    "error_code AS last_error "
                    "FROM messages WHERE id = :id"
                ),
                {"id": message_id},
            ).one()
        engine.dispose()
        return dict(r._mapping)

    def events(self, message_id: str) -> list[tuple[str, str | None, Any]]:
        engine = self.stack.db()
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT kind, status, detail FROM message_events WHERE message_id = :id"),
                {"id": message_id},
            ).all()
        engine.dispose()
        return [(r[0], r[1], r[2]) for r in rows]

    def status(self, message_id: str) -> str:
        return str(self.row(message_id)["status"])

    def submits_to(self, number: str) -> list[dict[str, Any]]:
        return [p for p in self.smsc.pdus("submit_sm", "in") if p.get("destination_addr") == number]


def numbers_add(stack: Stack, *args: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "dispatcher.cli", "numbers", "add", *args],
        env=stack.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr


@contextmanager
def built_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """An SMSC, a stack with its three connections, and two holders with op's binds up."""
    tmp = tmp_path_factory.mktemp("smpp")
    with running_smsc(accounts=ACCOUNTS, max_binds=0) as smsc:
        path = tmp / "connections.toml"
        path.write_text(CONFIG.format(port=smsc.port))
        os.environ.update(SECRETS)
        try:
            with running_stack(
                workers={"priority": 1, "bulk": 1, "dlr": 1},
                connections=str(path),
                retry_base_s=0.2,
                retry_max_s=1,
                max_attempts=10,
                smpp_lease_s=3,
                sending_stale_s=8,
            ) as stack:
                acct = stack.account("smpp", priority=True)
                w = World(stack, smsc, acct, {})
                numbers_add(stack, "4321", "--account", "smpp")
                w.start_holder("holder-a")
                w.start_holder("holder-b")
                wait_until(
                    lambda: smsc.state()["binds"].get("smsd", {}).get("open") == 2,
                    30,
                    what="two binds of op up",
                )
                yield w
        finally:
            for k in SECRETS:
                os.environ.pop(k, None)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with built_world(tmp_path_factory) as w:
        yield w


@pytest.fixture
def lone_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A world of its own: nothing the module's other tests did to their connections, holders
    and breakers (killed holders, refused binds, throttling) is left for the test."""
    with built_world(tmp_path_factory) as w:
        yield w


def test_gsm7_ucs2_and_three_parts_arrive_with_their_coding_ton_npi_and_udh(world: World) -> None:
    gsm = world.send("+48500000001", "Hello {world} 100€")
    pl = world.send("+48500000002", "Zażółć gęślą jaźń")
    long_text = "Part text " * 40  # 400 GSM-7 characters: 3 parts of 153
    three = world.send("+48500000003", long_text, sender="+48600700800")
    for i in (gsm, pl, three):
        wait_until(lambda i=i: world.status(i) == "sent", 60, what=f"{i} sent")

    (g,) = world.submits_to("48500000001")
    assert g["data_coding"] == 0
    assert (g["source_addr_ton"], g["source_addr_npi"], g["source_addr"]) == (5, 0, "MyShop")
    assert (g["dest_addr_ton"], g["dest_addr_npi"]) == (1, 1)
    # The package decodes GSM-7 itself: the SMSC read the text we meant, € included.
    assert g["short_message"]["message"] == "Hello {world} 100€"

    (u,) = world.submits_to("48500000002")
    assert u["data_coding"] == 8
    assert bytes.fromhex(u["hex"]).find("Zażółć gęślą jaźń".encode("utf-16-be")) > 0

    parts = world.submits_to("48500000003")
    assert len(parts) == 3
    assert {(p["source_addr_ton"], p["source_addr_npi"], p["source_addr"]) for p in parts} == {
        (1, 1, "48600700800")
    }
    # The package reads the UDH into its elements: IEI 00 (8-bit reference), length, ref,
    # total, seq.
    udhs = [bytes.fromhex(p["short_message"]["udh"][0]) for p in parts]
    assert {(u[0], u[1], u[3]) for u in udhs} == {(0, 3, 3)}
    assert sorted(u[4] for u in udhs) == [1, 2, 3]
    assert len({u[2] for u in udhs}) == 1  # one reference
    assert all(p["esm_class"] & 0x40 for p in parts)
    joined = "".join(p["short_message"]["message"] for p in sorted(parts, key=lambda p: p["hex"]))
    assert sorted(joined) == sorted(long_text)

    # The carrier id recorded is the SMSC's message_id of the (first) submit_sm_resp.
    resp_ids = {
        p["sequence_number"]: bytes.fromhex(p["hex"])[16:-1].decode()
        for p in world.smsc.pdus("submit_sm_resp", "out")
    }
    g_id = world.row(gsm)["carrier_message_id"]
    assert g_id in resp_ids.values()
    assert world.row(gsm)["connection"] == "op"


def test_receipts_end_delivered_undelivered_expired_and_duplicates_change_nothing(
    world: World,
) -> None:
    ids = [world.send(f"+4850000010{i}", f"receipt test {i}") for i in range(3)]
    for i in ids:
        wait_until(lambda i=i: world.status(i) == "sent", 60, what="sent")
    carrier = [world.row(i)["carrier_message_id"] for i in ids]
    world.smsc.receipt(carrier[0], "DELIVRD")
    world.smsc.receipt(carrier[1], "UNDELIV", err=34)
    world.smsc.receipt(carrier[2], "EXPIRED", tlvs=False)  # only the text
    want = ["delivered", "undelivered", "expired"]
    for i, status in zip(ids, want, strict=True):
        wait_until(lambda i=i, s=status: world.status(i) == s, 60, what=f"{i} {status}")
    # Every deliver_sm was answered (after its commit), none is waiting.
    wait_until(lambda: world.smsc.state()["unacked"] == 0, 30, what="deliver_sm answered")

    world.smsc.receipt(carrier[1], "DELIVRD")  # a late, contradicting duplicate
    world.smsc.receipt(carrier[1], "UNDELIV", err=34)  # the same receipt again
    wait_until(lambda: world.smsc.state()["unacked"] == 0, 30, what="duplicates answered")
    wait_until(
        lambda: [e for e in world.events(ids[1]) if e[0] == "report_ignored"],
        60,
        what="the contradicting receipt applied",
    )
    assert world.status(ids[1]) == "undelivered"
    reports = [e for e in world.events(ids[1]) if e[0] == "report"]
    assert [e[1] for e in reports] == ["undelivered"]  # one final report, not three


def inbound(client: ApiClient, **params: Any) -> list[dict[str, Any]]:
    r = client.http.get("/v2.1/sms/inbound", params=params)
    if r.status_code == 404:
        return []
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


def test_mo_concatenated_and_stop_arrive_as_inbound(world: World) -> None:
    world.smsc.mo("48601000001", "4321", ["Hello from the phone"], dest_addr_ton=3)
    world.smsc.mo(
        "48601000002", "4321", ["First half, ", "second half."], concat="udh8", dest_addr_ton=3
    )
    rows = wait_until(
        lambda: inbound(world.client, phoneNumber="+48601000001"), 60, what="MO listed"
    )
    assert rows[0]["message"] == "Hello from the phone"
    joined = wait_until(
        lambda: inbound(world.client, phoneNumber="+48601000002"), 60, what="joined MO"
    )
    assert joined[0]["message"] == "First half, second half."

    world.smsc.mo("48601000003", "4321", ["STOP"], dest_addr_ton=3)

    def suppressed() -> bool:
        r = world.client.http.get("/v2.1/suppressions")
        return r.status_code == 200 and "+48601000003" in {
            s["phoneNumber"] for s in r.json()["data"]
        }

    wait_until(suppressed, 60, what="STOP suppressed the phone")
    refused = world.client.send(
        {"sender": "4321", "message": "Sale!", "phoneNumbers": ["+48601000003"]}
    )
    assert refused.status_code == 400
    # The same MO delivered again (its deliver_sm_resp lost) is stored once.
    world.smsc.mo("48601000001", "4321", ["Hello from the phone"], dest_addr_ton=3)
    wait_until(lambda: world.smsc.state()["unacked"] == 0, 30, what="answered")
    assert len(inbound(world.client, phoneNumber="+48601000001")) == 1


def test_throttling_slows_the_connection_and_spends_no_attempt(world: World) -> None:
    world.smsc.answer_submits(("ESME_RTHROTTLED", 6), ("ESME_RMSGQFUL", 2), default="ok")
    ids = [world.send(f"+4850000020{i}", f"throttle {i}") for i in range(4)]
    for i in ids:
        wait_until(lambda i=i: world.status(i) == "sent", 90, what=f"{i} sent")
    for i in ids:
        row = world.row(i)
        assert row["attempts"] <= 1, row  # throttling spent no attempt
        # Throttled past the claim's deadline: handed back unspent ("deferred"), never a
        # failed attempt.
        back = [e for e in world.events(i) if e[1] == "retrying"]
        assert all(e[0] == "deferred" for e in back), back

    def throttled_total() -> float:
        total = 0.0
        for name in ("holder-a", "holder-b"):
            for line in world.holder_metrics(name).splitlines():
                if line.startswith('smsdispatch_smpp_throttled_total{connection="op"}'):
                    total += float(line.split()[-1])
        return total

    assert throttled_total() >= 8
    shares = "".join(world.holder_metrics(n) for n in ("holder-a", "holder-b"))
    assert re.search(r'smsdispatch_smpp_rate_share\{connection="op"\} 0\.', shares) or (
        "smpp.throttled" in world.stack.log("holder-a") + world.stack.log("holder-b")
    )

    def recovered() -> bool:
        text_ = "".join(world.holder_metrics(n) for n in ("holder-a", "holder-b"))
        values = re.findall(r'smsdispatch_smpp_rate_share\{connection="op"\} ([0-9.e+-]+)', text_)
        return bool(values) and all(float(v) == 1.0 for v in values)

    wait_until(recovered, 60, interval=0.5, what="the rate share back to 1")


def test_a_permanent_refusal_ends_rejected_with_the_status_name(world: World) -> None:
    world.smsc.answer_submits(("ESME_RINVDSTADR", 1), default="ok")
    refused = world.send("+48500000501", "to a number the SMSC refuses")
    wait_until(lambda: world.status(refused) == "rejected", 60, what="rejected")
    row = world.row(refused)
    assert row["last_error"] == "esme_rinvdstadr" and row["attempts"] == 1, row
    assert any("esme_rinvdstadr" in str(e[2]) for e in world.events(refused))
    assert len(world.submits_to("48500000501")) == 1  # never tried again


def test_wrong_password_opens_the_breaker_and_traffic_takes_the_backup(world: World) -> None:
    wait_until(
        lambda: (
            "ESME_RINVPASWD" in world.holder_metrics("holder-a") + world.holder_metrics("holder-b")
        ),
        30,
        what="bind refused counted",
    )
    ids = [world.send(f"+44791112345{i}", f"backup {i}") for i in range(5)]
    for i in ids:
        wait_until(lambda i=i: world.status(i) == "sent", 90, what=f"{i} sent via backup")
    assert {world.row(i)["connection"] for i in ids} == {"op-backup"}
    logs = world.stack.log("holder-a") + world.stack.log("holder-b")
    assert "smpp.bind_refused" in logs and "ESME_RINVPASWD" in logs
    assert "wrong123" not in logs and "secret12" not in logs
    for name in ("holder-a", "holder-b"):
        metrics = world.holder_metrics(name)
        assert 'smsdispatch_smpp_binds_up{connection="op-bad"} 0.0' in metrics
    assert world.smsc.state()["binds"].get("bad", {}).get("peak", 0) == 0

    # The first attempts met the refused bind; the breaker opened; the rest went straight on.
    failed_on_bad = [e for i in ids for e in world.events(i) if "smpp_bind_failed" in str(e[2])]
    assert failed_on_bad
    log = world.stack.log("worker-bulk")
    assert re.search(r"breaker.transition.*op-bad|op-bad.*breaker.transition", log), log[-3000:]


def test_bind_limit_holds_with_two_holder_pools(world: World) -> None:
    state = world.smsc.state()["binds"]["smsd"]
    assert state["open"] == 2 and state["peak"] <= 2
    # Both pools want every bind; the leases gave them to one (or shared them). The pool
    # holding op's binds dies without unbinding: the other takes them once the leases end.
    owner = world.owner()
    other = "holder-b" if owner == "holder-a" else "holder-a"
    world.stack.stop(owner, signal.SIGKILL)
    wait_until(
        lambda: world.binds_up(other) == 2 and world.smsc.state()["binds"]["smsd"]["open"] == 2,
        60,
        what=f"{other} took the slots over",
    )
    ok = world.send("+48500000301", "after the takeover")
    wait_until(lambda: world.status(ok) == "sent", 60, what="sent after the takeover")
    world.start_holder(owner)
    wait_until(lambda: "smpp.holder_started" in world.stack.log(owner), 30, what="back up")
    final = world.smsc.state()["binds"]["smsd"]
    assert final["peak"] <= 2 and final["open"] <= 2, final


def test_a_late_answer_reconciles_the_timed_out_submit(world: World) -> None:
    # Taken by the SMSC, answered after the holder gave up (2.1 s of the 3 s timeout):
    # ambiguous, never resent; the late message_id reaches the holder's mark, the next attempt
    # looks it up and records the message sent.
    world.smsc.answer_submits(("late:3500", 1), default="ok")
    late = world.send("+48500000601", "answered late")
    wait_until(lambda: world.status(late) == "sent", 90, what="reconciled as sent")
    row = world.row(late)
    assert len(world.submits_to("48500000601")) == 1  # never resent
    accepted = [
        bytes.fromhex(p["hex"])[16:-1].decode() for p in world.smsc.pdus("submit_sm_resp", "out")
    ]
    assert row["carrier_message_id"] in accepted, row  # the late answer's message_id
    events = world.events(late)
    assert any("carrier_timeout" in str(e) for e in events), events
    logs = world.stack.log("holder-a") + world.stack.log("holder-b")
    assert "smpp.late_answer" in logs


def test_smsc_killed_mid_window_nothing_twice_nothing_lost(lone_world: World) -> None:
    world = lone_world
    world.smsc.answer_submits(default="silent")
    outstanding = [world.send(f"+4850000040{i}", f"mid-window {i}") for i in range(3)]
    wait_until(lambda: world.smsc.state()["counters"]["silent"] >= 3, 60, what="3 outstanding")
    world.smsc.kill()
    # "While down" as the holders know it: a submit written in the instant before a holder
    # saw the connection drop is as ambiguous as the three outstanding ones, and held (the
    # failure of the CI run at 5483242).
    wait_until(
        lambda: all(world.binds_up(n) == 0 for n in world.metrics),
        30,
        what="the holders saw the binds drop",
    )
    later = world.send("+48500000410", "sent while the SMSC is down")
    world.smsc.start()  # a new process: answers "ok" again
    wait_until(lambda: world.status(later) == "sent", 90, what="later message sent")
    # The outstanding ones were written and never answered: ambiguous, never resent blindly
    # (query_sm needs the SMSC's id, which the lost answer would have carried).
    wait_until(
        lambda: all(
            any(e[0] == "attempt" or e[1] == "retrying" for e in world.events(i))
            or world.row(i)["last_error"] is not None
            for i in outstanding
        ),
        60,
        what="outstanding recorded",
    )
    for i in outstanding:
        row = world.row(i)
        assert row["status"] != "sent", row
        assert row["last_error"] in ("carrier_disconnected", "carrier_timeout"), row
    # Several retry rounds later, still exactly one submit_sm each.
    wait_until(
        lambda: all(
            any(e[0] == "deferred" or "previous_unverified" in str(e[2]) for e in world.events(i))
            for i in outstanding
        ),
        60,
        what="held as unverified",
    )
    for n in range(3):
        assert len(world.submits_to(f"4850000040{n}")) == 1
    assert len(world.submits_to("48500000410")) == 1


def test_graceful_shutdown_unbinds(world: World) -> None:
    owner = world.owner()
    held = int(world.binds_up(owner))
    before = len(world.smsc.pdus("unbind", "in"))
    proc = world.stack.procs[owner]
    world.stack.stop(owner, signal.SIGTERM)
    assert proc.returncode == 0
    # Every bind it held said unbind (those of op, and of op-backup if it held that one).
    assert len(world.smsc.pdus("unbind", "in")) - before >= held
    assert "smpp.holder_stopped" in world.stack.log(owner)
