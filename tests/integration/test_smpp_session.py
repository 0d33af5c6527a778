"""The SMPP session layer against an SMSC no one here wrote (the npm smpp package's server,
``tests/smsc/smsc.js``): binds, encodings as the SMSC decodes them, receipts and MO parsed,
throttling and permanent answers, the window, the SMSC killed mid-window, wrong passwords,
keep-alive, generic_nack, TLS and graceful unbind."""

from __future__ import annotations

import asyncio
import random
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dispatcher.contract import Status
from tests.support.smsc import ACCOUNT, Smsc, running_smsc
from workers.errors import PermanentCarrierError, ThrottledError
from workers.smpp import pdu as p
from workers.smpp.bind import Backoff, Bind
from workers.smpp.coding import Concat, EncodingRules, build_submits
from workers.smpp.constants import status_name
from workers.smpp.errors import (
    BindFailed,
    ConnectFailed,
    NotBound,
    SubmitUnanswered,
    from_status,
    translate,
)
from workers.smpp.receipts import inbound_from, is_receipt, report_from
from workers.smpp.session import BindMode, Session, SessionConfig

pytestmark = [pytest.mark.integration, pytest.mark.any_db, pytest.mark.anyio]

TO = "+48500100200"
RULES = EncodingRules()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def smsc() -> Iterator[Smsc]:
    with running_smsc() as s:
        yield s


def config(smsc: Smsc, **kw: Any) -> SessionConfig:
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": smsc.port,
        "system_id": ACCOUNT[0],
        "password": ACCOUNT[1],
        "response_timeout_s": 5.0,
    }
    return SessionConfig(**{**base, **kw})


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


class Inbox:
    """A deliver handler that keeps what it got (and can refuse, as an uncommitted one)."""

    def __init__(self) -> None:
        self.got: list[p.DeliverSm] = []
        self.fail = False

    async def __call__(self, d: p.DeliverSm) -> int:
        if self.fail:
            raise RuntimeError("database down")
        self.got.append(d)
        return 0


def submits_seen(smsc: Smsc) -> list[dict[str, Any]]:
    return smsc.pdus("submit_sm", "in")


async def test_gsm7_ucs2_and_three_parts_arrive_as_the_smsc_reads_them(smsc: Smsc) -> None:
    session = await Session.open(config(smsc))
    texts = ["Kod: 4821 {ważny} 5 min"[:9] + " €", "Zażółć gęślą jaźń", "Ala ma kota. " * 30]
    for i, text in enumerate(texts):
        for sm in build_submits(f"m{i}", TO, "MyShop", text, RULES):
            resp = await session.submit(sm)
            assert resp.status == 0 and resp.message_id
    await session.close()
    seen = submits_seen(smsc)
    assert len(seen) == 1 + 1 + 3
    gsm, pl, *long = seen
    assert (gsm["data_coding"], gsm["short_message"]["message"]) == (0, texts[0])
    assert (pl["data_coding"], pl["short_message"]["message"]) == (8, texts[1])
    for s in seen:
        assert (s["source_addr_ton"], s["source_addr_npi"], s["source_addr"]) == (5, 0, "MyShop")
        assert (s["dest_addr_ton"], s["dest_addr_npi"], s["destination_addr"]) == (1, 1, TO[1:])
        assert s["registered_delivery"] == 1
    # Three parts: UDHI set, one reference, parts 1..3 of 3, and the SMSC joins our text.
    udhs = [s["short_message"]["udh"][0] for s in long]
    assert all(s["esm_class"] & 0x40 for s in long)
    assert {u[:6] for u in udhs} == {udhs[0][:6]} and [u[6:] for u in udhs] == [
        "0301",
        "0302",
        "0303",
    ]
    assert "".join(s["short_message"]["message"] for s in long) == texts[2]


async def test_sar_and_message_payload_reach_the_smsc(smsc: Smsc) -> None:
    session = await Session.open(config(smsc))
    text = "Zażółć gęślą jaźń. " * 8
    for concat in (Concat.SAR, Concat.PAYLOAD):
        for sm in build_submits("m", TO, "+48600700800", text, EncodingRules(concat=concat)):
            assert (await session.submit(sm)).status == 0
    await session.close()
    *sar, payload = submits_seen(smsc)
    assert [s["sar_segment_seqnum"] for s in sar] == [1, 2, 3]
    assert {s["sar_total_segments"] for s in sar} == {3} and len(
        {s["sar_msg_ref_num"] for s in sar}
    ) == 1
    assert "".join(s["short_message"]["message"] for s in sar) == text
    assert payload["message_payload"]["message"] == text and payload["data_coding"] == 8
    assert (sar[0]["source_addr_ton"], sar[0]["source_addr"]) == (1, "48600700800")


