"""SMPP 3.4 PDUs as typed values: :func:`encode` to bytes, :func:`decode` from bytes.

Covers what an ESME needs: the three binds, submit_sm, deliver_sm, query_sm, enquire_link,
unbind (each with its response) and generic_nack, with optional parameters (TLVs) kept as raw
``tag → bytes``. A response whose ``status`` is not ``ESME_ROK`` may come without a body (the
specification says so for most of them); decoding then leaves the body fields at their
defaults. Anything unreadable raises :class:`PduError` naming the field; an unknown command id
decodes to :class:`Unknown` so that the session can answer it with ``generic_nack``.

Why our own codec rather than a library: ``docs/smpp.md`` ("Library choice") has the
measurement.

Longer than 400 lines on purpose: one codec, a short encoder and decoder per PDU of the
specification, read side by side.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import ClassVar

from workers.smpp.constants import RESPONSE_BIT, Command, Tag

HEADER = struct.Struct(">IIII")
MAX_PDU = 64 * 1024  # longer than any PDU an SMSC sends; a larger length means a broken stream


class PduError(ValueError):
    """Bytes that are not a valid PDU (or a value that cannot be encoded); names the field."""


Tlvs = dict[int, bytes]


@dataclass(slots=True)
class Pdu:
    """Header fields every PDU has."""

    COMMAND: ClassVar[Command]
    sequence: int = 0
    status: int = 0

    @property
    def command_id(self) -> int:
        """The command id on the wire."""
        return int(self.COMMAND)

    @property
    def is_response(self) -> bool:
        """Whether this is a ``*_resp`` or ``generic_nack``."""
        return bool(self.COMMAND & RESPONSE_BIT)

    def _body(self) -> bytes:
        return b""

    def _read(self, r: _Reader) -> None:
        """Read the body (none by default)."""


@dataclass(slots=True)
class Bind(Pdu):
    """bind_transmitter / bind_receiver / bind_transceiver (see subclasses)."""

    system_id: str = ""
    password: str = field(default="", repr=False)
    system_type: str = ""
    interface_version: int = 0x34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""

    def _body(self) -> bytes:
        return b"".join(
            (
                _cstr(self.system_id, 16, "system_id"),
                _cstr(self.password, 9, "password"),
                _cstr(self.system_type, 13, "system_type"),
                bytes((self.interface_version, self.addr_ton, self.addr_npi)),
                _cstr(self.address_range, 41, "address_range"),
            )
        )

    def _read(self, r: _Reader) -> None:
        self.system_id = r.cstr("system_id", 16)
        self.password = r.cstr("password", 9)
        self.system_type = r.cstr("system_type", 13)
        self.interface_version = r.u8("interface_version")
        self.addr_ton = r.u8("addr_ton")
        self.addr_npi = r.u8("addr_npi")
        self.address_range = r.cstr("address_range", 41)


@dataclass(slots=True)
class BindResp(Pdu):
    """The answer to a bind: the SMSC's ``system_id``, maybe ``sc_interface_version``."""

    system_id: str = ""
    tlvs: Tlvs = field(default_factory=dict)

    def _body(self) -> bytes:
        return _cstr(self.system_id, 16, "system_id") + _tlv_bytes(self.tlvs)

    def _read(self, r: _Reader) -> None:
        if r.done:  # an error answer without a body
            return
        self.system_id = r.cstr("system_id", 16)
        self.tlvs = r.tlvs()


@dataclass(slots=True)
class BindTransmitter(Bind):
    """Bind to send only."""

    COMMAND = Command.BIND_TRANSMITTER


@dataclass(slots=True)
class BindReceiver(Bind):
    """Bind to receive only (receipts, mobile-originated messages)."""

    COMMAND = Command.BIND_RECEIVER


@dataclass(slots=True)
class BindTransceiver(Bind):
    """Bind to send and receive on one connection."""

    COMMAND = Command.BIND_TRANSCEIVER


@dataclass(slots=True)
class BindTransmitterResp(BindResp):
    """Answer to bind_transmitter."""

    COMMAND = Command.BIND_TRANSMITTER_RESP


@dataclass(slots=True)
class BindReceiverResp(BindResp):
    """Answer to bind_receiver."""

    COMMAND = Command.BIND_RECEIVER_RESP


@dataclass(slots=True)
class BindTransceiverResp(BindResp):
    """Answer to bind_transceiver."""

    COMMAND = Command.BIND_TRANSCEIVER_RESP


