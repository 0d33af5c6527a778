"""From our message to submit_sm bodies, and from a deliver_sm's bytes back to text.

* **data_coding**: a GSM-7 text goes as data_coding 0 in the SMSC default alphabet, one septet
  per octet (unpacked: what SMPP means by data_coding 0; the SMSC packs for the air); a
  connection whose SMSC reads data_coding 0 as Latin-1 sends such texts as data_coding 3
  (Latin-1) instead, when they are Latin-1 (``€`` and the Greek capitals are not: those go as
  UCS-2); everything else goes as UCS-2, data_coding 8 (UTF-16 big-endian). Flash messages set
  message class 0 (0x10 / 0x18).
* **parts**: the text is cut where :func:`dispatcher.sms.split_parts` cuts it (the same parts the
  API counted and the limiter charged); each part goes as its own submit_sm with a UDH
  (8- or 16-bit reference) or SAR TLVs, or the whole text goes in one submit_sm's
  ``message_payload`` and the SMSC cuts it.
* **addresses**: TON/NPI from the sender kind (alphanumeric → 5/0, short code → 3/0,
  international → 1/1 without the ``+``); the destination is international (1/1).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from dispatcher.sms import is_gsm7, split_parts
from workers.smpp.constants import ESM_UDHI, REGISTERED_DELIVERY_FINAL, Tag
from workers.smpp.pdu import SubmitSm, Tlvs, sar_tlvs, tlv_int

# GSM 03.38 default alphabet in code order; 0x1B is the escape to the extension table.
_GSM_BASIC: Final[str] = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION: Final[dict[str, int]] = {
    "\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F,
    "[": 0x3C, "~": 0x3D, "]": 0x3E, "|": 0x40, "€": 0x65,
}  # fmt: skip
# str.translate tables: character → its septet(s) as Latin-1 characters, and back.
_TO_SEPTETS: Final[dict[int, str]] = {
    **{ord(c): chr(i) for i, c in enumerate(_GSM_BASIC) if c != "\x1b"},
    **{ord(c): "\x1b" + chr(code) for c, code in _GSM_EXTENSION.items()},
}
_FROM_SEPTETS: Final[dict[int, str]] = {i: c for i, c in enumerate(_GSM_BASIC) if c != "\x1b"}
_FROM_EXTENSION: Final[dict[int, str]] = {code: c for c, code in _GSM_EXTENSION.items()}

DC_DEFAULT: Final[int] = 0x00
DC_LATIN1: Final[int] = 0x03
DC_UCS2: Final[int] = 0x08
FLASH_CLASS: Final[int] = 0x10  # data_coding bits "message class 0" (shown, not stored)


class Concat(StrEnum):
    """How a long message travels."""

    UDH8 = "udh8"
    UDH16 = "udh16"
    SAR = "sar"
    PAYLOAD = "payload"


class DefaultAlphabet(StrEnum):
    """What the SMSC takes data_coding 0 to be."""

    GSM7 = "gsm7"
    LATIN1 = "latin1"  # send GSM-7 texts as data_coding 3 (Latin-1) instead


@dataclass(frozen=True, slots=True)
class EncodingRules:
    """A connection's encoding and addressing rules."""

    default_alphabet: DefaultAlphabet = DefaultAlphabet.GSM7
    concat: Concat = Concat.UDH8
    registered_delivery: int = REGISTERED_DELIVERY_FINAL
    source_ton_npi: dict[str, tuple[int, int]] | None = None  # per sender kind, overrides
    dest_ton_npi: tuple[int, int] = (1, 1)
    service_type: str = ""


DEFAULT_SOURCE_TON_NPI: Final[dict[str, tuple[int, int]]] = {
    "alphanumeric": (5, 0),
    "short_code": (3, 0),
    "international": (1, 1),
}
SHORT_CODE_MAX_DIGITS: Final[int] = 8


def sender_kind(sender: str) -> str:
    """``alphanumeric``, ``short_code`` (up to 8 digits) or ``international``."""
    digits = sender[1:] if sender.startswith("+") else sender
    if not digits.isdigit():
        return "alphanumeric"
    if not sender.startswith("+") and len(digits) <= SHORT_CODE_MAX_DIGITS:
        return "short_code"
    return "international"


