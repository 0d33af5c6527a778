"""``smsdispatch campaign upload``: a CSV of any size sent through the REST API.

The file is streamed (never loaded whole): rows are read into batches of at most 10,000
recipients, one request per batch and text. Every request carries an ``Idempotency-Key``
derived from the campaign name and the request's content, so a retry, or a re-run of the same
file after a crash, returns the first answer instead of sending again. Rows refused locally
(no number) or by the API (invalid number, duplicate, opted out) are written to a CSV with their
row number, number and reason; progress with rate and ETA goes to stderr (a bar on a terminal,
a plain line every few seconds otherwise: :func:`dispatcher.cli.output.progress`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any

from smsdispatch_client import RecipientError, SendResult, SmsApiError, SmsClient

from dispatcher.cli.output import Progress
from dispatcher.cli.output import progress as progress_to

PHONE_COLUMNS = ("phone", "phonenumber", "phone_number", "number", "msisdn", "to", "recipient")
TEXT_COLUMNS = ("message", "text", "body")
SOURCE_INDEX = re.compile(r"phoneNumbers\[(\d+)\]")


@dataclass
class UploadReport:
    """Counts of one upload."""

    rows: int = 0
    accepted: int = 0
    rejected: int = 0
    requests: int = 0
    duplicate_requests: int = 0
    seconds: float = 0.0
    rejected_file: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The summary printed at the end."""
        return {
            "rows": self.rows,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "requests": self.requests,
            "replayedRequests": self.duplicate_requests,
            "seconds": round(self.seconds, 2),
            "rejectedFile": self.rejected_file,
        }


@dataclass(frozen=True)
class Row:
    """One data row: its line number in the file, the number and the text."""

    line: int
    phone: str
    text: str


def _counting_lines(raw: IO[bytes], counter: list[int]) -> Iterator[str]:
    for line in raw:
        counter[0] += len(line)
        yield line.decode("utf-8-sig" if counter[0] == len(line) else "utf-8", errors="replace")


def read_rows(
    raw: IO[bytes], template: str | None, counter: list[int], reject: Callable[[Row, str], None]
) -> Iterator[Row]:
    """Rows with a number and a text; the others go to ``reject``. ``counter[0]``: bytes read."""
    reader = csv.reader(_counting_lines(raw, counter))
    header = [h.strip() for h in next(reader, [])]
    lowered = [h.lower() for h in header]
    phone_col = next((lowered.index(c) for c in PHONE_COLUMNS if c in lowered), 0)
    text_col = next((lowered.index(c) for c in TEXT_COLUMNS if c in lowered), None)
    if template is None and text_col is None:
        raise ValueError("the CSV has no message column: pass --text TEMPLATE")
    for values in reader:
        n = reader.line_num  # the file's line (a quoted newline makes a record longer)
        if not any(v.strip() for v in values):
            continue
        record = dict(zip(header, values, strict=False))
        phone = values[phone_col].strip() if phone_col < len(values) else ""
        if template is not None:
            try:
                text = template.format_map(record)
            except (KeyError, IndexError, ValueError) as exc:
                reject(Row(n, phone, ""), f"template: missing column {exc}")
                continue
        else:
            assert text_col is not None
            text = values[text_col] if text_col < len(values) else ""
        row = Row(n, phone, text)
        if not phone:
            reject(row, "missing_phone: the row has no phone number")
        elif not text.strip():
            reject(row, "empty_message: the row has no text")
        else:
            yield row


