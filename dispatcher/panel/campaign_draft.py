"""A campaign built in the browser, before it is sent: recipients from a CSV upload or pasted
numbers, a text with ``{placeholders}`` from the CSV's columns, a schedule and a send window.

:func:`build_draft` reads and checks everything once: each row becomes a message (number in
E.164, its own text, encoding and parts) or a rejected row with its reason. The preview shows
the draft; sending stores exactly the draft's messages (no second reading that could differ).
Pure functions: no database, no Redis.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from dispatcher.cli.csv_upload import PHONE_COLUMNS
from dispatcher.sms import (
    EmptyMessage,
    InvalidPhoneNumber,
    TooManyParts,
    check_parts,
    normalize,
)

MAX_ROWS = 50_000  # bigger lists: `smsdispatch campaign upload` streams any size
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
MAX_TEXT = 1600
PREVIEW_ROWS = 10
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
PLACEHOLDER = re.compile(r"\{\s*([^{}\n]{1,64}?)\s*\}")
_SPLIT = re.compile(r"[\r\n,;\t]+")


class DraftError(ValueError):
    """The form cannot become a campaign; ``field`` names the form field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Recipient:
    """One message of the campaign."""

    line: int  # the row's line in the file (or the pasted list), for people
    phone: str  # E.164
    text: str
    encoding: str  # gsm7 | ucs2
    parts: int


@dataclass(frozen=True)
class Rejected:
    """A row that will not be sent, and why."""

    line: int
    phone: str  # as written
    reason: str


@dataclass
class Draft:
    """Everything the preview shows and the send stores."""

    recipients: list[Recipient] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)

    @property
    def parts(self) -> int:
        """SMS parts over every message (what carriers bill)."""
        return sum(r.parts for r in self.recipients)

    @property
    def encodings(self) -> dict[str, int]:
        """Messages per encoding."""
        out: dict[str, int] = {}
        for r in self.recipients:
            out[r.encoding] = out.get(r.encoding, 0) + 1
        return out


def check_name(name: str) -> str:
    """A campaign name: 1-64 letters, digits, spaces and ``._-``, starting with a letter or
    digit (it is also the ``Smsdispatch-Campaign`` grouping key)."""
    clean = name.strip()
    if not NAME.match(clean):
        raise DraftError(
            "name", "Name the campaign: 1-64 letters, digits, spaces or . _ - (e.g. spring-sale)."
        )
    return clean


def _rows_from_csv(data: bytes) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    text = data.decode("utf-8-sig", errors="replace")
    if "\x00" in text:
        raise DraftError(
            "file", "Not a CSV file: it contains NUL bytes (a spreadsheet? export it as CSV)."
        )
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader, [])]
    except csv.Error as exc:
        raise DraftError("file", f"Not a CSV file we can read (line 1: {exc}).") from None
    if not any(header):
        raise DraftError("file", "The CSV is empty: its first line must name the columns.")
    lowered = [h.lower() for h in header]
    phone_col = next((lowered.index(c) for c in PHONE_COLUMNS if c in lowered), None)
    if phone_col is None:
        raise DraftError(
            "file",
            "No column of phone numbers: name one "
            + ", ".join(PHONE_COLUMNS[:4])
            + f" (the columns are: {', '.join(header)}).",
        )
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        for values in reader:
            _add_row(reader.line_num, values, header, phone_col, rows)
    except csv.Error as exc:
        raise DraftError(
            "file", f"Not a CSV file we can read (line {reader.line_num}: {exc})."
        ) from None
    return header, rows


def _add_row(
    line: int,
    values: list[str],
    header: list[str],
    phone_col: int,
    rows: list[tuple[int, dict[str, str]]],
) -> None:
    if not any(v.strip() for v in values):
        return
    if len(rows) >= MAX_ROWS:
        raise DraftError("file", f"More than {MAX_ROWS:,} rows: use the CLI for larger lists.")
    row = {h: (values[i].strip() if i < len(values) else "") for i, h in enumerate(header)}
    row["\0phone"] = values[phone_col].strip() if phone_col < len(values) else ""
    rows.append((line, row))


def _rows_from_paste(text: str) -> list[tuple[int, dict[str, str]]]:
    numbers = [n.strip() for n in _SPLIT.split(text) if n.strip()]
    if len(numbers) > MAX_ROWS:
        raise DraftError("numbers", f"More than {MAX_ROWS:,} numbers: upload a CSV or use the CLI.")
    return [(i + 1, {"phone": n, "\0phone": n}) for i, n in enumerate(numbers)]


