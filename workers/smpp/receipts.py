"""A deliver_sm as the project's report or inbound part.

Receipts (esm_class "SMSC delivery receipt") carry the de-facto standard text of SMPP 3.4's
appendix B, ``id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm
stat:DDDDDDD err:E text:...``, and in SMPP 3.4 also the ``receipted_message_id`` and
``message_state`` TLVs. The TLVs win when both are present: SMSCs are known to write the id
in the text in another base (decimal) than the one they answered submit_sm with (hex), and the
TLV is the id as submit_sm_resp gave it. Dates in the text carry no time zone: read as UTC.
"""

from __future__ import annotations

import calendar
import functools
import hashlib
import re
import time
from dataclasses import dataclass
from typing import Final

from workers.connectors.base import CallbackError, InboundPart, Report
from workers.connectors.callbacks import SMPP_STAT_MAP
from workers.smpp.coding import user_data
from workers.smpp.constants import ESM_INTERMEDIATE, ESM_RECEIPT, ESM_TYPE_MASK, MESSAGE_STATES, Tag
from workers.smpp.pdu import DeliverSm, tlv_int, tlv_str

# The layout nearly every SMSC writes, read in one match; anything else goes field by field.
_STANDARD: Final[re.Pattern[str]] = re.compile(
    r"id:(?P<id>\S*) sub:(?P<sub>\S*) dlvrd:(?P<dlvrd>\S*) submit date:(?P<submit_date>\d*)"
    r" done date:(?P<done_date>\d*) stat:(?P<stat>\S*) err:(?P<err>\S*)"
)
_FIELD: Final[re.Pattern[str]] = re.compile(
    r"(id|sub|dlvrd|submit date|done date|stat|err|text)\s*:\s*", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class ReceiptText:
    """The fields of a receipt's text; any may be missing (``None``)."""

    id: str | None = None
    sub: str | None = None
    dlvrd: str | None = None
    submit_date: str | None = None
    done_date: str | None = None
    stat: str | None = None
    err: str | None = None


def parse_receipt_text(text: str) -> ReceiptText:
    """Read the ``key:value`` fields of a receipt's text, in any order and case; the ``text``
    field (the start of the message) is dropped: it may hold an OTP."""
    m = _STANDARD.match(text)
    if m is not None:
        return ReceiptText(**m.groupdict())
    fields: dict[str, str] = {}
    marks = list(_FIELD.finditer(text))
    for i, m in enumerate(marks):
        key = m.group(1).lower().replace(" ", "_")
        if key == "text":
            break
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        fields.setdefault(key, text[m.end() : end].strip())
    return ReceiptText(**fields)


@functools.lru_cache(maxsize=4096)
def smpp_time(value: str | None) -> float | None:
    """Unix seconds of a receipt date ``YYMMDDhhmm[ss]`` (UTC); None when unreadable."""
    if not value or not value.isdigit() or len(value) not in (10, 12):
        return None
    try:
        parts = [int(value[i : i + 2]) for i in range(0, len(value), 2)]
        year, month, day, hour, minute = parts[:5]
        second = parts[5] if len(parts) > 5 else 0
        return float(calendar.timegm((2000 + year, month, day, hour, minute, second, 0, 0, 0)))
    except (ValueError, OverflowError):
        return None


def is_receipt(pdu: DeliverSm) -> bool:
    """Whether the deliver_sm is a delivery receipt (or an intermediate notification)."""
    kind = pdu.esm_class & ESM_TYPE_MASK
    return kind in (ESM_RECEIPT, ESM_INTERMEDIATE) or Tag.RECEIPTED_MESSAGE_ID in pdu.tlvs


def report_from(pdu: DeliverSm) -> Report:
    """The report of a receipt deliver_sm; :class:`CallbackError` when it names no message or
    no known state."""
    text = parse_receipt_text(pdu.short_message.decode("latin-1"))
    message_id = tlv_str(pdu.tlvs, Tag.RECEIPTED_MESSAGE_ID) or text.id
    if not message_id:
        raise CallbackError("receipt names no message id")
    if len(message_id) > 64:
        raise CallbackError("receipt message id too long")
    state = tlv_int(pdu.tlvs, Tag.MESSAGE_STATE)
    stat = MESSAGE_STATES.get(state) if state is not None else None
    stat = (stat or text.stat or "").upper()[:16]
    if stat not in SMPP_STAT_MAP:
        raise CallbackError(f"unknown stat {stat!r}")
    err = text.err
    network = pdu.tlvs.get(Tag.NETWORK_ERROR_CODE)
    if (not err or err.strip("0") == "") and network and len(network) == 3:
        err = f"{network[0]}:{int.from_bytes(network[1:], 'big')}"  # type : code
    return Report(
        message_id,
        None,
        SMPP_STAT_MAP[stat],
        stat,
        None if not err or err.strip("0") == "" else err[:32],
        smpp_time(text.done_date),
    )


def inbound_from(pdu: DeliverSm, received_at: float | None = None) -> InboundPart:
    """The inbound part of a mobile-originated deliver_sm.

    A deliver_sm carries no message id of its own: the id is a digest of what the SMSC sent
    (addresses, coding, user data, TLVs), so a deliver_sm the SMSC sends again (ours was not
    answered in time) is the same inbound message and is stored once.
    """
    try:
        data = user_data(pdu.short_message, pdu.esm_class, pdu.data_coding, pdu.tlvs)
    except ValueError as exc:
        raise CallbackError(f"user data: {exc}") from None
    digest = hashlib.sha256()
    for piece in (pdu.source_addr, pdu.destination_addr, str(pdu.data_coding), str(pdu.esm_class)):
        digest.update(piece.encode("latin-1") + b"\0")
    digest.update(pdu.short_message)
    for tag in sorted(pdu.tlvs):
        digest.update(tag.to_bytes(2, "big") + pdu.tlvs[tag])
    phone = ("+" + pdu.source_addr) if pdu.source_addr_ton == 1 else pdu.source_addr
    if not pdu.source_addr or not pdu.destination_addr:
        raise CallbackError("an inbound message needs source and destination addresses")
    number = ("+" + pdu.destination_addr) if pdu.dest_addr_ton == 1 else pdu.destination_addr
    ref = None if data.ref is None else f"{data.ref}"
    if not 1 <= data.seq <= data.total:
        raise CallbackError("concatenation seq/total out of range")
    return InboundPart(
        "mo-" + digest.hexdigest()[:32],
        phone,
        number,
        data.text,
        ref,
        data.seq,
        data.total,
        received_at if received_at is not None else time.time(),
    )
