"""SMS text encoding (GSM 03.38 7-bit or UCS-2) and segmentation into parts.

Rules (MessageFlow v2.1 / 3GPP TS 23.038 and TS 23.040):

* A text is sent as **GSM-7** when every character is in the GSM 03.38 basic character set or its
  extension table, otherwise as **UCS-2** (UTF-16 on the wire, as every handset does today).
* GSM-7 counts *septets*: a basic character is 1 septet, an extension character
  (``^ { } \\ [ ~ ] | €`` and form feed) is 2 (escape + character). A single message holds
  160 septets; a concatenated (multipart) message holds 153 per part (the user data header takes
  the rest).
* UCS-2 counts UTF-16 code units: a character outside the BMP (an emoji such as 😀) is a
  surrogate pair and counts 2. A single message holds 70 units, a multipart one 67 per part.
* Nothing is ever split: an escape + extension character pair stays in one part, and so does a
  surrogate pair. A part may therefore end one unit short of its limit, and the number of parts
  is computed by actually segmenting the text (:func:`split_parts` and :func:`count_parts` share
  the same segmentation, so they always agree).
* The escape character itself (0x1B) is not accepted as text: a message containing it is UCS-2.
* An empty message is invalid (:class:`~dispatcher.sms.errors.EmptyMessage`).

Part limit: :data:`MAX_PARTS` is 10 by default. MessageFlow's price table stops at 9 parts
(1377 GSM-7 / 603 UCS-2 characters); we accept up to 10 parts, and every check takes a
``max_parts`` argument so a deployment or account can lower (or raise) it. :func:`check_parts`
raises :class:`~dispatcher.sms.errors.TooManyParts` past the limit.

Performance (the API validates every request): the scans are C-level only. A GSM-7 candidate is
encoded to Latin-1 bytes (``"€"`` counted with ``str.count``) and checked with
``bytes.translate(None, delete)`` against precomputed byte sets; texts with Greek capitals fall
back to a precompiled regex character class. UCS-2 counting uses ``str.encode("utf-16-le")``.
Python loops run per part, never per character (except to step back over at most the extension
characters at a part boundary). Results are shared immutable :class:`SegmentInfo` instances
(timings: docs/benchmarks.md, "Measurements behind code choices").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from itertools import pairwise
from typing import Final

from dispatcher.sms.errors import EmptyMessage, InvalidMessage, TooManyParts

__all__ = [
    "GSM7_BASIC_CHARS",
    "GSM7_CHARS",
    "GSM7_EXTENSION_CHARS",
    "GSM7_MULTI_PART",
    "GSM7_SINGLE_PART",
    "MAX_PARTS",
    "UCS2_MULTI_PART",
    "UCS2_SINGLE_PART",
    "Encoding",
    "SegmentInfo",
    "check_parts",
    "count_parts",
    "detect_encoding",
    "is_gsm7",
    "split_parts",
]

MAX_PARTS: Final[int] = 10
"""Default maximum number of parts of one message (MessageFlow's price table stops at 9)."""

GSM7_SINGLE_PART: Final[int] = 160
"""Septets in a single-part GSM-7 message."""
GSM7_MULTI_PART: Final[int] = 153
"""Septets per part of a multipart GSM-7 message."""
UCS2_SINGLE_PART: Final[int] = 70
"""UTF-16 code units in a single-part UCS-2 message."""
UCS2_MULTI_PART: Final[int] = 67
"""UTF-16 code units per part of a multipart UCS-2 message."""

# GSM 03.38 basic character set in code order 0x00..0x7F, without 0x1B (escape to extension).
_BASIC: Final[str] = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "\u0394_\u03a6\u0393\u039b\u03a9\u03a0\u03a8\u03a3\u0398\u039e"  # Δ_ΦΓΛΩΠΨΣΘΞ
    "ÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# GSM 03.38 extension table (each sent as escape + character, 2 septets).
_EXTENSION: Final[str] = "\f^{}\\[~]|€"

GSM7_BASIC_CHARS: Final[frozenset[str]] = frozenset(_BASIC)
"""The 127 characters of the GSM 03.38 basic set (the escape code 0x1B excluded)."""
GSM7_EXTENSION_CHARS: Final[frozenset[str]] = frozenset(_EXTENSION)
"""The extension-table characters; each counts 2 septets."""
GSM7_CHARS: Final[frozenset[str]] = GSM7_BASIC_CHARS | GSM7_EXTENSION_CHARS
"""Every character a GSM-7 message may contain."""


def _char_class(chars: str, negate: bool = False) -> re.Pattern[str]:
    body = "".join(f"\\U{ord(c):08x}" for c in sorted(chars))
    return re.compile(f"[{'^' if negate else ''}{body}]")


_NON_GSM_RE: Final[re.Pattern[str]] = _char_class(_BASIC + _EXTENSION, negate=True)
_EXT_RE: Final[re.Pattern[str]] = _char_class(_EXTENSION)
# Fast path: most GSM-7 texts are Latin-1 plus "€"; as Latin-1 bytes, bytes.translate(None, delete)
# finds non-GSM and extension characters in C without per-character lookups.
_EURO: Final[str] = "€"
_LATIN1_NON_GSM: Final[bytes] = bytes(b for b in range(256) if chr(b) not in GSM7_CHARS)
_LATIN1_EXTENSION: Final[bytes] = bytes(ord(c) for c in _EXTENSION if ord(c) < 256)


class Encoding(StrEnum):
    """Data coding of a message: GSM 03.38 7-bit default alphabet, or UCS-2 (UTF-16)."""

    GSM7 = "gsm7"
    UCS2 = "ucs2"


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """How a text is sent.

    Attributes:
        encoding: GSM-7 or UCS-2.
        units: septets (GSM-7, extension characters count 2) or UTF-16 code units (UCS-2,
            characters outside the BMP count 2) of the whole text.
        parts: number of SMS parts.
        per_part: capacity of one part in units: 160/153 (GSM-7) or 70/67 (UCS-2),
            the single-part figure when ``parts == 1``.
        remaining: units still free in the last part (``per_part`` minus the units the last
            part holds).
    """

    encoding: Encoding
    units: int
    parts: int
    per_part: int
    remaining: int


_INFO_CACHE: dict[tuple[Encoding, int, int, int], SegmentInfo] = {}
_INFO_CACHE_MAX: Final[int] = 8192


def _segment_info(
    encoding: Encoding, units: int, parts: int, per_part: int, remaining: int
) -> SegmentInfo:
    """Return a (shared, immutable) SegmentInfo: building a frozen dataclass per call would
    cost as much as the counting itself."""
    key = (encoding, units, parts, remaining)  # per_part follows from encoding and parts
    info = _INFO_CACHE.get(key)
    if info is None:
        info = SegmentInfo(encoding, units, parts, per_part, remaining)
        if len(_INFO_CACHE) < _INFO_CACHE_MAX:
            _INFO_CACHE[key] = info
    return info


def _extension_count(text: str) -> int:
    """Return how many extension characters ``text`` has, or -1 when it is not GSM-7."""
    if text.isascii():  # O(1) in CPython
        data = text.encode("ascii")
        euros = 0
    else:
        data = text.encode("latin-1", "ignore")
        euros = text.count(_EURO)
        if len(data) + euros != len(text):  # Greek capitals, or not GSM-7 at all
            if _NON_GSM_RE.search(text) is not None:
                return -1
            return len(_EXT_RE.findall(text))
    size = len(data)
    if len(data.translate(None, _LATIN1_NON_GSM)) != size:
        return -1
    return size - len(data.translate(None, _LATIN1_EXTENSION)) + euros


def is_gsm7(text: str) -> bool:
    """Return True when every character of ``text`` is in the GSM-7 basic or extension set."""
    return _extension_count(text) >= 0


def detect_encoding(text: str) -> Encoding:
    """Return :attr:`Encoding.GSM7` when ``text`` fits the GSM-7 alphabet, else UCS-2."""
    return Encoding.GSM7 if _extension_count(text) >= 0 else Encoding.UCS2


def _extension_in(chunk: str) -> int:
    """Number of extension characters in ``chunk``, a piece of a GSM-7 text."""
    if chunk.isascii():
        data = chunk.encode("ascii")
        return len(data) - len(data.translate(None, _LATIN1_EXTENSION))
    # Only "€" and the Greek capitals are not Latin-1 in GSM-7; "ignore" drops them.
    data = chunk.encode("latin-1", "ignore")
    return len(data) - len(data.translate(None, _LATIN1_EXTENSION)) + chunk.count(_EURO)


def _gsm7_cuts(text: str) -> list[int]:
    """Cut points (character offsets) of greedy 153-septet segmentation of GSM-7 ``text``.

    Each part takes as many characters as fit in 153 septets; an extension character (2
    septets) that does not fit whole moves to the next part.
    """
    cuts: list[int] = []
    pos = 0
    total = len(text)
    while True:
        end = min(pos + GSM7_MULTI_PART, total)
        used = end - pos + _extension_in(text[pos:end])
        if end == total and used <= GSM7_MULTI_PART:
            return cuts
        while used > GSM7_MULTI_PART:  # drop characters from the end until the part fits
            end -= 1
            used -= 2 if text[end] in GSM7_EXTENSION_CHARS else 1
        cuts.append(end)
        pos = end


def _ucs2_cuts(data: bytes) -> list[int]:
    """Cut points (byte offsets) of greedy 67-unit segmentation of UTF-16-LE ``data``.

    A part never ends just after a high surrogate, so a surrogate pair stays together.
    """
    cuts: list[int] = []
    pos = 0
    total = len(data)
    step = UCS2_MULTI_PART * 2
    while total - pos > step:
        end = pos + step
        if 0xD8 <= data[end - 1] <= 0xDB:  # high byte of a little-endian high surrogate
            end -= 2
        cuts.append(end)
        pos = end
    return cuts


def count_parts(text: str) -> SegmentInfo:
    """Return the encoding, size and number of parts of ``text``.

    Raises:
        EmptyMessage: when ``text`` is empty.
    """
    if not text:
        raise EmptyMessage(text)
    extended = _extension_count(text)
    if extended >= 0:
        units = len(text) + extended
        if units <= GSM7_SINGLE_PART:
            remaining = GSM7_SINGLE_PART - units
            return _segment_info(Encoding.GSM7, units, 1, GSM7_SINGLE_PART, remaining)
        if not extended:
            parts = -(-units // GSM7_MULTI_PART)
            last = units - (parts - 1) * GSM7_MULTI_PART
        else:
            cuts = _gsm7_cuts(text)
            parts = len(cuts) + 1
            last = len(text) - cuts[-1] + _extension_in(text[cuts[-1] :])
        return _segment_info(Encoding.GSM7, units, parts, GSM7_MULTI_PART, GSM7_MULTI_PART - last)
    data = text.encode("utf-16-le")
    units = len(data) >> 1
    if units <= UCS2_SINGLE_PART:
        return _segment_info(Encoding.UCS2, units, 1, UCS2_SINGLE_PART, UCS2_SINGLE_PART - units)
    if units == len(text):  # no surrogate pairs
        parts = -(-units // UCS2_MULTI_PART)
        last = units - (parts - 1) * UCS2_MULTI_PART
    else:
        cuts = _ucs2_cuts(data)
        parts = len(cuts) + 1
        last = units - (cuts[-1] >> 1)
    return _segment_info(Encoding.UCS2, units, parts, UCS2_MULTI_PART, UCS2_MULTI_PART - last)


def split_parts(text: str) -> list[str]:
    """Split ``text`` into the parts it is sent as (consistent with :func:`count_parts`).

    ``"".join(split_parts(text)) == text`` always holds.

    Raises:
        EmptyMessage: when ``text`` is empty.
    """
    if not text:
        raise EmptyMessage(text)
    extended = _extension_count(text)
    if extended >= 0:
        if not extended:
            if len(text) <= GSM7_SINGLE_PART:
                return [text]
            step = GSM7_MULTI_PART
            return [text[i : i + step] for i in range(0, len(text), step)]
        if len(text) + extended <= GSM7_SINGLE_PART:
            return [text]
        edges = [0, *_gsm7_cuts(text), len(text)]
        return [text[a:b] for a, b in pairwise(edges)]
    data = text.encode("utf-16-le")
    units = len(data) >> 1
    if units <= UCS2_SINGLE_PART:
        return [text]
    if units == len(text):
        step = UCS2_MULTI_PART
        return [text[i : i + step] for i in range(0, len(text), step)]
    edges = [0, *_ucs2_cuts(data), len(data)]
    return [data[a:b].decode("utf-16-le") for a, b in pairwise(edges)]


def check_parts(text: str, max_parts: int = MAX_PARTS) -> SegmentInfo:
    """Validate a message text and return its :class:`SegmentInfo`.

    Args:
        text: the message.
        max_parts: the largest accepted number of parts (default :data:`MAX_PARTS`).

    Raises:
        EmptyMessage: when ``text`` is empty.
        TooManyParts: when ``text`` needs more than ``max_parts`` parts.
        InvalidMessage: with ``reason == "not_a_string"`` when ``text`` is not a ``str``.
        ValueError: when ``max_parts`` is less than 1.
    """
    if max_parts < 1:
        raise ValueError(f"max_parts must be at least 1, got {max_parts}")
    if not isinstance(text, str):
        raise InvalidMessage(text, "not_a_string", "message must be a string")
    info = count_parts(text)
    if info.parts > max_parts:
        raise TooManyParts(text, info.parts, max_parts)
    return info
