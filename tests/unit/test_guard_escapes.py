"""The body guard refuses NUL and lone surrogates, and only them: an escaped backslash
followed by the text ``u0000`` or ``ud800`` is ordinary text (docs/security.md)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.api.guard import json_problem


def storable(text: str) -> bool:
    """The oracle: no NUL, and every surrogate code point paired (high, then low)."""
    i = 0
    while i < len(text):
        c = ord(text[i])
        if c == 0:
            return False
        if 0xD800 <= c <= 0xDBFF:
            if i + 1 < len(text) and 0xDC00 <= ord(text[i + 1]) <= 0xDFFF:
                i += 2
                continue
            return False
        if 0xDC00 <= c <= 0xDFFF:
            return False
        i += 1
    return True


def body(text: str) -> bytes:
    return json.dumps({"message": text}).encode()  # ensure_ascii: every escape form appears


def test_escaped_backslashes_before_u0000_and_ud800_are_text() -> None:
    for text in ["C:\\u0000", "\\ud800", "a\\\\ud800b", "\\udc00", "\\\\u0000", "\\" * 7 + "u0000"]:
        assert json_problem(body(text)) is None, text
    for text in ["\x00", "\\\x00", "\ud800", "\\\ud800", "x\udc00", "\ud800\ud800\udc00"]:
        assert json_problem(body(text)) is not None, text
    assert json_problem(body("\ud83d\ude00 \U0001f600")) is None  # pairs are characters
    problem = json_problem(b'{"m": "\\\\\\ud800"}')  # an escaped backslash, then \ud800
    assert problem is not None and "\\ud800 is half of a UTF-16 surrogate pair" in problem.message


# Pieces that make every escape form: backslash runs, escape-like text, the real characters.
PIECES = ["\\", "\\\\", "u0000", "ud800", "uDBFF", "udc00", "\x00", "\ud800", "\udfff"]
ALPHABET = st.sampled_from([*PIECES, "\ud83d\ude00", "x", "\u00e9"])


@settings(max_examples=1000, derandomize=True, database=None)
@given(st.lists(ALPHABET | st.characters(), max_size=16).map("".join))
def test_property_refused_exactly_when_not_storable(text: str) -> None:
    assert (json_problem(body(text)) is None) == storable(text), repr(text)