@dataclass(slots=True)
class ShortMessage(Pdu):
    """The body submit_sm and deliver_sm share (section 4.4.1 / 4.6.1)."""

    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""
    tlvs: Tlvs = field(default_factory=dict)

    def _body(self) -> bytes:
        if len(self.short_message) > 254:
            raise PduError("short_message: longer than 254 octets (use message_payload)")
        return b"".join(
            (
                _cstr(self.service_type, 6, "service_type"),
                bytes((self.source_addr_ton, self.source_addr_npi)),
                _cstr(self.source_addr, 21, "source_addr"),
                bytes((self.dest_addr_ton, self.dest_addr_npi)),
                _cstr(self.destination_addr, 21, "destination_addr"),
                bytes((self.esm_class, self.protocol_id, self.priority_flag)),
                _cstr(self.schedule_delivery_time, 17, "schedule_delivery_time"),
                _cstr(self.validity_period, 17, "validity_period"),
                bytes(
                    (
                        self.registered_delivery,
                        self.replace_if_present_flag,
                        self.data_coding,
                        self.sm_default_msg_id,
                        len(self.short_message),
                    )
                ),
                self.short_message,
                _tlv_bytes(self.tlvs),
            )
        )

    def _read(self, r: _Reader) -> None:
        # The hot path of receipts: the fixed layout read with local variables, not a call
        # per field (about half the CPU of the generic reader).
        data, pos = r.data, r.pos
        try:
            end = data.index(0, pos, pos + 6)
            self.service_type = data[pos:end].decode("latin-1")
            self.source_addr_ton, self.source_addr_npi = data[end + 1], data[end + 2]
            pos = end + 3
            # Real SMSCs send longer addresses than the specification's 21 (alphanumeric MO
            # gateways, numbers with prefixes): read up to 65 rather than refuse the PDU.
            end = data.index(0, pos, pos + 65)
            self.source_addr = data[pos:end].decode("latin-1")
            self.dest_addr_ton, self.dest_addr_npi = data[end + 1], data[end + 2]
            pos = end + 3
            end = data.index(0, pos, pos + 65)
            self.destination_addr = data[pos:end].decode("latin-1")
            self.esm_class, self.protocol_id, self.priority_flag = data[end + 1 : end + 4]
            pos = end + 4
            end = data.index(0, pos, pos + 17)
            self.schedule_delivery_time = data[pos:end].decode("latin-1")
            pos = end + 1
            end = data.index(0, pos, pos + 17)
            self.validity_period = data[pos:end].decode("latin-1")
            pos = end + 1
            (
                self.registered_delivery,
                self.replace_if_present_flag,
                self.data_coding,
                self.sm_default_msg_id,
                length,
            ) = data[pos : pos + 5]
        except (ValueError, IndexError):
            # Truncated or unterminated: the generic reader names the field.
            r.pos = r.start
            self._read_slowly(r)
            return
        r.pos = pos + 5
        self.short_message = r.take(length, "short_message")
        self.tlvs = r.tlvs()

    def _read_slowly(self, r: _Reader) -> None:
        self.service_type = r.cstr("service_type", 6)
        self.source_addr_ton = r.u8("source_addr_ton")
        self.source_addr_npi = r.u8("source_addr_npi")
        self.source_addr = r.cstr("source_addr", 65)
        self.dest_addr_ton = r.u8("dest_addr_ton")
        self.dest_addr_npi = r.u8("dest_addr_npi")
        self.destination_addr = r.cstr("destination_addr", 65)
        self.esm_class = r.u8("esm_class")
        self.protocol_id = r.u8("protocol_id")
        self.priority_flag = r.u8("priority_flag")
        self.schedule_delivery_time = r.cstr("schedule_delivery_time", 17)
        self.validity_period = r.cstr("validity_period", 17)
        self.registered_delivery = r.u8("registered_delivery")
        self.replace_if_present_flag = r.u8("replace_if_present_flag")
        self.data_coding = r.u8("data_coding")
        self.sm_default_msg_id = r.u8("sm_default_msg_id")
        length = r.u8("sm_length")
        self.short_message = r.take(length, "short_message")
        self.tlvs = r.tlvs()


@dataclass(slots=True)
class SubmitSm(ShortMessage):
    """A message to the SMSC."""

    COMMAND = Command.SUBMIT_SM


@dataclass(slots=True)
class DeliverSm(ShortMessage):
    """A receipt or a mobile-originated message from the SMSC."""

    COMMAND = Command.DELIVER_SM


@dataclass(slots=True)
class MessageIdResp(Pdu):
    """A response carrying a ``message_id`` (submit_sm_resp, deliver_sm_resp)."""

    message_id: str = ""

    def _body(self) -> bytes:
        return _cstr(self.message_id, 65, "message_id")

    def _read(self, r: _Reader) -> None:
        if not r.done:  # error answers often come without a body
            self.message_id = r.cstr("message_id", 65)
            r.tlvs()  # SMPP 5 SMSCs may add TLVs: read past them


