"""The SMPP codec: round trips of every PDU type (hypothesis), byte captures written by the
independent SMSC (the npm smpp package), framing, and refusals that name the field."""

from __future__ import annotations

import json
import pathlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.smpp import pdu as p
from workers.smpp.constants import ESM_RECEIPT, ESME_RTHROTTLED, Command, Tag

CAPTURES = json.loads(
    (pathlib.Path(__file__).parents[1] / "data" / "smpp_node_captures.json").read_text()
)["pdus"]


def capture(name: str) -> bytes:
    return bytes.fromhex(CAPTURES[name])


ascii_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E))
u8 = st.integers(0, 255)
seq = st.integers(1, 0x7FFFFFFF)
tlvs = st.dictionaries(st.integers(0, 0xFFFF), st.binary(max_size=40), max_size=4)


def cstr(limit: int) -> st.SearchStrategy[str]:
    return ascii_text.filter(lambda s: len(s) < limit)


short_messages = st.builds(
    lambda cls, *a: cls(*a),
    st.sampled_from([p.SubmitSm, p.DeliverSm]),
    seq,
    st.just(0),
    cstr(6),
    u8,
    u8,
    cstr(21),
    u8,
    u8,
    cstr(21),
    u8,
    u8,
    u8,
    cstr(17),
    cstr(17),
    u8,
    u8,
    u8,
    u8,
    st.binary(max_size=254),
    tlvs,
)
binds = st.builds(
    lambda cls, *a: cls(*a),
    st.sampled_from([p.BindTransceiver, p.BindTransmitter, p.BindReceiver]),
    seq,
    st.just(0),
    cstr(16),
    cstr(9),
    cstr(13),
    u8,
    u8,
    u8,
    cstr(41),
)
others = st.one_of(
    st.builds(p.SubmitSmResp, seq, st.integers(0, 0xFFFF), cstr(65)),
    st.builds(p.DeliverSmResp, seq, st.integers(0, 0xFFFF), cstr(65)),
    st.builds(p.QuerySm, seq, st.just(0), cstr(65), u8, u8, cstr(21)),
    st.builds(p.QuerySmResp, seq, st.just(0), cstr(65), cstr(17), u8, u8),
    st.builds(p.BindTransceiverResp, seq, st.just(0), cstr(16), tlvs),
    st.builds(p.EnquireLink, seq),
    st.builds(p.EnquireLinkResp, seq),
    st.builds(p.Unbind, seq),
    st.builds(p.UnbindResp, seq),
    st.builds(p.GenericNack, seq, st.integers(0, 0xFFFF)),
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(short_messages, binds, others))
def test_every_pdu_survives_encode_then_decode(pdu: p.Pdu) -> None:
    data = p.encode(pdu)
    assert struct.unpack(">I", data[:4])[0] == len(data)
    assert p.decode(data) == pdu


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(short_messages, others), min_size=1, max_size=6), st.data())
def test_frames_come_out_whole_however_the_stream_is_cut(
    pdus: list[p.Pdu], data: st.DataObject
) -> None:
    stream = b"".join(p.encode(x) for x in pdus)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    reader = p.FrameReader()
    frames: list[bytes] = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        frames += reader.feed(stream[a:b])
    assert [p.decode(f) for f in frames] == pdus


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=16, max_size=200))
def test_garbage_is_a_pdu_error_or_a_pdu_never_a_crash(body: bytes) -> None:
    data = struct.pack(">I", len(body) + 4) + body
    try:
        pdu = p.decode(data)
    except p.PduError as exc:
        assert ":" in str(exc)  # names the field
        return
    assert isinstance(pdu, p.Pdu)


def test_node_bind_response_and_submit_answers() -> None:
    bind = p.decode(capture("bind_transceiver_resp"))
    assert isinstance(bind, p.BindTransceiverResp)
    assert (bind.status, bind.system_id, bind.sequence) == (0, "smsc", 1)
    ok = p.decode(capture("submit_sm_resp_ok"))
    assert isinstance(ok, p.SubmitSmResp) and ok.message_id == "00000001"
    # An error answer with no body at all (the specification allows it): still a response.
    throttled = p.decode(capture("submit_sm_resp_throttled"))
    assert isinstance(throttled, p.SubmitSmResp)
    assert (throttled.status, throttled.message_id) == (ESME_RTHROTTLED, "")
    unbind = p.decode(capture("unbind_resp"))
    assert isinstance(unbind, p.UnbindResp)


