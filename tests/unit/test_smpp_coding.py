"""Encoding rules for SMPP: GSM-7 septets, UCS-2, the Latin-1 option, TON/NPI by sender kind,
long messages (UDH 8/16, SAR, message_payload), and reading a deliver_sm's user data."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.sms import GSM7_CHARS, count_parts
from workers.smpp import pdu as p
from workers.smpp.coding import (
    Concat,
    DefaultAlphabet,
    EncodingRules,
    build_submits,
    concat_from_udh,
    decode_text,
    gsm7_decode,
    gsm7_encode,
    sender_kind,
    user_data,
    validity,
)
from workers.smpp.constants import ESM_UDHI, Tag

gsm_text = st.text(st.sampled_from(sorted(GSM7_CHARS)), max_size=400)


@settings(max_examples=300, deadline=None)
@given(gsm_text)
def test_gsm7_septets_round_trip(text: str) -> None:
    raw = gsm7_encode(text)
    assert max(raw, default=0) <= 0x7F
    assert gsm7_decode(raw) == text


def test_gsm7_known_septets() -> None:
    # 3GPP TS 23.038: "@" is 0x00, "£" 0x01, "€" is ESC 0x65, "{" ESC 0x28.
    assert gsm7_encode("@£A€{") == bytes([0x00, 0x01, 0x41, 0x1B, 0x65, 0x1B, 0x28])
    assert gsm7_decode(bytes([0x1B, 0x3C, 0x1B, 0x3E])) == "[]"


def test_gsm7_refuses_what_it_cannot_carry() -> None:
    with pytest.raises(ValueError, match="GSM-7"):
        gsm7_encode("ą")


def test_gsm7_decode_is_lenient_like_a_handset() -> None:
    assert gsm7_decode(b"A\x1b") == "A"  # a trailing escape
    assert gsm7_decode(b"\x1bA") == "A"  # unknown extension code: the basic character
    assert gsm7_decode(bytes([0xC1])) == "A"  # 8th bit set: the low 7 bits


@pytest.mark.parametrize(
    ("sender", "kind", "ton_npi", "addr"),
    [
        ("MyShop", "alphanumeric", (5, 0), "MyShop"),
        ("7888", "short_code", (3, 0), "7888"),
        ("+48500100200", "international", (1, 1), "48500100200"),
        ("48500100200", "international", (1, 1), "48500100200"),
    ],
)
def test_ton_npi_follow_the_sender_kind(
    sender: str, kind: str, ton_npi: tuple[int, int], addr: str
) -> None:
    assert sender_kind(sender) == kind
    (sm,) = build_submits("m", "+48600700800", sender, "hi", EncodingRules())
    assert (sm.source_addr_ton, sm.source_addr_npi, sm.source_addr) == (*ton_npi, addr)
    assert (sm.dest_addr_ton, sm.dest_addr_npi, sm.destination_addr) == (1, 1, "48600700800")


def test_ton_npi_overridable_per_kind() -> None:
    rules = EncodingRules(source_ton_npi={"short_code": (0, 1)})
    (sm,) = build_submits("m", "+48600700800", "7888", "hi", rules)
    assert (sm.source_addr_ton, sm.source_addr_npi) == (0, 1)


def test_single_part_codings() -> None:
    rules = EncodingRules()
    (gsm,) = build_submits("m", "+48600700800", "MyShop", "Kod: 1234 €", rules)
    assert gsm.data_coding == 0 and gsm.short_message == gsm7_encode("Kod: 1234 €")
    (pl,) = build_submits("m", "+48600700800", "MyShop", "Zażółć gęślą jaźń", rules)
    assert pl.data_coding == 8 and pl.short_message == "Zażółć gęślą jaźń".encode("utf-16-be")
    (flash,) = build_submits("m", "+48600700800", "MyShop", "hi", rules, flash=True)
    assert flash.data_coding == 0x10
    assert gsm.registered_delivery == 1 and gsm.esm_class == 0


def test_latin1_operators_get_data_coding_3_unless_the_text_is_not_latin1() -> None:
    rules = EncodingRules(default_alphabet=DefaultAlphabet.LATIN1)
    (sm,) = build_submits("m", "+48600700800", "MyShop", "Café à 5€"[:-1], rules)
    assert sm.data_coding == 3 and sm.short_message == "Café à 5".encode("latin-1")
    (euro,) = build_submits("m", "+48600700800", "MyShop", "5 €", rules)
    assert euro.data_coding == 8


@pytest.mark.parametrize("concat", [Concat.UDH8, Concat.UDH16, Concat.SAR])
@pytest.mark.parametrize("text", ["a{b}" * 100, "Zażółć gęślą jaźń! " * 10])
def test_long_messages_split_where_the_api_counted(concat: Concat, text: str) -> None:
    sms = build_submits("msg-1", "+48600700800", "MyShop", text, EncodingRules(concat=concat))
    assert len(sms) == count_parts(text).parts
    joined, refs = [], set()
    for i, sm in enumerate(sms, 1):
        # Unpacked septets: 153 octets of GSM-7 (or 134 of UCS-2) plus the UDH; the SMSC packs.
        assert len(sm.short_message) <= 160
        data = user_data(sm.short_message, sm.esm_class, sm.data_coding, sm.tlvs)
        assert (data.total, data.seq) == (len(sms), i)
        refs.add(data.ref)
        joined.append(data.text)
        if concat is Concat.SAR:
            assert sm.esm_class == 0 and Tag.SAR_MSG_REF_NUM in sm.tlvs
        else:
            assert sm.esm_class == ESM_UDHI
    assert "".join(joined) == text and len(refs) == 1
    again = build_submits("msg-1", "+48600700800", "MyShop", text, EncodingRules(concat=concat))
    assert again == sms  # a resend carries the same reference


def test_udh_headers_are_standard() -> None:
    text = "x" * 200
    (first, _) = build_submits("r", "+48600700800", "S1", text, EncodingRules(concat=Concat.UDH8))
    assert first.short_message[:4] == bytes([5, 0, 3, first.short_message[3]])
    assert first.short_message[4:6] == bytes([2, 1])
    (first16, _) = build_submits(
        "r", "+48600700800", "S1", text, EncodingRules(concat=Concat.UDH16)
    )
    assert (
        first16.short_message[:3] == bytes([6, 8, 4]) and first16.short_message[5:7] == b"\x02\x01"
    )


def test_message_payload_carries_the_whole_text_in_one_pdu() -> None:
    text = "Zażółć " * 40
    (sm,) = build_submits("m", "+48600700800", "MyShop", text, EncodingRules(concat=Concat.PAYLOAD))
    assert sm.short_message == b"" and sm.data_coding == 8
    assert sm.tlvs[Tag.MESSAGE_PAYLOAD] == text.encode("utf-16-be")
    assert p.decode(p.encode(sm)) == sm


def test_validity_is_relative() -> None:
    assert validity(3600) == "000000010000000R"
    assert validity(2 * 86400 + 61) == "000002000101000R"
    assert validity(10) == "000000000100000R"  # at least a minute


@pytest.mark.parametrize(
    ("coding", "data", "text"),
    [
        (0x00, gsm7_encode("Hi €"), "Hi €"),
        (0x01, b"Hi", "Hi"),
        (0x03, "Café".encode("latin-1"), "Café"),
        (0x08, "Zażółć".encode("utf-16-be"), "Zażółć"),
        (0x18, "ą".encode("utf-16-be"), "ą"),  # flash UCS-2
        (0x10, gsm7_encode("flash"), "flash"),
        (0xF0, gsm7_encode("class 0"), "class 0"),
        (0xF4, b"8bit", "8bit"),
    ],
)
def test_decode_text_by_data_coding(coding: int, data: bytes, text: str) -> None:
    assert decode_text(data, coding) == text


def test_malformed_udh_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="UDH"):
        user_data(b"\x09\x00\x03", ESM_UDHI, 0, {})
    with pytest.raises(ValueError, match="UDH"):
        concat_from_udh(b"\x00\x05\x01")
    assert concat_from_udh(b"\x24\x01\x01\x00\x03\x07\x02\x01") == (7, 2, 1)  # after a shift