@dataclass(slots=True)
class SubmitSmResp(MessageIdResp):
    """The SMSC's answer to submit_sm: its message id, or an error status."""

    COMMAND = Command.SUBMIT_SM_RESP


@dataclass(slots=True)
class DeliverSmResp(MessageIdResp):
    """Our answer to deliver_sm (``message_id`` is unused: empty)."""

    COMMAND = Command.DELIVER_SM_RESP


@dataclass(slots=True)
class QuerySm(Pdu):
    """Ask the state of a message we submitted (by the SMSC's message id)."""

    COMMAND = Command.QUERY_SM
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""

    def _body(self) -> bytes:
        return b"".join(
            (
                _cstr(self.message_id, 65, "message_id"),
                bytes((self.source_addr_ton, self.source_addr_npi)),
                _cstr(self.source_addr, 21, "source_addr"),
            )
        )

    def _read(self, r: _Reader) -> None:
        self.message_id = r.cstr("message_id", 65)
        self.source_addr_ton = r.u8("source_addr_ton")
        self.source_addr_npi = r.u8("source_addr_npi")
        self.source_addr = r.cstr("source_addr", 65)


@dataclass(slots=True)
class QuerySmResp(Pdu):
    """The state of a message: ``message_state`` (constants.MESSAGE_STATES), final date."""

    COMMAND = Command.QUERY_SM_RESP
    message_id: str = ""
    final_date: str = ""
    message_state: int = 0
    error_code: int = 0

    def _body(self) -> bytes:
        return b"".join(
            (
                _cstr(self.message_id, 65, "message_id"),
                _cstr(self.final_date, 17, "final_date"),
                bytes((self.message_state, self.error_code)),
            )
        )

    def _read(self, r: _Reader) -> None:
        if r.done:
            return
        self.message_id = r.cstr("message_id", 65)
        self.final_date = r.cstr("final_date", 17)
        self.message_state = r.u8("message_state")
        self.error_code = r.u8("error_code")


@dataclass(slots=True)
class EnquireLink(Pdu):
    """Keep-alive (either side may send it)."""

    COMMAND = Command.ENQUIRE_LINK


@dataclass(slots=True)
class EnquireLinkResp(Pdu):
    """Answer to enquire_link."""

    COMMAND = Command.ENQUIRE_LINK_RESP


@dataclass(slots=True)
class Unbind(Pdu):
    """End the session (either side)."""

    COMMAND = Command.UNBIND


@dataclass(slots=True)
class UnbindResp(Pdu):
    """Answer to unbind."""

    COMMAND = Command.UNBIND_RESP


@dataclass(slots=True)
class GenericNack(Pdu):
    """A PDU the other side could not read at all (its sequence number, when known)."""

    COMMAND = Command.GENERIC_NACK


@dataclass(slots=True)
class Unknown(Pdu):
    """A command this codec does not know: answered with generic_nack (ESME_RINVCMDID)."""

    COMMAND = Command.GENERIC_NACK  # never encoded; the real id is in ``raw_command_id``
    raw_command_id: int = 0

    @property
    def is_response(self) -> bool:
        """Whether the unknown command id has the response bit."""
        return bool(self.raw_command_id & RESPONSE_BIT)


_TYPES: dict[int, type[Pdu]] = {
    int(cls.COMMAND): cls
    for cls in (
        BindTransmitter,
        BindReceiver,
        BindTransceiver,
        BindTransmitterResp,
        BindReceiverResp,
        BindTransceiverResp,
        SubmitSm,
        SubmitSmResp,
        DeliverSm,
        DeliverSmResp,
        QuerySm,
        QuerySmResp,
        EnquireLink,
        EnquireLinkResp,
        Unbind,
        UnbindResp,
        GenericNack,
    )
}


def encode(pdu: Pdu) -> bytes:
    """The PDU's bytes, header included."""
    if isinstance(pdu, Unknown):
        raise PduError("command_id: an unknown command cannot be encoded")
    body = pdu._body()
    return HEADER.pack(16 + len(body), pdu.command_id, pdu.status, pdu.sequence) + body