@pytest.mark.parametrize(
    ("stat", "status"),
    [("DELIVRD", Status.DELIVERED), ("UNDELIV", Status.UNDELIVERED), ("EXPIRED", Status.EXPIRED)],
)
async def test_receipts_end_as_delivered_undelivered_expired(
    smsc: Smsc, stat: str, status: str
) -> None:
    inbox = Inbox()
    session = await Session.open(config(smsc), inbox)
    (sm,) = build_submits("m", TO, "MyShop", "Twój kod: 123456", RULES)
    resp = await session.submit(sm)
    smsc.receipt(resp.message_id, stat, err=0 if stat == "DELIVRD" else 34)
    await until(lambda: len(inbox.got) == 1)
    receipt = inbox.got[0]
    assert is_receipt(receipt)
    report = report_from(receipt)
    assert (report.carrier_message_id, report.status, report.carrier_status) == (
        resp.message_id,
        status,
        stat,
    )
    assert report.error_code == (None if stat == "DELIVRD" else "034")
    await until(lambda: smsc.state()["unacked"] == 0)  # deliver_sm_resp went back
    await session.close()


async def test_mo_parts_and_stop_arrive_as_inbound(smsc: Smsc) -> None:
    inbox = Inbox()
    session = await Session.open(config(smsc), inbox)
    smsc.mo(
        "48500100200",
        "48600",
        ["Dzień dobry, ", "chcę zamówić"],
        data_coding=8,
        concat="udh16",
        ref=700,
    )
    smsc.mo("48500100200", "48600", ["STOP"])
    await until(lambda: len(inbox.got) == 3)
    parts = [inbound_from(d) for d in inbox.got]
    assert [(x.text, x.ref, x.seq, x.total) for x in parts[:2]] == [
        ("Dzień dobry, ", "700", 1, 2),
        ("chcę zamówić", "700", 2, 2),
    ]
    stop = parts[2]
    assert (stop.phone, stop.number, stop.text, stop.total) == ("+48500100200", "+48600", "STOP", 1)
    await session.close()


async def test_deliver_sm_is_answered_only_after_the_handler_commits(smsc: Smsc) -> None:
    inbox = Inbox()
    inbox.fail = True
    session = await Session.open(config(smsc), inbox)
    smsc.mo("48500100200", "48600", ["Tak"])
    await until(lambda: len(smsc.pdus("deliver_sm_resp", "in")) == 1)
    nack = smsc.pdus("deliver_sm_resp", "in")[0]
    assert status_name(nack["command_status"]) == "ESME_RX_T_APPN"  # kept by the SMSC
    assert smsc.state()["unacked"] == 1 and inbox.got == []
    await session.close()
    # Bound again with a working handler: the SMSC delivers it again, and now it is taken.
    inbox.fail = False
    session = await Session.open(config(smsc), inbox)
    await until(lambda: len(inbox.got) == 1 and smsc.state()["unacked"] == 0)
    assert inbound_from(inbox.got[0]).text == "Tak"
    await session.close()


async def test_throttling_and_permanent_answers_translate(smsc: Smsc) -> None:
    session = await Session.open(config(smsc))
    smsc.answer_submits(("ESME_RTHROTTLED", 1), ("ESME_RMSGQFUL", 1), ("ESME_RINVDSTADR", 1))
    answers = []
    for _ in range(4):
        (sm,) = build_submits("m", TO, "MyShop", "hi", RULES)
        answers.append(await session.submit(sm))
    assert [status_name(a.status) for a in answers] == [
        "ESME_RTHROTTLED",
        "ESME_RMSGQFUL",
        "ESME_RINVDSTADR",
        "ESME_ROK",
    ]
    errors = [from_status(a.status) for a in answers[:3]]
    assert isinstance(errors[0], ThrottledError) and isinstance(errors[1], ThrottledError)
    assert isinstance(errors[2], PermanentCarrierError) and errors[2].code == "esme_rinvdstadr"
    assert not any(e.ambiguous for e in errors)
    await session.close()


