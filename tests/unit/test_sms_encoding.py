"""Tests of GSM-7 / UCS-2 detection and SMS segmentation (dispatcher.sms.encoding)."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.sms import (
    GSM7_BASIC_CHARS,
    GSM7_CHARS,
    GSM7_EXTENSION_CHARS,
    MAX_PARTS,
    EmptyMessage,
    Encoding,
    InvalidMessage,
    SegmentInfo,
    SmsRuleError,
    TooManyParts,
    check_parts,
    count_parts,
    detect_encoding,
    is_gsm7,
    split_parts,
)

EURO = "€"
EMOJI = "\U0001f600"  # 😀, outside the BMP: a surrogate pair in UTF-16


# --- a deliberately naive reference implementation (the oracle) -------------------------------


def _units(char: str, encoding: Encoding) -> int:
    if encoding is Encoding.GSM7:
        return 2 if char in GSM7_EXTENSION_CHARS else 1
    return 2 if ord(char) > 0xFFFF else 1


def _text_units(text: str, encoding: Encoding) -> int:
    return sum(_units(c, encoding) for c in text)


def _reference_parts(text: str) -> list[str]:
    encoding = Encoding.GSM7 if all(c in GSM7_CHARS for c in text) else Encoding.UCS2
    single, multi = (160, 153) if encoding is Encoding.GSM7 else (70, 67)
    if _text_units(text, encoding) <= single:
        return [text]
    parts: list[str] = []
    current: list[str] = []
    used = 0
    for char in text:
        size = _units(char, encoding)
        if used + size > multi:
            parts.append("".join(current))
            current, used = [], 0
        current.append(char)
        used += size
    parts.append("".join(current))
    return parts


# --- character sets -------------------------------------------------------------------------


def test_character_sets() -> None:
    assert len(GSM7_BASIC_CHARS) == 127  # 128 code points minus the escape
    assert frozenset("\f^{}\\[~]|€") == GSM7_EXTENSION_CHARS
    assert not GSM7_BASIC_CHARS & GSM7_EXTENSION_CHARS
    assert "\x1b" not in GSM7_CHARS
    assert set("@£$¥ΔΩßÉ¤¡§¿à\n\r") <= GSM7_CHARS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello, world! 123", Encoding.GSM7),
        ("Cena: 10€ {promo} [x] ~ | ^ \\", Encoding.GSM7),
        ("ÄÖÑÜäöñüà ΔΦΓΛΩΠΨΣΘΞ", Encoding.GSM7),
        ("Zażółć gęślą jaźń", Encoding.UCS2),
        ("back`tick", Encoding.UCS2),
        ("ç", Encoding.UCS2),  # only the capital Ç is in GSM 03.38
        ("Ç", Encoding.GSM7),
        ("\x1b", Encoding.UCS2),  # the escape code is not text
        ("hi " + EMOJI, Encoding.UCS2),
        ("", Encoding.GSM7),
    ],
)
def test_detect_encoding(text: str, expected: Encoding) -> None:
    assert detect_encoding(text) is expected
    assert is_gsm7(text) is (expected is Encoding.GSM7)


def test_encoding_is_str_enum() -> None:
    assert Encoding.GSM7 == "gsm7"
    assert Encoding.UCS2 == "ucs2"
    assert str(Encoding.UCS2) == "ucs2"


# --- boundaries -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "encoding", "units", "parts", "per_part", "remaining"),
    [
        ("a", Encoding.GSM7, 1, 1, 160, 159),
        ("a" * 160, Encoding.GSM7, 160, 1, 160, 0),
        ("a" * 161, Encoding.GSM7, 161, 2, 153, 145),
        ("a" * 306, Encoding.GSM7, 306, 2, 153, 0),
        ("a" * 307, Encoding.GSM7, 307, 3, 153, 152),
        ("a" * 1377, Encoding.GSM7, 1377, 9, 153, 0),  # MessageFlow's 9-part price limit
        ("a" * 1530, Encoding.GSM7, 1530, 10, 153, 0),
        ("a" * 1531, Encoding.GSM7, 1531, 11, 153, 152),
        (EURO, Encoding.GSM7, 2, 1, 160, 158),
        (EURO * 80, Encoding.GSM7, 160, 1, 160, 0),
        # 76 x € fill 152 septets, the 77th does not fit: part 2 is 4 x € + "a" = 9 septets
        (EURO * 80 + "a", Encoding.GSM7, 161, 2, 153, 144),
        ("a" * 159 + "{", Encoding.GSM7, 161, 2, 153, 145),
        ("ą", Encoding.UCS2, 1, 1, 70, 69),
        ("ą" * 70, Encoding.UCS2, 70, 1, 70, 0),
        ("ą" * 71, Encoding.UCS2, 71, 2, 67, 63),
        ("ą" * 134, Encoding.UCS2, 134, 2, 67, 0),
        ("ą" * 135, Encoding.UCS2, 135, 3, 67, 66),
        ("ą" * 603, Encoding.UCS2, 603, 9, 67, 0),
        (EMOJI * 35, Encoding.UCS2, 70, 1, 70, 0),
        # 33 emoji fill 66 units, the 34th does not fit: part 2 is 2 emoji + "a" = 5 units
        (EMOJI * 35 + "a", Encoding.UCS2, 71, 2, 67, 62),
    ],
)
def test_count_parts_boundaries(
    text: str, encoding: Encoding, units: int, parts: int, per_part: int, remaining: int
) -> None:
    info = count_parts(text)
    assert info == SegmentInfo(encoding, units, parts, per_part, remaining)
    assert len(split_parts(text)) == parts


def test_extension_char_not_split_across_parts() -> None:
    # 152 septets + € (2) does not fit 153: the € moves to part 2, one septet stays unused.
    text = "a" * 152 + EURO + "b" * 10
    assert split_parts(text) == ["a" * 152, EURO + "b" * 10]
    info = count_parts(text)
    assert (info.units, info.parts, info.remaining) == (164, 2, 153 - 12)


def test_extension_char_exactly_fills_part() -> None:
    text = "a" * 151 + "[" + "b" * 10
    assert split_parts(text) == ["a" * 151 + "[", "b" * 10]
    assert count_parts(text).remaining == 143


def test_lost_septets_can_add_a_part() -> None:
    # 2 x 153 = 306 septets would fit, but an extension char at each boundary wastes a septet.
    text = "a" * 152 + "|" + "a" * 150 + "~"  # 152 + 2 + 150 + 2 = 306 septets
    assert count_parts(text).units == 306
    assert split_parts(text) == ["a" * 152, "|" + "a" * 150, "~"]
    assert count_parts(text).parts == 3


def test_surrogate_pair_not_split_across_parts() -> None:
    text = "ą" * 66 + EMOJI + "b" * 10
    assert split_parts(text) == ["ą" * 66, EMOJI + "b" * 10]
    info = count_parts(text)
    assert (info.encoding, info.units, info.parts, info.remaining) == (Encoding.UCS2, 78, 2, 55)


def test_surrogate_pair_exactly_fills_part() -> None:
    text = "ą" * 65 + EMOJI + "b" * 10
    assert split_parts(text) == ["ą" * 65 + EMOJI, "b" * 10]


def test_emoji_only_message() -> None:
    text = EMOJI * 36  # 72 units
    assert split_parts(text) == [EMOJI * 33, EMOJI * 3]
    assert count_parts(text).parts == 2


@pytest.mark.parametrize(
    ("text", "units", "parts"),
    [
        ("ΔΦΓ" * 60, 180, 2),  # Greek capitals: GSM-7, not Latin-1
        ("Δ€" * 60, 180, 2),
        ("é€{" * 50, 250, 2),
        ("Ωmega " * 30 + "|" * 10, 200, 2),
    ],
)
def test_non_ascii_gsm_texts(text: str, units: int, parts: int) -> None:
    info = count_parts(text)
    assert (info.encoding, info.units, info.parts) == (Encoding.GSM7, units, parts)
    assert split_parts(text) == _reference_parts(text)


@pytest.mark.parametrize(
    "char", ["ç", "ÿ", "\u00a0", "\u00ad", "«", "´", "\x7f", "\x00", "\t", "Ā"]
)
def test_latin1_and_control_chars_outside_gsm(char: str) -> None:
    for text in (char, "€" + char, "a" * 200 + char, "Δ" + char):
        assert detect_encoding(text) is Encoding.UCS2
        assert count_parts(text).encoding is Encoding.UCS2


def test_single_part_returned_whole() -> None:
    for text in ("a" * 160, EURO * 80, "ą" * 70, EMOJI * 35):
        assert split_parts(text) == [text]


# --- validation -----------------------------------------------------------------------------


def test_empty_message_is_invalid() -> None:
    for func in (count_parts, split_parts, check_parts):
        with pytest.raises(EmptyMessage) as excinfo:
            func("")
        assert excinfo.value.reason == "empty"
        assert excinfo.value.field == "message"
        assert isinstance(excinfo.value, InvalidMessage)
        assert isinstance(excinfo.value, SmsRuleError)
        assert isinstance(excinfo.value, ValueError)


def test_check_parts_limits() -> None:
    assert MAX_PARTS == 10
    assert check_parts("a" * 1530).parts == 10
    with pytest.raises(TooManyParts) as excinfo:
        check_parts("a" * 1531)
    error = excinfo.value
    assert (error.parts, error.max_parts, error.reason) == (11, 10, "too_many_parts")
    assert error.message == "message needs 11 parts, the limit is 10" == str(error)
    assert check_parts("ą" * 603, max_parts=9).parts == 9
    with pytest.raises(TooManyParts):
        check_parts("ą" * 604, max_parts=9)
    assert check_parts("a" * 2000, max_parts=20).parts == 14
    with pytest.raises(ValueError, match="max_parts"):
        check_parts("a", max_parts=0)


def test_check_parts_wants_a_string() -> None:
    with pytest.raises(InvalidMessage) as excinfo:
        check_parts(12345)  # type: ignore[arg-type]
    assert excinfo.value.reason == "not_a_string"
    assert not isinstance(excinfo.value, (EmptyMessage, TooManyParts))


def test_errors_pickle_roundtrip() -> None:
    error = TooManyParts("x" * 2000, 14, 10)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.value, copy.parts, copy.max_parts, copy.reason, copy.message) == (
        error.value,
        14,
        10,
        "too_many_parts",
        error.message,
    )
    assert "..." in repr(copy)
    empty = pickle.loads(pickle.dumps(EmptyMessage("")))
    assert (empty.reason, empty.message) == ("empty", "message is empty")


def test_segment_info_is_frozen() -> None:
    info = count_parts("hello")
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.parts = 2  # type: ignore[misc]


# --- properties -----------------------------------------------------------------------------

_GSM_ALPHABET = sorted(GSM7_CHARS)
_gsm_text = st.text(alphabet=st.sampled_from(_GSM_ALPHABET), min_size=1, max_size=700)
_ext_heavy_text = st.text(
    alphabet=st.sampled_from(["a", "b", " ", *sorted(GSM7_EXTENSION_CHARS)]),
    min_size=150,
    max_size=700,
)
_non_gsm_char = st.characters(codec="utf-8").filter(lambda c: c not in GSM7_CHARS)
_any_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(_GSM_ALPHABET),
        st.sampled_from(["ą", "ż", "ó", "Ж", "中", EMOJI, "\U0001f44d", "\U00010348"]),
        st.characters(codec="utf-8"),
    ),
    min_size=1,
    max_size=500,
)
_texts = st.one_of(_gsm_text, _ext_heavy_text, _any_text)
_FAST = settings(max_examples=150, deadline=None)


@_FAST
@given(_texts)
def test_split_matches_count_and_reference(text: str) -> None:
    parts = split_parts(text)
    info = count_parts(text)
    assert "".join(parts) == text
    assert len(parts) == info.parts
    assert parts == _reference_parts(text)
    assert all(parts)
    assert info.encoding is detect_encoding(text)
    assert info.units == _text_units(text, info.encoding)
    assert info.remaining == info.per_part - _text_units(parts[-1], info.encoding)


@_FAST
@given(_texts)
def test_every_part_fits_and_is_greedy(text: str) -> None:
    info = count_parts(text)
    parts = split_parts(text)
    limit = info.per_part
    single, multi = {Encoding.GSM7: (160, 153), Encoding.UCS2: (70, 67)}[info.encoding]
    assert limit == (single if info.parts == 1 else multi)
    for index, part in enumerate(parts):
        used = _text_units(part, info.encoding)
        assert 0 < used <= limit
        if index + 1 < len(parts):  # the next character did not fit
            assert used + _units(parts[index + 1][0], info.encoding) > limit
    if info.encoding is Encoding.UCS2:
        for part in parts:
            part.encode("utf-16-le")  # no lone surrogate: each part encodes on its own


@_FAST
@given(_gsm_text)
def test_gsm_only_text_is_gsm7(text: str) -> None:
    assert detect_encoding(text) is Encoding.GSM7
    assert count_parts(text).encoding is Encoding.GSM7


@_FAST
@given(_gsm_text, _non_gsm_char, st.integers(min_value=0))
def test_any_non_gsm_char_makes_ucs2(text: str, char: str, position: int) -> None:
    position %= len(text) + 1
    mixed = text[:position] + char + text[position:]
    assert detect_encoding(mixed) is Encoding.UCS2
    assert count_parts(mixed).encoding is Encoding.UCS2