def address(number: str) -> str:
    """An address as SMPP carries it: no ``+`` (the TON says it is international)."""
    return number[1:] if number.startswith("+") else number


def gsm7_encode(text: str) -> bytes:
    """GSM-7 text as unpacked septets, one per octet (extension characters as ESC + code).

    Raises ``ValueError`` for a character outside the GSM-7 alphabet."""
    out = text.translate(_TO_SEPTETS)
    try:
        raw = out.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError("text is not in the GSM-7 alphabet") from None
    if max(raw, default=0) > 0x7F:
        raise ValueError("text is not in the GSM-7 alphabet")
    return raw


def gsm7_decode(data: bytes) -> str:
    """Unpacked septets back to text. Octets above 0x7F are read as their low 7 bits, and an
    unknown extension code as the basic character (3GPP TS 23.038, 6.2.1.1), as handsets do."""
    if max(data, default=0) > 0x7F:
        data = bytes(b & 0x7F for b in data)
    first, *escaped = data.decode("latin-1").split("\x1b")
    out = [first.translate(_FROM_SEPTETS)]
    for piece in escaped:
        if piece:
            code = ord(piece[0])
            out.append(_FROM_EXTENSION.get(code) or _FROM_SEPTETS.get(code, " "))
            out.append(piece[1:].translate(_FROM_SEPTETS))
    return "".join(out)


def encode_text(text: str, rules: EncodingRules) -> tuple[int, bytes]:
    """``(data_coding, bytes)`` of a text (or a part of one)."""
    if is_gsm7(text):
        if rules.default_alphabet is DefaultAlphabet.LATIN1:
            try:
                return DC_LATIN1, text.encode("latin-1")
            except UnicodeEncodeError:
                return DC_UCS2, text.encode("utf-16-be")
        return DC_DEFAULT, gsm7_encode(text)
    return DC_UCS2, text.encode("utf-16-be")


def decode_text(data: bytes, data_coding: int) -> str:
    """Text of a deliver_sm's user data (UDH already removed) by its data_coding: SMPP's own
    values below 0x10, the GSM 03.38 coding groups above (SMPP 3.4, 5.2.19)."""
    if data_coding < 0x10:
        alphabet = {0x01: "ascii", 0x02: "latin1", 0x03: "latin1", 0x04: "latin1", 0x08: "ucs2"}
        kind = alphabet.get(data_coding, "gsm7")
    elif data_coding < 0x40:  # general data coding group: bits 3-2 are the alphabet
        kind = ("gsm7", "latin1", "ucs2", "latin1")[(data_coding >> 2) & 3]
    elif 0xE0 <= data_coding < 0xF0:  # message waiting group, UCS-2
        kind = "ucs2"
    elif data_coding >= 0xF0:  # data coding / message class group: bit 2 means 8-bit data
        kind = "latin1" if data_coding & 0x04 else "gsm7"
    else:
        kind = "gsm7" if 0xC0 <= data_coding < 0xE0 else "latin1"
    if kind == "ucs2":
        return data.decode("utf-16-be", "replace")
    if kind == "latin1":
        return data.decode("latin-1")
    if kind == "ascii":
        return data.decode("ascii", "replace")
    return gsm7_decode(data)


def concat_ref(ref: str, bits: int) -> int:
    """A stable concatenation reference for our message id (the same on a resend)."""
    digest = hashlib.blake2s(ref.encode(), digest_size=2).digest()
    return int.from_bytes(digest, "big") & ((1 << bits) - 1)


def validity(seconds: float) -> str:
    """A relative validity_period (``YYMMDDhhmmss000R``), capped at 99 days."""
    s = max(60, min(int(seconds), 99 * 86400))
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    return f"0000{days:02d}{hours:02d}{minutes:02d}{s:02d}000R"