class Uploader:
    """Sends the rows of one campaign in batches; see the module docstring."""

    def __init__(
        self,
        client: SmsClient,
        name: str,
        sender: str,
        rejected_out: IO[str],
        batch: int = 10_000,
        progress: Progress | None = None,
        concurrency: int = 4,
    ) -> None:
        self.client = client
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="upload")
        self.name = name
        self.sender = sender
        self.batch = batch
        self.progress = progress
        self.report = UploadReport()
        self._rejected = csv.writer(rejected_out)
        self._rejected.writerow(["row", "phone", "code", "reason"])

    def reject(self, row: Row, reason: str) -> None:
        """Record a refused row."""
        code, _, words = reason.partition(": ")
        self._rejected.writerow([row.line, row.phone, code, words or code])
        self.report.rejected += 1

    def _reject_read(self, row: Row, reason: str) -> None:
        self.report.rows += 1
        self.reject(row, reason)

    def upload(self, raw: IO[bytes], size: int, template: str | None) -> UploadReport:
        """Stream ``raw`` (``size`` bytes) to the API."""
        started = time.monotonic()
        counter = [0]
        pending: list[Row] = []
        last_progress = 0.0
        try:
            for row in read_rows(raw, template, counter, self._reject_read):
                pending.append(row)
                self.report.rows += 1
                if len(pending) >= self.batch:
                    self._flush(pending)
                    pending = []
                now = time.monotonic()
                if now - last_progress >= 0.2:
                    self._progress(counter[0])
                    last_progress = now
            if pending:
                self._flush(pending)
        finally:
            self._pool.shutdown()
        self.report.seconds = time.monotonic() - started
        self._progress(size)
        return self.report

    def _flush(self, rows: list[Row]) -> None:
        by_text: dict[str, list[Row]] = {}
        for row in rows:
            by_text.setdefault(row.text, []).append(row)
        groups = list(by_text.items())
        # Personalised texts make one request per distinct text: a few run concurrently.
        outcomes = self._pool.map(lambda g: self._call(*g), groups)
        for (_text, group), outcome in zip(groups, outcomes, strict=True):
            self._record(group, outcome)

    def _call(self, text: str, rows: list[Row]) -> SendResult | SmsApiError:
        phones = [r.phone for r in rows]
        # The key depends only on what is sent: a re-run of the same file replays, never resends.
        digest = hashlib.sha256(
            json.dumps([self.name, self.sender, text, phones]).encode()
        ).hexdigest()
        try:
            return self.client.send_sms(
                phones,
                text,
                sender=self.sender,
                idempotency_key=f"csv-{digest[:48]}",
                campaign=self.name,
            )
        except SmsApiError as exc:
            return exc

    def _record(self, rows: list[Row], outcome: SendResult | SmsApiError) -> None:
        self.report.requests += 1
        if isinstance(outcome, SmsApiError):
            if outcome.status in (401, 403) or outcome.status >= 500:
                raise outcome  # nothing row-specific: stop; a re-run resumes safely
            self._reject_from(rows, outcome.errors, f"{outcome.code}: {outcome.message}")
            return
        self.report.accepted += len(outcome.messages)
        self.report.duplicate_requests += int(outcome.duplicate)
        self._reject_from(rows, outcome.errors, None)

    def _reject_from(
        self, rows: list[Row], errors: list[RecipientError], whole: str | None
    ) -> None:
        by_phone: dict[str, list[Row]] = {}
        for r in rows:
            by_phone.setdefault(r.phone, []).append(r)
        named: set[int] = set()
        for err in errors:
            if err.code == "no_valid_recipients":
                continue
            match = SOURCE_INDEX.fullmatch(err.source or "")
            row = rows[int(match.group(1))] if match and int(match.group(1)) < len(rows) else None
            if row is None:
                candidates = [r for r in by_phone.get(str(err.value), []) if r.line not in named]
                if err.code == "duplicate_phone_number":
                    candidates = candidates[1:]
                row = candidates[0] if candidates else None
            if row is not None and row.line not in named:
                named.add(row.line)
                self.reject(row, f"{err.code}: {err.message}")
        if whole is not None:  # the request was refused as a whole: every other row with it
            for r in rows:
                if r.line not in named:
                    self.reject(r, whole)

    def _progress(self, done: int) -> None:
        if self.progress is not None:
            self.progress.update(
                done,
                rows=self.report.rows,
                accepted=self.report.accepted,
                rejected=self.report.rejected,
            )


def upload_file(
    client: SmsClient,
    path: str,
    name: str,
    sender: str,
    template: str | None,
    rejected_path: str,
    batch: int = 10_000,
    progress: IO[str] | None = sys.stderr,
) -> UploadReport:
    """Upload ``path``; refused rows go to ``rejected_path``."""
    import os

    size = os.path.getsize(path)
    with (
        open(path, "rb") as raw,
        open(rejected_path, "w", encoding="utf-8", newline="") as rejected,
    ):
        if progress is None:
            report = Uploader(client, name, sender, rejected, batch).upload(raw, size, template)
        else:
            with progress_to(size, "upload", stream=progress, rate_of="rows") as reporter:
                uploader = Uploader(client, name, sender, rejected, batch, reporter)
                report = uploader.upload(raw, size, template)
    report.rejected_file = rejected_path
    return report