def decode(data: bytes | memoryview) -> Pdu:
    """One whole PDU (``len(data)`` equals its ``command_length``)."""
    if len(data) < 16:
        raise PduError("command_length: shorter than the 16-octet header")
    length, command_id, status, sequence = HEADER.unpack_from(data, 0)
    if length != len(data):
        raise PduError(f"command_length: says {length}, got {len(data)} octets")
    cls = _TYPES.get(command_id)
    if cls is None:
        return Unknown(sequence, status, command_id)
    pdu = cls(sequence, status)
    reader = _Reader(bytes(data), 16)
    pdu._read(reader)
    if not reader.done:
        raise PduError(f"{type(pdu).__name__}: {len(data) - reader.pos} octets past the body")
    return pdu


class FrameReader:
    """Cuts a byte stream into whole PDUs."""

    def __init__(self, max_length: int = MAX_PDU) -> None:
        self._buf = bytearray()
        self._max = max_length

    def feed(self, data: bytes) -> list[bytes]:
        """Append ``data``; return every complete PDU now in the buffer.

        Raises :class:`PduError` on a length outside 16..``max_length`` (the stream can no
        longer be framed: the caller closes the connection).
        """
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0
        while len(buf) - pos >= 4:
            (length,) = struct.unpack_from(">I", buf, pos)
            if length < 16 or length > self._max:
                raise PduError(f"command_length: {length} is outside 16..{self._max}")
            if len(buf) - pos < length:
                break
            out.append(bytes(buf[pos : pos + length]))
            pos += length
        if pos:
            del buf[:pos]
        return out


# -- TLV helpers ------------------------------------------------------------------------------


def tlv_int(tlvs: Tlvs, tag: int) -> int | None:
    """An integer TLV (1, 2 or 4 octets, big-endian), or None when absent."""
    raw = tlvs.get(tag)
    return None if raw is None or not raw else int.from_bytes(raw, "big")


def tlv_str(tlvs: Tlvs, tag: int) -> str | None:
    """A C-octet-string TLV (its NUL, if sent, removed), or None when absent."""
    raw = tlvs.get(tag)
    return None if raw is None else raw.split(b"\0", 1)[0].decode("latin-1")


def sar_tlvs(ref: int, total: int, seq: int) -> Tlvs:
    """The three SAR TLVs of one part (16-bit reference)."""
    return {
        Tag.SAR_MSG_REF_NUM: ref.to_bytes(2, "big"),
        Tag.SAR_TOTAL_SEGMENTS: bytes((total,)),
        Tag.SAR_SEGMENT_SEQNUM: bytes((seq,)),
    }


# -- primitives -------------------------------------------------------------------------------


def _cstr(value: str, limit: int, name: str) -> bytes:
    """A C-octet string of at most ``limit`` octets, NUL included."""
    try:
        raw = value.encode("ascii")
    except UnicodeEncodeError:
        raise PduError(f"{name}: not ASCII") from None
    if len(raw) >= limit:
        raise PduError(f"{name}: longer than {limit - 1} characters")
    if b"\0" in raw:
        raise PduError(f"{name}: contains NUL")
    return raw + b"\0"


def _tlv_bytes(tlvs: Tlvs) -> bytes:
    if not tlvs:
        return b""
    out = bytearray()
    for tag, value in tlvs.items():
        if len(value) > 0xFFFF:
            raise PduError(f"tlv 0x{tag:04X}: longer than 65535 octets")
        out += struct.pack(">HH", tag, len(value))
        out += value
    return bytes(out)


class _Reader:
    """Reads a PDU body; every error names the field."""

    __slots__ = ("data", "pos", "start")

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos
        self.start = pos

    @property
    def done(self) -> bool:
        return self.pos >= len(self.data)

    def u8(self, name: str) -> int:
        if self.pos >= len(self.data):
            raise PduError(f"{name}: missing")
        v = self.data[self.pos]
        self.pos += 1
        return v

    def cstr(self, name: str, limit: int) -> str:
        end = self.data.find(b"\0", self.pos, self.pos + limit)
        if end < 0:
            raise PduError(f"{name}: no NUL within {limit} octets")
        raw = self.data[self.pos : end]
        self.pos = end + 1
        # Latin-1 never fails: a non-ASCII octet in an id or address is kept, not refused.
        return raw.decode("latin-1")

    def take(self, n: int, name: str) -> bytes:
        if self.pos + n > len(self.data):
            raise PduError(f"{name}: {n} octets announced, {len(self.data) - self.pos} left")
        raw = self.data[self.pos : self.pos + n]
        self.pos += n
        return raw

    def tlvs(self) -> Tlvs:
        out: Tlvs = {}
        data = self.data
        while self.pos < len(data):
            if self.pos + 4 > len(data):
                raise PduError("tlv: truncated header")
            tag, length = struct.unpack_from(">HH", data, self.pos)
            self.pos += 4
            out[tag] = self.take(length, f"tlv 0x{tag:04X}")
        return out