def build_submits(
    ref: str,
    to: str,
    sender: str,
    text: str,
    rules: EncodingRules,
    flash: bool = False,
    validity_s: float | None = None,
) -> list[SubmitSm]:
    """The submit_sm PDUs of one message (one per part, or one with ``message_payload``)."""
    kind = sender_kind(sender)
    src_ton, src_npi = (rules.source_ton_npi or {}).get(kind, DEFAULT_SOURCE_TON_NPI[kind])
    # The fields every part shares, given to each constructor: dataclasses.replace() on a
    # base PDU cost more than the rest of the encoding (benchmark G's holder profile).
    base: dict[str, Any] = {
        "service_type": rules.service_type,
        "source_addr_ton": src_ton,
        "source_addr_npi": src_npi,
        "source_addr": address(sender) if kind == "international" else sender,
        "dest_addr_ton": rules.dest_ton_npi[0],
        "dest_addr_npi": rules.dest_ton_npi[1],
        "destination_addr": address(to),
        "registered_delivery": rules.registered_delivery,
        "validity_period": validity(validity_s) if validity_s else "",
    }
    parts = split_parts(text)
    flash_bits = FLASH_CLASS if flash else 0
    # One data_coding for the whole message: split_parts chose one encoding for all parts.
    coding, data = encode_text(text, rules)
    if len(parts) == 1:
        return [SubmitSm(**base, data_coding=coding | flash_bits, short_message=data)]
    if rules.concat is Concat.PAYLOAD:
        payload: Tlvs = {Tag.MESSAGE_PAYLOAD: data}
        return [SubmitSm(**base, data_coding=coding | flash_bits, tlvs=payload)]
    total = len(parts)
    out = []
    for seq, part in enumerate(parts, 1):
        _, data = encode_text(part, rules)
        if rules.concat is Concat.SAR:
            tlvs = sar_tlvs(concat_ref(ref, 16), total, seq)
            out.append(
                SubmitSm(**base, data_coding=coding | flash_bits, short_message=data, tlvs=tlvs)
            )
            continue
        if rules.concat is Concat.UDH16:
            udh = bytes((6, 0x08, 4)) + concat_ref(ref, 16).to_bytes(2, "big") + bytes((total, seq))
        else:
            udh = bytes((5, 0x00, 3, concat_ref(ref, 8), total, seq))
        out.append(
            SubmitSm(
                **base,
                esm_class=ESM_UDHI,
                data_coding=coding | flash_bits,
                short_message=udh + data,
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class UserData:
    """A deliver_sm's text and, for a part of a long message, its concatenation."""

    text: str
    ref: int | None = None
    total: int = 1
    seq: int = 1


def split_udh(data: bytes) -> tuple[bytes, bytes]:
    """``(udh, rest)`` of user data whose UDHI bit is set; ``ValueError`` when malformed."""
    if not data or data[0] + 1 > len(data):
        raise ValueError("UDH longer than the user data")
    return data[1 : data[0] + 1], data[data[0] + 1 :]


def concat_from_udh(udh: bytes) -> tuple[int, int, int] | None:
    """``(ref, total, seq)`` from a UDH's concatenation element (IEI 0x00 or 0x08)."""
    pos = 0
    while pos + 2 <= len(udh):
        iei, length = udh[pos], udh[pos + 1]
        value = udh[pos + 2 : pos + 2 + length]
        if len(value) != length:
            raise ValueError("UDH element longer than the UDH")
        if iei == 0x00 and length == 3:
            return value[0], value[1], value[2]
        if iei == 0x08 and length == 4:
            return int.from_bytes(value[:2], "big"), value[2], value[3]
        pos += 2 + length
    return None


def user_data(short_message: bytes, esm_class: int, data_coding: int, tlvs: Tlvs) -> UserData:
    """Text and concatenation of a deliver_sm (UDH, SAR TLVs or ``message_payload``)."""
    data = tlvs.get(Tag.MESSAGE_PAYLOAD) or short_message
    concat = None
    if esm_class & ESM_UDHI:
        udh, data = split_udh(data)
        concat = concat_from_udh(udh)
    sar_ref = tlv_int(tlvs, Tag.SAR_MSG_REF_NUM)
    if concat is None and sar_ref is not None:
        total = tlv_int(tlvs, Tag.SAR_TOTAL_SEGMENTS) or 1
        seq = tlv_int(tlvs, Tag.SAR_SEGMENT_SEQNUM) or 1
        concat = (sar_ref, total, seq)
    text = decode_text(data, data_coding)
    if concat is None or concat[1] <= 1:
        return UserData(text)
    ref, total, seq = concat
    return UserData(text, ref, total, seq)
