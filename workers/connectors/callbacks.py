"""Reading carriers' callbacks: delivery reports and inbound messages.

Each carrier protocol owns its status map. The simulator and the generic HTTP JSON carrier use
SMPP-style ``stat`` words; the map below turns them into our final statuses. Non-final words
(ACCEPTD, ENROUTE, UNKNOWN) are recorded on the timeline but change nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from dispatcher.contract import Status
from workers.connectors.base import CallbackError, InboundPart, Report

SMPP_STAT_MAP: dict[str, str] = {
    "DELIVRD": Status.DELIVERED,
    "DELIVERED": Status.DELIVERED,
    "UNDELIV": Status.UNDELIVERED,
    "UNDELIVERABLE": Status.UNDELIVERED,
    "DELETED": Status.UNDELIVERED,  # removed by the operator's SMSC before delivery
    "EXPIRED": Status.EXPIRED,
    "REJECTD": Status.REJECTED,
    "REJECTED": Status.REJECTED,
    "ACCEPTD": "",
    "ENROUTE": "",
    "UNKNOWN": "",
}


def _str(raw: Mapping[str, Any], key: str, limit: int = 64) -> str | None:
    value = raw.get(key)
    if value is None or value == "":
        return None
    text = str(value)
    if len(text) > limit:
        raise CallbackError(f"{key} too long")
    return text


MAX_UNIX_S = 10**11  # year 5138: anything later is not a time a carrier means


def _time(raw: Mapping[str, Any], key: str) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError, OverflowError):
        raise CallbackError(f"{key} is not unix seconds") from None
    if not (math.isfinite(seconds) and 0 <= seconds < MAX_UNIX_S):
        raise CallbackError(f"{key} is not unix seconds")
    return seconds


def parse_smpp_style_report(raw: Mapping[str, Any]) -> Report:
    """``{"id", "ref", "stat", "err", "done_at"}`` (the simulator's and the generic format)."""
    if not isinstance(raw, Mapping):
        raise CallbackError("a report is a JSON object")
    stat = (_str(raw, "stat", 16) or "").upper()
    if stat not in SMPP_STAT_MAP:
        raise CallbackError(f"unknown stat {stat!r}")
    carrier_id = _str(raw, "id")
    ref = _str(raw, "ref")
    if carrier_id is None and ref is None:
        raise CallbackError("a report needs id or ref")
    err = _str(raw, "err", 32)
    return Report(
        carrier_id,
        ref,
        SMPP_STAT_MAP[stat],
        stat,
        None if err in (None, "000", "0") else err,
        _time(raw, "done_at"),
    )


def parse_simple_inbound(raw: Mapping[str, Any]) -> InboundPart:
    """``{"id", "from", "to", "text", "udh": {"ref", "total", "seq"}}`` (the simulator's MO)."""
    if not isinstance(raw, Mapping):
        raise CallbackError("an inbound message is a JSON object")
    carrier_id = _str(raw, "id")
    phone = _str(raw, "from", 20)
    number = _str(raw, "to", 20)
    text = raw.get("text")
    if carrier_id is None or phone is None or number is None or not isinstance(text, str):
        raise CallbackError("an inbound message needs id, from, to and text")
    if len(text) > 2000:
        raise CallbackError("text too long")
    udh = raw.get("udh") or {}
    if not isinstance(udh, Mapping):
        raise CallbackError("udh must be an object")
    try:
        total = int(udh.get("total", 1))
        seq = int(udh.get("seq", 1))
    except (TypeError, ValueError):
        raise CallbackError("udh total/seq must be integers") from None
    if not (1 <= seq <= total <= 255):
        raise CallbackError("udh seq/total out of range")
    ref = _str(udh, "ref", 32) if total > 1 else None
    return InboundPart(
        carrier_id, phone, number, text, ref, seq, total, _time(raw, "received_at") or time.time()
    )
