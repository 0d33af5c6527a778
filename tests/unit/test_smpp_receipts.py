"""Receipts and MO messages read from deliver_sm (captures of the independent SMSC and the
variants real SMSCs send), and SMPP statuses translated into the workers' errors."""

from __future__ import annotations

import json
import pathlib

import pytest

from dispatcher.contract import AMBIGUOUS_CODES, Status
from workers.connectors.base import CallbackError
from workers.errors import PermanentCarrierError, ThrottledError
from workers.smpp import pdu as p
from workers.smpp.constants import STATUS_BY_NAME, Tag
from workers.smpp.errors import BindFailed, NotBound, SubmitUnanswered, from_status, translate
from workers.smpp.receipts import (
    inbound_from,
    is_receipt,
    parse_receipt_text,
    report_from,
    smpp_time,
)

CAPTURES = json.loads(
    (pathlib.Path(__file__).parents[1] / "data" / "smpp_node_captures.json").read_text()
)["pdus"]


def deliver(name: str) -> p.DeliverSm:
    d = p.decode(bytes.fromhex(CAPTURES[name]))
    assert isinstance(d, p.DeliverSm)
    return d


def receipt(text: str, tlvs: p.Tlvs | None = None) -> p.DeliverSm:
    return p.DeliverSm(esm_class=0x04, short_message=text.encode("latin-1"), tlvs=tlvs or {})


def test_node_receipt_is_a_delivered_report() -> None:
    d = deliver("receipt_delivrd")
    assert is_receipt(d)
    r = report_from(d)
    assert (r.carrier_message_id, r.status, r.carrier_status, r.error_code) == (
        "00000001",
        Status.DELIVERED,
        "DELIVRD",
        None,
    )
    assert r.done_at is not None and r.done_at > 1.7e9


@pytest.mark.parametrize(
    ("stat", "status"),
    [
        ("DELIVRD", Status.DELIVERED),
        ("UNDELIV", Status.UNDELIVERED),
        ("EXPIRED", Status.EXPIRED),
        ("REJECTD", Status.REJECTED),
        ("DELETED", Status.UNDELIVERED),
        ("ENROUTE", ""),
        ("ACCEPTD", ""),
    ],
)
def test_receipt_text_alone(stat: str, status: str) -> None:
    text = (
        f"id:7f3a sub:001 dlvrd:000 submit date:2611270101 done date:2611270102 "
        f"stat:{stat} err:034 text:Twoj kod 123456"
    )
    r = report_from(receipt(text))
    assert (r.carrier_message_id, r.status, r.carrier_status, r.error_code) == (
        "7f3a",
        status,
        stat,
        "034",
    )
    assert r.done_at == smpp_time("2611270102")


def test_tlvs_win_over_the_text() -> None:
    # Some SMSCs write the id in decimal in the text and as submit_sm_resp gave it in the TLV.
    text = (
        "id:2147483647 sub:001 dlvrd:001 submit date:2611270101 done date:2611270102"
        " stat:DELIVRD err:000"
    )
    r = report_from(
        receipt(text, {Tag.RECEIPTED_MESSAGE_ID: b"7FFFFFFF\0", Tag.MESSAGE_STATE: bytes([5])})
    )
    assert (r.carrier_message_id, r.status, r.carrier_status) == (
        "7FFFFFFF",
        Status.UNDELIVERED,
        "UNDELIV",
    )


def test_text_never_keeps_the_message_start() -> None:
    parsed = parse_receipt_text("id:1 stat:DELIVRD err:0 text:Your code is 123456")
    assert "123456" not in repr(parsed)
    # Fields in another order and case, with seconds in the dates.
    odd = parse_receipt_text("Stat:UNDELIV ID:abc Done Date:261127010203 err:001")
    assert (odd.id, odd.stat, odd.done_date, odd.err) == ("abc", "UNDELIV", "261127010203", "001")
    assert smpp_time("261127010203") == smpp_time("2611270102") + 3


def test_network_error_code_when_the_text_has_none() -> None:
    r = report_from(receipt("id:9 stat:UNDELIV err:000", {Tag.NETWORK_ERROR_CODE: b"\x03\x00\x22"}))
    assert r.error_code == "3:34"


@pytest.mark.parametrize(
    ("text", "reason"),
    [("sub:001 stat:DELIVRD", "no message id"), ("id:5 stat:WHATEVER", "unknown stat")],
)
def test_unreadable_receipts(text: str, reason: str) -> None:
    with pytest.raises(CallbackError, match=reason):
        report_from(receipt(text))


def test_bad_dates_are_none() -> None:
    assert smpp_time("2613450102") is None
    assert smpp_time("notadate") is None
    assert smpp_time(None) is None


def test_node_mo_ucs2_with_udh_parts() -> None:
    a, b = (
        inbound_from(deliver("mo_ucs2_udh8_1"), 1.0),
        inbound_from(deliver("mo_ucs2_udh8_2"), 1.0),
    )
    assert (a.phone, a.number, a.text, a.ref, a.seq, a.total) == (
        "+48500100200",
        "+48600",
        "Zażółć ",
        "66",
        1,
        2,
    )
    assert (b.text, b.ref, b.seq, b.total) == ("gęślą jaźń", "66", 2, 2)
    assert a.carrier_message_id != b.carrier_message_id


def test_node_mo_gsm7_with_sar_parts() -> None:
    a, b = inbound_from(deliver("mo_gsm7_sar_1")), inbound_from(deliver("mo_gsm7_sar_2"))
    assert (a.text, a.ref, a.seq, a.total) == ("Hello {", str(0x1234), 1, 2)
    assert (b.text, b.seq) == ("world} €", 2)


def test_node_mo_single_and_its_repeat_share_an_id() -> None:
    d = deliver("mo_gsm7_single")
    one, again = inbound_from(d), inbound_from(deliver("mo_gsm7_single"))
    assert (one.text, one.ref, one.total) == ("STOP", None, 1)
    assert one.carrier_message_id == again.carrier_message_id
    assert not is_receipt(d)


def test_mo_without_addresses_is_refused() -> None:
    with pytest.raises(CallbackError, match="addresses"):
        inbound_from(p.DeliverSm(short_message=b"hi"))


def test_statuses_translate_to_our_errors() -> None:
    throttled = from_status(STATUS_BY_NAME["ESME_RTHROTTLED"])
    assert isinstance(throttled, ThrottledError) and throttled.code == "esme_rthrottled"
    assert isinstance(from_status(STATUS_BY_NAME["ESME_RMSGQFUL"]), ThrottledError)
    bad_dest = from_status(STATUS_BY_NAME["ESME_RINVDSTADR"])
    assert isinstance(bad_dest, PermanentCarrierError) and "ESME_RINVDSTADR" in bad_dest.description
    syserr = from_status(STATUS_BY_NAME["ESME_RSYSERR"])
    assert syserr.retryable and not syserr.ambiguous
    vendor = from_status(0x400)
    assert vendor.retryable and vendor.code == "0x00000400"


def test_unanswered_submits_are_ambiguous_and_unsent_ones_are_not() -> None:
    for reason in ("timeout", "disconnected"):
        err = translate(SubmitUnanswered(reason))
        assert err.ambiguous and err.code in AMBIGUOUS_CODES
    for exc in (NotBound("x"), BindFailed(STATUS_BY_NAME["ESME_RINVPASWD"])):
        err = translate(exc)
        assert err.retryable and not err.ambiguous
    assert BindFailed(STATUS_BY_NAME["ESME_RINVPASWD"]).credentials
    assert not BindFailed(STATUS_BY_NAME["ESME_RBINDFAIL"]).credentials