async def test_window_bounds_outstanding_submits_and_silence_is_ambiguous(smsc: Smsc) -> None:
    smsc.answer_submits(default="silent")
    session = await Session.open(config(smsc, window=5, response_timeout_s=2.0))
    sms = [build_submits(f"m{i}", TO, "MyShop", "hi", RULES)[0] for i in range(8)]
    results = [asyncio.ensure_future(session.submit(sm)) for sm in sms]
    await until(lambda: len(submits_seen(smsc)) == 5, timeout=1.5)
    await asyncio.sleep(0.05)
    assert len(submits_seen(smsc)) == 5 and session.in_window == 5  # the window held 3 back
    done = await asyncio.gather(*results, return_exceptions=True)
    assert all(isinstance(d, SubmitUnanswered) and d.reason == "timeout" for d in done)
    assert all(translate(d).ambiguous for d in done if isinstance(d, BaseException))
    assert len(submits_seen(smsc)) == 8
    await session.close()


async def test_smsc_killed_mid_window_reports_the_outstanding_as_ambiguous(smsc: Smsc) -> None:
    states: list[tuple[str, str]] = []
    bind = Bind(
        config(smsc, window=10),
        on_state=lambda s, d: states.append((s, d)),
        backoff=Backoff(base_s=0.05, cap_s=0.2),
        rng=random.Random(1),
    )
    bind.start()
    assert await bind.wait_bound(5)
    (first,) = build_submits("m0", TO, "MyShop", "przed", RULES)
    accepted = await bind.submit(first)
    smsc.answer_submits(default="silent")
    outstanding = [
        asyncio.ensure_future(bind.submit(build_submits(f"m{i}", TO, "MyShop", "hi", RULES)[0]))
        for i in range(1, 6)
    ]
    await until(lambda: len(submits_seen(smsc)) == 6)
    smsc.kill()
    done = await asyncio.gather(*outstanding, return_exceptions=True)
    assert all(isinstance(d, SubmitUnanswered) and d.reason == "disconnected" for d in done)
    assert [translate(d).code for d in done if isinstance(d, BaseException)] == [
        "carrier_disconnected"
    ] * 5
    with pytest.raises(NotBound):
        await bind.submit(first)  # nothing is written while the SMSC is away
    smsc.start()  # same port, same message store
    await until(lambda: bind.bound)
    assert (
        states[0] == ("up", "") and ("up", "") in states[2:] and any(s == "down" for s, _ in states)
    )
    session = bind.session
    assert session is not None
    # The SMSC still knows the message it accepted before the kill: query_sm finds it.
    q = await session.query(accepted.message_id, first)
    assert (q.status, q.message_id, q.message_state) == (0, accepted.message_id, 1)
    smsc.answer_submits(default="ok")
    assert (await bind.submit(first)).status == 0
    await bind.stop()


async def test_query_sm_answers_states_and_refusals(smsc: Smsc) -> None:
    session = await Session.open(config(smsc), Inbox())
    (sm,) = build_submits("m", TO, "MyShop", "hi", RULES)
    resp = await session.submit(sm)
    smsc.receipt(resp.message_id, "DELIVRD")
    await until(lambda: smsc.state()["unacked"] == 0)
    q = await session.query(resp.message_id, sm)
    assert q.message_state == 2 and len(q.final_date) == 16
    unknown = await session.query("ffffffff", sm)
    assert status_name(unknown.status) == "ESME_RQUERYFAIL"
    smsc.query_supported(False)
    refused = await session.query(resp.message_id, sm)
    assert status_name(refused.status) == "ESME_RINVCMDID"
    await session.close()


async def test_wrong_password_is_a_clear_bind_error(smsc: Smsc) -> None:
    with pytest.raises(BindFailed) as info:
        await Session.open(config(smsc, password="wrong"))
    assert status_name(info.value.status) == "ESME_RINVPASWD" and info.value.credentials
    assert "ESME_RINVPASWD" in str(info.value) and "wrong" not in str(info.value)
    states: list[tuple[str, str]] = []
    bind = Bind(config(smsc, password="wrong"), on_state=lambda s, d: states.append((s, d)))
    bind.start()
    assert not await bind.wait_bound(0.5)
    assert states[0] == ("bind_failed", "bind refused: ESME_RINVPASWD")
    with pytest.raises(NotBound, match="ESME_RINVPASWD"):
        await bind.submit(build_submits("m", TO, "MyShop", "hi", RULES)[0])
    await bind.stop()
    assert smsc.state()["binds"].get(ACCOUNT[0], {}).get("total", 0) == 0


