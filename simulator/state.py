"""In-memory records of what the simulated carrier received, and its counters.

Message texts are never stored unless ``keep_text`` is on; a record keeps the text length only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple


class SubmitRecord(NamedTuple):
    """One accepted submit (one recipient of a batch counts as one submit)."""

    ref: str
    #: Numeric part of the carrier id (the id is ``sim-<num>``).
    num: int
    to: str
    #: ``time.time()`` when the request was received.
    at: float
    parts: int
    text_len: int

    @property
    def carrier_id(self) -> str:
        """The carrier id as returned to the client."""
        return f"sim-{self.num}"


_Rec = tuple[str, int, str, float, int, int]


class Counters:
    """Plain integer counters reported by ``/_sim/stats``."""

    __slots__ = (
        "batches",
        "dlr_dropped",
        "dlr_failed",
        "dlr_retried",
        "dlr_sent",
        "errors_injected",
        "handler_errors",
        "hlr_lookups",
        "invalid",
        "mo_failed",
        "mo_sent",
        "rejected",
        "throttled",
        "throttled_tps",
        "timeouts_injected",
        "unauthorized",
    )

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Set every counter to zero."""
        #: Batch requests that passed validation.
        self.batches: int = 0
        #: Delivery reports dropped because ``dlr_url`` was unset when they came due.
        self.dlr_dropped: int = 0
        #: Delivery reports given up after retries / delivered / retry attempts made.
        self.dlr_failed: int = 0
        self.dlr_sent: int = 0
        self.dlr_retried: int = 0
        #: Injected 500s.
        self.errors_injected: int = 0
        #: Handler crashes answered with 500 (a simulator bug if ever non-zero).
        self.handler_errors: int = 0
        #: Number look-ups answered (``POST /v1/hlr``).
        self.hlr_lookups: int = 0
        #: Requests (or batch recipients) answered ``invalid_request``.
        self.invalid: int = 0
        #: MO parts posted / given up.
        self.mo_failed: int = 0
        self.mo_sent: int = 0
        #: Recipients permanently rejected (``unknown_subscriber``).
        self.rejected: int = 0
        #: 429 answers (all causes) and those caused by the TPS cap.
        self.throttled: int = 0
        self.throttled_tps: int = 0
        #: Requests held without an answer.
        self.timeouts_injected: int = 0
        #: 401 answers.
        self.unauthorized: int = 0

    def as_dict(self) -> dict[str, int]:
        """Return the counters as a dict."""
        return {name: getattr(self, name) for name in self.__slots__}


class SimState:
    """Submit records, duplicate accounting, per-second counts and fault/DLR counters."""

    def __init__(self) -> None:
        #: Carrier id numbers are never reused, not even across :meth:`reset`.
        self._next_num = 1
        self._num_step = 1
        self.counters = Counters()
        #: Plain tuples in :class:`SubmitRecord` field order (cheaper to build than NamedTuples).
        self.records: list[_Rec] = []
        #: Texts by record index, only filled while ``keep_text`` is on.
        self.texts: dict[int, str] = {}
        #: ref -> index of its first record.
        self.first_index: dict[str, int] = {}
        #: ref -> number of extra submits beyond the first (only refs seen more than once).
        self.dup_extra: dict[str, int] = {}
        self.duplicate_submits = 0
        #: int(unix second) -> accepted submits in that second.
        self.per_second: dict[int, int] = {}

    def reset(self) -> None:
        """Clear the records and counters (carrier ids keep increasing)."""
        self.counters.reset()
        self.records = []
        self.texts = {}
        self.first_index = {}
        self.dup_extra = {}
        self.duplicate_submits = 0
        self.per_second = {}

    def record(self, ref: str, to: str, at: float, parts: int, text_len: int) -> int:
        """Record one accepted submit; return its carrier id number."""
        num = self._next_num
        self._next_num = num + self._num_step
        records = self.records
        idx = len(records)
        records.append((ref, num, to, at, parts, text_len))
        first = self.first_index
        if ref in first:
            self.dup_extra[ref] = self.dup_extra.get(ref, 0) + 1
            self.duplicate_submits += 1
        else:
            first[ref] = idx
        sec = int(at)
        ps = self.per_second
        ps[sec] = ps.get(sec, 0) + 1
        return num

    def attach_text(self, text: str) -> None:
        """Attach the text to the record made last (only used while ``keep_text`` is on)."""
        self.texts[len(self.records) - 1] = text

    def set_id_sequence(self, start: int, step: int) -> None:
        """Hand out carrier id numbers ``start, start + step, ...`` (unique across workers)."""
        self._next_num = start
        self._num_step = step

    def lookup(self, ref: str) -> SubmitRecord | None:
        """Return the first accepted submit for ``ref`` or ``None``."""
        idx = self.first_index.get(ref)
        return None if idx is None else SubmitRecord._make(self.records[idx])

    def submit_count(self, ref: str) -> int:
        """Return how many times ``ref`` was accepted."""
        if ref not in self.first_index:
            return 0
        return 1 + self.dup_extra.get(ref, 0)

    def stats(self) -> dict[str, Any]:
        """Return the statistics document served at ``/_sim/stats``."""
        records = self.records
        out: dict[str, Any] = {
            "submits": len(records),
            "unique_refs": len(self.first_index),
            "duplicate_refs": len(self.dup_extra),
            "duplicate_submits": self.duplicate_submits,
        }
        out.update(self.counters.as_dict())
        out["per_second"] = {str(k): v for k, v in sorted(self.per_second.items())}
        out["first_at"] = records[0][3] if records else None
        out["last_at"] = records[-1][3] if records else None
        return out

    def iter_submits(self, offset: int = 0, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Yield accepted submits as dicts (``ref, id, to, at, parts, text_len`` [+ ``text``])."""
        records = self.records
        end = len(records) if limit is None else min(len(records), offset + limit)
        texts = self.texts
        for i in range(max(0, offset), end):
            ref, num, to, at, parts, text_len = records[i]
            d: dict[str, Any] = {
                "ref": ref,
                "id": f"sim-{num}",
                "to": to,
                "at": at,
                "parts": parts,
                "text_len": text_len,
            }
            text = texts.get(i)
            if text is not None:
                d["text"] = text
            yield d
