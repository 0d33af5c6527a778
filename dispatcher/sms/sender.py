"""Sender ID (originator) rules.

:func:`validate_sender` accepts two kinds of sender, after trimming surrounding whitespace:

* **Alphanumeric** sender ID: 1-11 characters, each an ASCII letter (``A-Z``, ``a-z``), a digit,
  a space or one of ``. - _ &`` (all of them in the GSM-7 basic set, so every handset shows them
  the same), with at least one letter. Examples: ``"MyShop"``, ``"Dr. Smith"``, ``"B&B-24"``.
  The 11-character limit is the GSM TP-OA limit for alphanumeric originators.
* **Numeric** sender: an optional leading ``+`` then 3-15 digits; a short code (``"7888"``) or a
  long number (``"+48500100200"``, E.164 has at most 15 digits).

A value of digits only is always numeric (so ``"12"`` is too short, not an alphanumeric ID).
Anything else raises :class:`~dispatcher.sms.errors.InvalidSender` with ``reason``:

* ``not_a_string`` - not a ``str``;
* ``empty`` - nothing left after trimming;
* ``too_short`` - numeric sender with fewer than 3 digits;
* ``too_long`` - alphanumeric sender over 11 characters, or numeric sender over 15 digits;
* ``bad_characters`` - a character outside the rules above, or no letter in a non-numeric ID.

Whether the account may use a given sender (registration) is checked elsewhere.
"""

from __future__ import annotations

import re
from typing import Final

from dispatcher.sms.errors import InvalidSender

__all__ = [
    "ALPHANUMERIC_SENDER_MAX",
    "NUMERIC_SENDER_MAX",
    "NUMERIC_SENDER_MIN",
    "is_numeric_sender",
    "validate_sender",
]

ALPHANUMERIC_SENDER_MAX: Final[int] = 11
"""Maximum length of an alphanumeric sender ID."""
NUMERIC_SENDER_MIN: Final[int] = 3
"""Minimum number of digits of a numeric sender (short code)."""
NUMERIC_SENDER_MAX: Final[int] = 15
"""Maximum number of digits of a numeric sender (E.164 maximum)."""

_NUMERIC_RE: Final[re.Pattern[str]] = re.compile(r"\+?([0-9]+)")
_ALNUM_CHARS_RE: Final[re.Pattern[str]] = re.compile(r"[A-Za-z0-9 .\-_&]+")
_LETTER_RE: Final[re.Pattern[str]] = re.compile(r"[A-Za-z]")


def is_numeric_sender(sender: str) -> bool:
    """Return True when a (validated) sender is numeric: optional ``+`` and digits only."""
    return _NUMERIC_RE.fullmatch(sender) is not None


def validate_sender(sender: str) -> str:
    """Validate a sender ID and return it with surrounding whitespace removed.

    Rules (see the module docstring): alphanumeric - 1-11 characters from ASCII letters,
    digits, space and ``.-_&``, at least one letter; numeric - optional ``+`` then 3-15 digits.

    Raises:
        InvalidSender: with ``reason`` ``not_a_string``, ``empty``, ``too_short``, ``too_long``
            or ``bad_characters``.
    """
    if not isinstance(sender, str):
        raise InvalidSender(sender, "not_a_string")
    value = sender.strip()
    if not value:
        raise InvalidSender(sender, "empty")
    numeric = _NUMERIC_RE.fullmatch(value)
    if numeric is not None:
        digits = len(numeric.group(1))
        if digits < NUMERIC_SENDER_MIN:
            raise InvalidSender(sender, "too_short")
        if digits > NUMERIC_SENDER_MAX:
            raise InvalidSender(sender, "too_long")
        return value
    if _ALNUM_CHARS_RE.fullmatch(value) is None or _LETTER_RE.search(value) is None:
        raise InvalidSender(sender, "bad_characters")
    if len(value) > ALPHANUMERIC_SENDER_MAX:
        raise InvalidSender(sender, "too_long")
    return value