def placeholders(template: str) -> list[str]:
    """The ``{names}`` a text uses, in order of first use."""
    return list(dict.fromkeys(PLACEHOLDER.findall(template)))


def render(template: str, row: dict[str, str]) -> str:
    """The text for one row: each ``{column}`` replaced by the row's value."""
    return PLACEHOLDER.sub(lambda m: row.get(m.group(1), m.group(0)), template)


def build_draft(
    template: str,
    csv_data: bytes | None,
    pasted: str,
    region: str | None,
    max_parts: int,
) -> Draft:
    """Read the recipients (the CSV when given, else the pasted numbers) and make every row a
    message or a rejected row. :class:`DraftError` for a problem with the form itself."""
    if not template.strip():
        raise DraftError("text", "Write the text of the message.")
    if "\x00" in template:
        raise DraftError("text", "The text contains a NUL character.")
    pasted = pasted.replace("\x00", "\ufffd")  # kept readable in the rejected rows
    if len(template) > MAX_TEXT:
        raise DraftError("text", f"The text is longer than {MAX_TEXT} characters.")
    if csv_data:
        if len(csv_data) > MAX_UPLOAD_BYTES:
            raise DraftError("file", "The file is larger than 5 MB: use the CLI for it.")
        columns, rows = _rows_from_csv(csv_data)
    elif pasted.strip():
        columns, rows = ["phone"], _rows_from_paste(pasted)
    else:
        raise DraftError("numbers", "Upload a CSV file or paste phone numbers.")
    unknown = [p for p in placeholders(template) if p not in columns]
    if unknown:
        raise DraftError(
            "text",
            f"No column called {', '.join('{' + u + '}' for u in unknown)}; the columns are "
            + ", ".join("{" + c + "}" for c in columns)
            + ".",
        )
    draft = Draft(columns=columns)
    seen: set[str] = set()
    for line, row in rows:
        raw = row["\0phone"]
        try:
            phone = normalize(raw, region)
        except InvalidPhoneNumber as exc:
            draft.rejected.append(Rejected(line, raw, f"not a phone number ({exc.message})"))
            continue
        if phone in seen:
            draft.rejected.append(Rejected(line, raw, "duplicate of an earlier row"))
            continue
        text = render(template, row)
        try:
            info = check_parts(text, max_parts)
        except EmptyMessage:
            draft.rejected.append(Rejected(line, raw, "the text is empty for this row"))
            continue
        except TooManyParts as exc:
            draft.rejected.append(Rejected(line, raw, exc.message))
            continue
        seen.add(phone)
        draft.recipients.append(Recipient(line, phone, text, str(info.encoding), info.parts))
    if not draft.recipients:
        where = "file" if csv_data else "numbers"
        raise DraftError(where, "No row can be sent: " + _first_reasons(draft.rejected))
    return draft


def _first_reasons(rejected: list[Rejected]) -> str:
    return "; ".join(f"line {r.line}: {r.reason}" for r in rejected[:3]) or "no rows"


def parse_clock(raw: str, field: str) -> int | None:
    """``HH:MM`` (UTC) as minutes after midnight; ``None`` when empty."""
    raw = raw.strip()
    if not raw:
        return None
    m = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", raw)
    if not m:
        raise DraftError(field, "Use a time like 09:00 (24-hour clock, UTC).")
    return int(m.group(1)) * 60 + int(m.group(2))


def parse_schedule(raw: str, now: float) -> float | None:
    """The form's ``YYYY-MM-DDTHH:MM`` (UTC) as unix seconds; ``None``: send now."""
    raw = raw.strip()
    if not raw:
        return None
    try:
        at = datetime.strptime(raw[:16], "%Y-%m-%dT%H:%M").replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise DraftError("schedule", "Use a date and time like 2026-12-24T09:00 (UTC).") from None
    if at < now - 60:
        raise DraftError("schedule", "This time has passed: leave it empty to send now.")
    if at > now + 180 * 86400:
        raise DraftError("schedule", "At most 180 days ahead.")
    return at


def start_in_window(at: float, window: tuple[int, int] | None) -> float:
    """The first moment at or after ``at`` inside the daily window ``(from, to)`` in minutes
    after midnight UTC (``from > to``: the window spans midnight)."""
    if window is None:
        return at
    start, end = window
    moment = datetime.fromtimestamp(at, UTC)
    minute = moment.hour * 60 + moment.minute
    inside = start <= minute < end if start < end else minute >= start or minute < end
    if inside:
        return at
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    opening = day + timedelta(minutes=start)
    if opening <= moment:
        opening += timedelta(days=1)
    return opening.timestamp()
