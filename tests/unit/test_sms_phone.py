"""Tests of phone number normalisation and helpers (dispatcher.sms.phone)."""

from __future__ import annotations

import pickle

import phonenumbers
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dispatcher.sms import InvalidPhoneNumber, SmsRuleError, country_code, normalize, region
from dispatcher.sms.phone import _parse_international


@pytest.mark.parametrize(
    "raw",
    [
        "+48111222333",
        "+48 111 222 333",
        "0048 111 222 333",
        "0048111222333",
        "(+48) 111-222-333",
        "+48.111.222.333",
        "  +48 111 222 333  ",
        "+48\u00a0111\u00a0222\u00a0333",
        "+48/111/222/333",
    ],
)
def test_international_formats(raw: str) -> None:
    assert normalize(raw) == "+48111222333"


@pytest.mark.parametrize("raw", ["111 222 333", "111-222-333", "111222333", "+48 111 222 333"])
def test_national_format_with_default_region(raw: str) -> None:
    assert normalize(raw, default_region="PL") == "+48111222333"
    assert normalize(raw, default_region="pl") == "+48111222333"


@pytest.mark.parametrize(
    ("raw", "region_code", "expected"),
    [
        ("+48500100200", None, "+48500100200"),
        ("+44 (0)20 7946 0958", None, "+442079460958"),  # trunk prefix dropped
        ("020 7946 0958", "GB", "+442079460958"),
        ("0151 23456789", "DE", "+4915123456789"),
        ("+1 (202) 555-0123", None, "+12025550123"),
        ("0011 48 111 222 333", "AU", "+48111222333"),  # AU's own international prefix
        ("0048 111 222 333", "US", "+48111222333"),
        ("+39 06 1234 5678", None, "+390612345678"),  # Italian leading zero kept
        ("+800 1234 5678", None, "+80012345678"),  # non-geographic
    ],
)
def test_other_countries(raw: str, region_code: str | None, expected: str) -> None:
    assert normalize(raw, region_code) == expected


@pytest.mark.parametrize(
    ("raw", "region_code", "reason"),
    [
        ("", None, "not_a_number"),
        ("+", None, "not_a_number"),
        ("abc", None, "not_a_number"),
        ("+48 CALL ME", None, "not_a_number"),
        ("+1 800 FLOWERS", None, "not_a_number"),
        ("++48111222333", None, "not_a_number"),
        ("48+111222333", None, "not_a_number"),
        ("+48 111 222 333 ext. 5", None, "not_a_number"),
        ("+48１１１２２２３３３", None, "not_a_number"),  # non-ASCII digits
        ("111 222 333", None, "no_country"),
        ("111 222 333", "XX", "no_country"),
        ("+999 123 456 789", None, "no_country"),
        ("+0 123 456 789", None, "no_country"),
        ("+4", None, "too_short"),
        ("+4811122233", None, "too_short"),
        ("+48 1", None, "too_short"),
        ("+481112223334", None, "too_long"),
        ("+" + "4" * 40, None, "too_long"),
        ("1" * 80, "PL", "too_long"),
        ("+48000000000", None, "invalid"),  # right length, not the Polish numbering plan
        ("+48011122233", None, "invalid"),
    ],
)
def test_rejections(raw: str, region_code: str | None, reason: str) -> None:
    with pytest.raises(InvalidPhoneNumber) as excinfo:
        normalize(raw, region_code)
    error = excinfo.value
    assert error.reason == reason
    assert error.value == raw
    assert error.field == "phoneNumbers"
    assert raw in error.message or len(raw) > 30
    assert isinstance(error, SmsRuleError)
    assert isinstance(error, ValueError)


def test_non_string_rejected() -> None:
    with pytest.raises(InvalidPhoneNumber) as excinfo:
        normalize(48111222333)  # type: ignore[arg-type]
    assert excinfo.value.reason == "not_a_number"


def test_vendor_example_accepted_by_policy() -> None:
    """+48111222333 is not in an allocated range, yet the API must accept it."""
    number = phonenumbers.parse("+48111222333")
    assert not phonenumbers.is_valid_number(number)  # why the lenient policy exists
    assert normalize("+48111222333") == "+48111222333"
    assert phonenumbers.is_valid_number(phonenumbers.parse("+48500100200"))


def test_strict_mode() -> None:
    assert normalize("+48500100200", strict=True) == "+48500100200"
    with pytest.raises(InvalidPhoneNumber) as excinfo:
        normalize("+48111222333", strict=True)
    assert excinfo.value.reason == "invalid"
    with pytest.raises(InvalidPhoneNumber) as excinfo:
        normalize("+4811122233", strict=True)
    assert excinfo.value.reason == "too_short"


def test_error_pickles() -> None:
    error = InvalidPhoneNumber("+4", "too_short")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.value, copy.reason, copy.message) == ("+4", "too_short", error.message)


