"""Tests of sender ID validation (dispatcher.sms.sender)."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.sms import (
    GSM7_CHARS,
    InvalidSender,
    SmsRuleError,
    is_numeric_sender,
    validate_sender,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("MyShop", "MyShop"),
        ("A", "A"),
        ("ABCDEFGHIJK", "ABCDEFGHIJK"),  # 11 characters
        ("Dr. Smith", "Dr. Smith"),
        ("B&B-24", "B&B-24"),
        ("shop_pl", "shop_pl"),
        ("  Shop  ", "Shop"),
        ("\tShop 24\n", "Shop 24"),
        ("2FA", "2FA"),
        ("Shop Online", "Shop Online"),  # 11 characters with a space
        ("123", "123"),  # short code
        ("7888", "7888"),
        ("+48500100200", "+48500100200"),
        ("48500100200", "48500100200"),
        ("123456789012345", "123456789012345"),  # 15 digits
        ("+123456789012345", "+123456789012345"),
        (" +48500100200 ", "+48500100200"),
    ],
)
def test_valid_senders(raw: str, expected: str) -> None:
    assert validate_sender(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("ABCDEFGHIJKL", "too_long"),  # 12 characters
        ("Shop Online1", "too_long"),
        ("12", "too_short"),
        ("+12", "too_short"),
        ("1234567890123456", "too_long"),  # 16 digits
        ("+1234567890123456", "too_long"),
        ("Sklep Łódź", "bad_characters"),
        ("Shop!", "bad_characters"),
        ("Shop@", "bad_characters"),
        ("Café", "bad_characters"),
        ("12-34", "bad_characters"),  # no letter, not numeric
        ("+48 500", "bad_characters"),
        ("...", "bad_characters"),
        ("+Shop", "bad_characters"),
        ("Sh\top", "bad_characters"),
        ("Shop\u00a0PL", "bad_characters"),
        ("ＳＨＯＰ", "bad_characters"),  # full-width letters
    ],
)
def test_invalid_senders(raw: str, reason: str) -> None:
    with pytest.raises(InvalidSender) as excinfo:
        validate_sender(raw)
    error = excinfo.value
    assert error.reason == reason
    assert error.value == raw
    assert error.field == "sender"
    assert repr(raw) in error.message
    assert isinstance(error, SmsRuleError)
    assert isinstance(error, ValueError)


def test_non_string_sender() -> None:
    with pytest.raises(InvalidSender) as excinfo:
        validate_sender(None)  # type: ignore[arg-type]
    assert excinfo.value.reason == "not_a_string"


def test_is_numeric_sender() -> None:
    assert is_numeric_sender("+48500100200")
    assert is_numeric_sender("7888")
    assert not is_numeric_sender("2FA")


def test_error_pickles() -> None:
    copy = pickle.loads(pickle.dumps(InvalidSender("Shop!", "bad_characters")))
    assert (copy.value, copy.reason) == ("Shop!", "bad_characters")


# --- properties -----------------------------------------------------------------------------

_FAST = settings(max_examples=150, deadline=None)
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ALLOWED = _LETTERS + "0123456789 .-_&"


@st.composite
def _alphanumeric(draw: st.DrawFn) -> str:
    body = draw(st.text(alphabet=_ALLOWED, min_size=0, max_size=10))
    letter = draw(st.sampled_from(_LETTERS))
    position = draw(st.integers(min_value=0, max_value=len(body)))
    return body[:position] + letter + body[position:]


@_FAST
@given(_alphanumeric(), st.sampled_from(["", " ", "  ", "\t", "\n"]))
def test_alphanumeric_ids_accepted_and_trimmed(sender: str, padding: str) -> None:
    result = validate_sender(padding + sender + padding)
    assert result == sender.strip()
    assert 1 <= len(result) <= 11
    assert set(result) <= GSM7_CHARS  # shows the same on every handset


@_FAST
@given(st.text(alphabet="0123456789", min_size=3, max_size=15), st.booleans())
def test_numeric_senders_accepted(digits: str, plus: bool) -> None:
    sender = ("+" if plus else "") + digits
    assert validate_sender(sender) == sender
    assert is_numeric_sender(sender)


@_FAST
@given(st.text(max_size=20))
def test_result_always_follows_the_rules(raw: str) -> None:
    try:
        result = validate_sender(raw)
    except InvalidSender as error:
        assert error.reason in {"empty", "too_long", "too_short", "bad_characters"}
        return
    assert result == raw.strip()
    if is_numeric_sender(result):
        assert 3 <= len(result.lstrip("+")) <= 15
    else:
        assert 1 <= len(result) <= 11
        assert set(result) <= set(_ALLOWED)
        assert any(c in _LETTERS for c in result)