async def test_bind_limit_of_the_account_is_enforced_by_the_smsc() -> None:
    with running_smsc(max_binds=2) as smsc:
        a = await Session.open(config(smsc, mode=BindMode.TRANSMITTER))
        b = await Session.open(config(smsc, mode=BindMode.RECEIVER))
        with pytest.raises(BindFailed) as info:
            await Session.open(config(smsc))
        assert status_name(info.value.status) == "ESME_RBINDFAIL" and not info.value.credentials
        assert smsc.state()["binds"][ACCOUNT[0]]["peak"] == 2
        # A receiver bind may not submit: the SMSC refuses it.
        (sm,) = build_submits("m", TO, "MyShop", "hi", RULES)
        assert status_name((await b.submit(sm)).status) == "ESME_RINVBNDSTS"
        assert (await a.submit(sm)).status == 0
        await a.close()
        await b.close()


async def test_enquire_link_keeps_the_line_and_graceful_close_unbinds(smsc: Smsc) -> None:
    session = await Session.open(config(smsc, enquire_link_s=0.2))
    await until(lambda: len(smsc.pdus("enquire_link_resp", "out")) >= 2)
    assert session.bound
    await session.close()
    assert [e["command"] for e in smsc.pdus(direction="in")][-1] == "unbind"
    assert smsc.pdus("unbind_resp", "out")
    await until(lambda: smsc.state()["binds"][ACCOUNT[0]]["open"] == 0)


async def test_outstanding_answers_arrive_before_a_graceful_unbind(smsc: Smsc) -> None:
    session = await Session.open(config(smsc))
    sms = [build_submits(f"m{i}", TO, "MyShop", "hi", RULES)[0] for i in range(20)]
    pending = [asyncio.ensure_future(session.submit(sm)) for sm in sms]
    await asyncio.sleep(0)
    await session.close()
    results = await asyncio.gather(*pending, return_exceptions=True)
    # The window's 10 were written and answered before the unbind; the 10 waiting for a
    # slot were never written (not ambiguous: they can go on another bind).
    answered = [r for r in results if isinstance(r, p.SubmitSmResp)]
    assert len(answered) == 10 and all(a.status == 0 and a.message_id for a in answered)
    assert all(isinstance(r, NotBound) for r in results if r not in answered)
    assert len(submits_seen(smsc)) == 10
    assert [e["command"] for e in smsc.pdus(direction="in")][-1] == "unbind"


async def test_unknown_commands_get_generic_nack_and_smsc_unbind_is_answered(smsc: Smsc) -> None:
    states: list[tuple[str, str]] = []
    bind = Bind(
        config(smsc), on_state=lambda s, d: states.append((s, d)), backoff=Backoff(0.05, 0.1)
    )
    bind.start()
    assert await bind.wait_bound(5)
    # data_sm (0x103), which we do not serve, with sequence 77; then a PDU too short to read.
    smsc.send_raw(bytes.fromhex("0000001000000103000000000000004d"))
    smsc.send_raw(bytes.fromhex("0000001100000004000000000000004e00"))
    await until(lambda: len(smsc.pdus("generic_nack", "in")) == 2)
    nacks = smsc.pdus("generic_nack", "in")
    assert [(n["sequence_number"], status_name(n["command_status"])) for n in nacks] == [
        (77, "ESME_RINVCMDID"),
        (78, "ESME_RINVCMDLEN"),
    ]
    assert bind.bound  # a bad PDU does not end the session
    smsc.unbind_all()
    await until(lambda: len(smsc.pdus("unbind_resp", "in")) == 1)
    await until(lambda: sum(1 for s, _ in states if s == "up") == 2)  # bound again
    await bind.stop()


async def test_tls_bind(tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    openssl = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    names = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(
        [*openssl, *names, "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True
    )
    with running_smsc(tls=(str(key), str(cert))) as smsc:
        trusted = ssl.create_default_context(cafile=str(cert))
        session = await Session.open(config(smsc, tls=trusted))
        (sm,) = build_submits("m", TO, "MyShop", "przez TLS", RULES)
        assert (await session.submit(sm)).status == 0
        await session.close()
        assert submits_seen(smsc)[0]["short_message"]["message"] == "przez TLS"
        with pytest.raises(ConnectFailed, match="CERTIFICATE_VERIFY_FAILED"):
            await Session.open(config(smsc, tls=ssl.create_default_context()))