@pytest.mark.parametrize(
    ("e164", "code", "region_code"),
    [
        ("+48111222333", 48, "PL"),
        ("+48500100200", 48, "PL"),
        ("+12025550123", 1, "US"),
        ("+14165550123", 1, "CA"),
        ("+442079460958", 44, "GB"),
        ("+4915123456789", 49, "DE"),
        ("+390612345678", 39, "IT"),
        ("+79123456789", 7, "RU"),
        ("+77012345678", 7, "KZ"),
        ("+80012345678", 800, None),
        ("+15555555555", 1, None),  # accepted by policy, but matches no NANP region
    ],
)
def test_country_code_and_region(e164: str, code: int, region_code: str | None) -> None:
    assert normalize(e164) == e164
    assert country_code(e164) == code
    assert region(e164) == region_code


@pytest.mark.parametrize(
    ("value", "reason"),
    [("48111222333", "not_a_number"), ("+48 111", "not_a_number"), ("+999123", "no_country")],
)
def test_helpers_want_e164(value: str, reason: str) -> None:
    for helper in (country_code, region):
        with pytest.raises(InvalidPhoneNumber) as excinfo:
            helper(value)
        assert excinfo.value.reason == reason


# --- properties -----------------------------------------------------------------------------

_FAST = settings(max_examples=150, deadline=None)
_COUNTRY_CODES = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
_raw_international = st.builds(
    lambda cc, rest: f"+{cc}{rest}",
    st.sampled_from(_COUNTRY_CODES),
    st.text(alphabet="0123456789", min_size=0, max_size=14),
)
# Valid numbers: phonenumbers' own example numbers of many regions and types.
_EXAMPLES = sorted(
    {
        phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
        for region_code in sorted(phonenumbers.SUPPORTED_REGIONS)
        for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE)
        if (example := phonenumbers.example_number_for_type(region_code, kind)) is not None
    }
)
_accepted = st.one_of(
    st.sampled_from([*_EXAMPLES, "+48111222333", "+48500100200"]),
    _raw_international.filter(lambda raw: _accepts(raw)),
)


def _accepts(raw: str) -> bool:
    try:
        normalize(raw)
    except InvalidPhoneNumber:
        return False
    return True


@_FAST
@given(st.one_of(_raw_international, st.text(alphabet="+0123456789 ()-.", max_size=20)))
def test_normalize_is_idempotent(raw: str) -> None:
    try:
        once = normalize(raw)
    except InvalidPhoneNumber as error:
        assert error.reason in {"not_a_number", "invalid", "too_short", "too_long", "no_country"}
        return
    assert once.startswith("+")
    assert once[1:].isdigit()
    assert len(once) <= 16
    assert normalize(once) == once
    assert normalize(once, strict=False) == once


@_FAST
@given(_raw_international)
def test_fast_path_builds_what_parse_builds(raw: str) -> None:
    try:
        expected = phonenumbers.parse(raw)
    except phonenumbers.NumberParseException:
        expected = None
    try:
        ours = _parse_international(raw[1:], raw)
    except InvalidPhoneNumber:
        ours = None
    assume(expected is not None and ours is not None)
    assert ours == expected


@st.composite
def _formatted(draw: st.DrawFn, e164: str) -> str:
    """A formatting variant of ``e164``: separators, 00 prefix, parentheses around the code."""
    cc = str(country_code(e164))
    national = e164[1 + len(cc) :]
    separators = st.sampled_from(["", " ", "-", ".", "  ", " - ", "/"])
    pieces: list[str] = []
    position = 0
    while position < len(national):
        size = draw(st.integers(min_value=1, max_value=4))
        pieces.append(national[position : position + size])
        position += size
    body = "".join(piece + draw(separators) for piece in pieces).rstrip(" -./")
    prefix = draw(st.sampled_from([f"+{cc}", f"00{cc}", f"(+{cc})", f"+{cc} ", f"00 {cc} "]))
    padding = draw(st.sampled_from(["", " ", "\t", "\u00a0"]))
    return f"{padding}{prefix}{draw(separators)}{body}{padding}"


@_FAST
@given(st.data())
def test_formatting_variants_normalise_equal(data: st.DataObject) -> None:
    e164 = normalize(data.draw(_accepted))
    variant = data.draw(_formatted(e164))
    assert normalize(variant) == e164


@_FAST
@given(st.sampled_from(_EXAMPLES))
def test_national_format_with_own_region(e164: str) -> None:
    number = phonenumbers.parse(e164)
    region_code = phonenumbers.region_code_for_number(number)
    assume(region_code is not None and region_code != "001")
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    assume(all(c in "0123456789 ()-./" for c in national))
    assert normalize(national, default_region=region_code) == e164
    assert region(e164) == region_code
