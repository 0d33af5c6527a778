"""Plain words for what the log records: statuses, timeline events, carrier report codes,
and the masking of one-time codes for the support role."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

STATUS_WORDS = {
    "scheduled": "Waiting for its scheduled time.",
    "queued": "Accepted and waiting to be sent.",
    "retrying": "A try failed or the carrier was busy; it will be tried again.",
    "sending": "Being handed to the carrier right now.",
    "sent": "The carrier accepted it; no report from the phone yet.",
    "delivered": "Delivered to the phone.",
    "undelivered": "The carrier could not deliver it to the phone.",
    "expired": "Not delivered within its validity period.",
    "rejected": "Refused for good (by the carrier or by us); it will not be retried.",
    "failed": "Could not be sent: every retry failed.",
    "paused": "Its campaign is paused: it waits until the campaign is resumed.",
    "cancelled": "Cancelled before it was sent; it will not be sent.",
}
# Status badge colours: one class per outcome family.
STATUS_TONE = {
    "delivered": "ok",
    "sent": "info",
    "undelivered": "bad",
    "expired": "bad",
    "rejected": "bad",
    "failed": "bad",
    "retrying": "warn",
    "paused": "warn",
}
# SMPP ``stat`` values in delivery reports.
REPORT_STAT_WORDS = {
    "DELIVRD": "Delivered to the handset",
    "UNDELIV": "Undeliverable: the network could not reach the phone",
    "EXPIRED": "Expired: the phone stayed unreachable for the whole validity period",
    "DELETED": "Deleted by the carrier before delivery",
    "REJECTD": "Rejected by the network",
    "ACCEPTD": "Accepted by the network, waiting for the phone",
    "ENROUTE": "On its way to the phone",
    "UNKNOWN": "The carrier does not know the state",
}
# ``err`` codes carriers send with the report (GSM MAP causes in SMPP receipts).
REPORT_ERROR_WORDS = {
    "000": "no error",
    "001": "unknown subscriber: the number is not in service",
    "002": "validity period passed before the phone was reachable",
    "003": "refused by the network",
    "004": "deleted by the operator",
    "005": "unidentified subscriber",
    "006": "phone switched off or out of coverage",
    "009": "illegal subscriber",
    "011": "service not provisioned for this number",
    "013": "calls barred for this number",
    "027": "phone switched off or out of coverage",
    "031": "subscriber busy",
    "032": "phone memory full or not able to receive SMS",
    "034": "network system failure",
}
EVENT_WORDS = {
    "accepted": "Accepted by the API",
    "scheduled": "Scheduled",
    "queued": "Queued for sending",
    "attempt_failed": "Sending attempt failed",
    "not_sent": "Not sent",
    "deferred": "Deferred: the carrier connection was at its rate limit",
    "reconciled": "Checked with the carrier after a worker stopped",
    "validity_end_unverified": "Validity ended; the last attempt is being checked with the carrier",
    "sent": "Accepted by the carrier",
    "report": "Delivery report",
    "report_ignored": "Late delivery report (kept, changes nothing)",
    "report_timeout": "No delivery report arrived in time",
    "final": "Final status",
}
# What a one-time code looks like, however it is written: 4-8 digits (any script's), alone or
# in groups split by a space, no-break space, dot or dash ("551 234", "551-234", "55.12.34");
# or 4-12 letters and digits with at least two digits ("A5B1C2", "7K-9QX").
_DIGIT_GROUPS = re.compile(r"(?<!\w)\d+(?:[ \u00a0.\-\u2013]\d+)*(?!\w)")
_MIXED = re.compile(r"(?<!\w)[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*(?!\w)")


def _digit_code(m: re.Match[str]) -> str:
    text = m.group()
    digits = sum(c.isdigit() for c in text)
    return _hide(text) if 4 <= digits <= 8 else text


def _mixed_code(m: re.Match[str]) -> str:
    text = m.group()
    digits = sum(c.isdigit() for c in text)
    letters = sum(c.isalpha() for c in text)
    return _hide(text) if digits >= 2 and letters and 4 <= digits + letters <= 12 else text


def _hide(text: str) -> str:
    return "".join("•" if c.isalnum() else c for c in text)


def status_words(status: str) -> str:
    """What a status means for the person waiting for the SMS."""
    return STATUS_WORDS.get(status, status)


def report_words(stat: str | None, err: str | None) -> str:
    """A delivery report in words, e.g. ``Undeliverable: … (001: unknown subscriber …)``."""
    if not stat:
        return "No delivery report yet"
    text = REPORT_STAT_WORDS.get(stat.upper(), f"Carrier status {stat}")
    if err and err != "000":
        text += f" (error {err}: {REPORT_ERROR_WORDS.get(err, 'carrier-specific code')})"
    return text


def event_words(kind: str) -> str:
    """A timeline event's title."""
    return EVENT_WORDS.get(kind, kind.replace("_", " ").capitalize())


def when(ts: float | None) -> str:
    """Unix seconds as ``2026-11-26 16:45:12.345 UTC`` (empty for none)."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def iso(ts: float | None) -> str:
    """Unix seconds as ISO 8601 for ``<time datetime>``."""
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def ms(value: Any) -> str:
    """A latency for display."""
    return "" if value is None else f"{float(value):.0f} ms"


@lru_cache(maxsize=8)
def _keywords(pattern: str) -> re.Pattern[str] | None:
    return re.compile(pattern, re.IGNORECASE) if pattern else None


def mask_codes(body: str, keywords: str) -> tuple[str, bool]:
    """``body`` with anything shaped like a one-time code masked (4-8 digits, grouped or not,
    or letters mixed with digits) when it looks like a code message.

    A message "looks like a code" when it matches ``keywords`` (a case-insensitive regex, the
    ``SMSDISPATCH_PANEL_MASK_KEYWORDS`` setting). Returns the text and whether anything was
    masked.
    """
    pattern = _keywords(keywords)
    if pattern is None or not pattern.search(body):
        return body, False
    masked = _MIXED.sub(_mixed_code, _DIGIT_GROUPS.sub(_digit_code, body))
    return masked, masked != body
