"""Exceptions raised by the SMS text and address rules.

Every rule violation is a :class:`SmsRuleError`, itself a :class:`ValueError`, so callers can
catch one type. Each error carries:

* ``field`` - the MessageFlow request field the rule belongs to (``"message"``,
  ``"phoneNumbers"``, ``"sender"``); the API uses it for ``errors[].meta.parameter``;
* ``value`` - the offending input as received;
* ``reason`` - a short machine-readable code (stable, documented per exception);
* ``message`` - a human-readable sentence (also what ``str(error)`` returns).

The exceptions pickle cleanly (Celery may serialise them).
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "EmptyMessage",
    "InvalidMessage",
    "InvalidPhoneNumber",
    "InvalidSender",
    "SmsRuleError",
    "TooManyParts",
]


class SmsRuleError(ValueError):
    """Root of all SMS rule violations (a ``ValueError``).

    Attributes:
        field: the request field the rule applies to (class-level default, may be overridden).
        value: the offending input.
        reason: a short machine-readable reason code.
        message: a human-readable description.
    """

    field: ClassVar[str] = ""

    def __init__(self, value: Any, reason: str, message: str | None = None) -> None:
        self.value = value
        self.reason = reason
        self.message = message if message is not None else self._default_message()
        super().__init__(self.message)

    def _default_message(self) -> str:
        return f"invalid {self.field or 'value'} {self.value!r}: {self.reason}"

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(value={self.value!r}, reason={self.reason!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.value, self.reason, self.message))


class InvalidPhoneNumber(SmsRuleError):
    """A recipient number that cannot be normalised to a usable E.164 number.

    ``reason`` is one of ``"not_a_number"``, ``"invalid"``, ``"too_short"``, ``"too_long"``,
    ``"no_country"``.
    """

    field: ClassVar[str] = "phoneNumbers"

    _MESSAGES: ClassVar[dict[str, str]] = {
        "not_a_number": "is not a phone number",
        "invalid": "is not a valid phone number",
        "too_short": "is too short to be a phone number",
        "too_long": "is too long to be a phone number",
        "no_country": "has no (known) country calling code; use the international format +CC...",
    }

    def _default_message(self) -> str:
        text = self._MESSAGES.get(self.reason, self.reason)
        return f"phone number {self.value!r} {text}"


class InvalidSender(SmsRuleError):
    """A sender ID that breaks the sender rules (see :mod:`dispatcher.sms.sender`).

    ``reason`` is one of ``"empty"``, ``"too_long"``, ``"too_short"``, ``"bad_characters"``,
    ``"not_a_string"``.
    """

    field: ClassVar[str] = "sender"

    _MESSAGES: ClassVar[dict[str, str]] = {
        "empty": "is empty",
        "too_long": "is too long (alphanumeric: at most 11 characters; numeric: at most 15 digits)",
        "too_short": "is too short (a numeric sender needs at least 3 digits)",
        "bad_characters": (
            "may only contain ASCII letters, digits, space and . - _ & (with at least one letter),"
            " or be a number: optional + and 3-15 digits"
        ),
        "not_a_string": "is not a string",
    }

    def _default_message(self) -> str:
        text = self._MESSAGES.get(self.reason, self.reason)
        return f"sender {self.value!r} {text}"


class InvalidMessage(SmsRuleError):
    """A message text that cannot be sent."""

    field: ClassVar[str] = "message"

    def __repr__(self) -> str:
        # The text may be long: do not dump it whole into logs.
        shown = self.value if len(str(self.value)) <= 40 else f"{str(self.value)[:37]}..."
        return f"{type(self).__name__}(value={shown!r}, reason={self.reason!r})"


class EmptyMessage(InvalidMessage):
    """The message text is empty (``reason == "empty"``)."""

    def __init__(self, value: Any = "", reason: str = "empty", message: str | None = None) -> None:
        super().__init__(value, reason, message if message is not None else "message is empty")


class TooManyParts(InvalidMessage):
    """The message needs more parts than allowed (``reason == "too_many_parts"``).

    Attributes:
        parts: how many parts the text needs.
        max_parts: the limit that was exceeded.
    """

    def __init__(
        self,
        value: Any,
        parts: int,
        max_parts: int,
        reason: str = "too_many_parts",
        message: str | None = None,
    ) -> None:
        self.parts = parts
        self.max_parts = max_parts
        if message is None:
            message = f"message needs {parts} parts, the limit is {max_parts}"
        super().__init__(value, reason, message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.value, self.parts, self.max_parts, self.reason, self.message))