def test_node_query_answer() -> None:
    q = p.decode(capture("query_sm_resp"))
    assert isinstance(q, p.QuerySmResp)
    assert (q.message_id, q.final_date, q.message_state, q.error_code) == ("00000001", "", 1, 0)


def test_node_receipt_has_text_and_tlvs() -> None:
    d = p.decode(capture("receipt_delivrd"))
    assert isinstance(d, p.DeliverSm)
    assert d.esm_class == ESM_RECEIPT
    assert d.short_message.startswith(b"id:00000001 sub:001 dlvrd:001 submit date:")
    assert p.tlv_str(d.tlvs, Tag.RECEIPTED_MESSAGE_ID) == "00000001"
    assert p.tlv_int(d.tlvs, Tag.MESSAGE_STATE) == 2
    # Re-encoding gives the SMSC's bytes back: nothing was lost or reordered.
    assert p.encode(d) == capture("receipt_delivrd")


@pytest.mark.parametrize("name", [k for k in CAPTURES if k.startswith("mo_")])
def test_node_mo_messages_reencode_byte_for_byte(name: str) -> None:
    d = p.decode(capture(name))
    assert isinstance(d, p.DeliverSm)
    assert p.encode(d) == capture(name)


def test_unknown_command_decodes_for_a_generic_nack() -> None:
    data = struct.pack(">IIII", 16, 0x00000103, 0, 9)  # data_sm: not ours
    u = p.decode(data)
    assert isinstance(u, p.Unknown) and u.raw_command_id == 0x103 and u.sequence == 9
    with pytest.raises(p.PduError, match="command_id"):
        p.encode(u)


@pytest.mark.parametrize(
    ("pdu", "field"),
    [
        (p.BindTransceiver(system_id="x" * 16), "system_id"),
        (p.BindTransceiver(password="p" * 9), "password"),
        (p.SubmitSm(destination_addr="4" * 21), "destination_addr"),
        (p.SubmitSm(source_addr="Zażółć"), "source_addr"),
        (p.SubmitSm(short_message=b"x" * 255), "short_message"),
    ],
)
def test_values_that_cannot_be_encoded_name_the_field(pdu: p.Pdu, field: str) -> None:
    with pytest.raises(p.PduError, match=field):
        p.encode(pdu)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"\x00\x00\x00\x0c" + b"\x00" * 8, "command_length"),
        (struct.pack(">IIII", 20, Command.SUBMIT_SM_RESP, 0, 1) + b"abcd", "message_id"),
        (struct.pack(">IIII", 17, Command.SUBMIT_SM, 0, 1) + b"\x00", "source_addr_ton"),
        (p.encode(p.SubmitSm(short_message=b"hello"))[:-2], "command_length"),
    ],
)
def test_unreadable_bytes_name_the_field(data: bytes, field: str) -> None:
    with pytest.raises(p.PduError, match=field):
        p.decode(data)


def test_short_message_announcing_more_than_it_has_names_it() -> None:
    raw = bytearray(p.encode(p.SubmitSm(short_message=b"hello")))
    raw[-6] = 9  # sm_length says 9, 5 follow
    with pytest.raises(p.PduError, match="short_message"):
        p.decode(bytes(raw))


def test_frame_reader_refuses_impossible_lengths() -> None:
    with pytest.raises(p.PduError, match="command_length"):
        p.FrameReader().feed(struct.pack(">I", 8))
    with pytest.raises(p.PduError, match="command_length"):
        p.FrameReader(max_length=1000).feed(struct.pack(">I", 1001))


def test_password_never_in_repr() -> None:
    assert "hunter2" not in repr(p.BindTransceiver(system_id="a", password="hunter2"))
