"""Recipient phone numbers: normalisation to E.164 and validity policy.

:func:`normalize` turns what people type into canonical E.164 (``+48111222333``) or raises
:class:`~dispatcher.sms.errors.InvalidPhoneNumber` with one of these reasons:

* ``not_a_number`` - characters other than digits, one leading ``+`` and separators
  (spaces, ``- . / ( )``), or no digits at all;
* ``no_country`` - no country calling code: national format without ``default_region``, or an
  unassigned calling code (``+999...``);
* ``too_short`` / ``too_long`` - the length cannot be a (mobile) number of that country;
* ``invalid`` - anything else that is not a usable number.

Accepted input formats: ``+48 111 222 333``, ``0048 111 222 333``, ``0048111222333``,
``(+48) 111-222-333``, ``+48.111.222.333``, ``+44 (0)20 7946 0958`` (the trunk prefix is
dropped), and with ``default_region="PL"`` also ``111 222 333``. A leading ``00`` is read as the
international prefix ``+`` unless ``default_region`` uses a different international prefix that
matches (e.g. ``0011`` in AU), in which case that region's dialling rules apply.

Validity policy
---------------
``phonenumbers.is_valid_number`` checks the number against the allocated number *ranges* of
each country. It rejects ``+48111222333``, the example number from MessageFlow's own docs that
clients use in tests (``+48500100200`` is valid), and range data always lags behind the real
allocations. The API must accept the vendor's example, so by default (``strict=False``) a number
is accepted when either:

1. ``phonenumbers.is_valid_number`` says it is valid (any type: mobile, fixed line, VoIP...), or
2. it is *plausible*: its national significant number has a length a **mobile** number of that
   country can have (``is_possible_number_for_type(MOBILE)``) **and** it matches the country's
   general numbering-plan pattern (so ``+48000000000`` or a number with a leading ``0`` after
   the country code is still rejected).

In other words, we check the shape of the number (country code, length, numbering plan) but not
whether its prefix is allocated to an operator; a well-formed but unallocated number is accepted
and ends as an undelivered message (a delivery report), which is what the vendor does too.
``normalize(..., strict=True)`` only accepts numbers ``is_valid_number`` approves (for callers
that want the library's range check). Rejection reasons come from the mobile length check:
``too_short``, ``too_long``, otherwise ``invalid``.

Speed: input that is already ``+`` followed by digits takes a fast path that splits the calling
code itself instead of running ``phonenumbers.parse``; it builds the very same ``PhoneNumber``
(whenever ``parse`` might transform the number - a leading ``0`` after the calling code, or a
national prefix of that country - the fast path defers to ``parse``). Validation always runs:
the cheap plausibility test first, ``is_valid_number`` (dearer than the rest of the path
together) only when it fails or in strict mode. Timings: docs/benchmarks.md, "Measurements
behind code choices".
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

import phonenumbers
from phonenumbers import (
    COUNTRY_CODE_TO_REGION_CODE,
    NumberParseException,
    PhoneMetadata,
    PhoneNumber,
    PhoneNumberFormat,
    PhoneNumberType,
    ValidationResult,
)

from dispatcher.sms.errors import InvalidPhoneNumber

__all__ = ["country_code", "normalize", "region"]

_MAX_INPUT_LENGTH: Final[int] = 64
_MIN_NSN: Final[int] = 2  # phonenumbers' _MIN_LENGTH_FOR_NSN
_MAX_NSN: Final[int] = 17  # phonenumbers' _MAX_LENGTH_FOR_NSN
_MAX_E164_DIGITS: Final[int] = 15
_NON_GEO_REGION: Final[str] = "001"
_UNKNOWN_REGION: Final[str] = "ZZ"

# Separators people type inside numbers; all are deleted before parsing.
_SEPARATORS: Final[dict[int, None]] = dict.fromkeys(
    map(ord, " \t\u00a0\u2009\u202f-\u2010\u2011\u2012\u2013\u2014\u2212./()")
)
_CLEANED_RE: Final[re.Pattern[str]] = re.compile(r"\+?[0-9]+")

_PARSE_REASONS: Final[dict[int, str]] = {
    NumberParseException.INVALID_COUNTRY_CODE: "no_country",
    NumberParseException.NOT_A_NUMBER: "not_a_number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too_short",
    NumberParseException.TOO_SHORT_NSN: "too_short",
    NumberParseException.TOO_LONG: "too_long",
}
_LENGTH_REASONS: Final[dict[int, str]] = {
    ValidationResult.TOO_SHORT: "too_short",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "too_short",
    ValidationResult.TOO_LONG: "too_long",
}


@lru_cache(maxsize=512)
def _metadata(cc: int) -> PhoneMetadata | None:
    """Metadata of the main region of calling code ``cc`` (or of the non-geographic entity)."""
    return PhoneMetadata.metadata_for_region_or_calling_code(
        cc, phonenumbers.region_code_for_country_code(cc)
    )


@lru_cache(maxsize=512)
def _national_prefix_re(cc: int) -> re.Pattern[str] | None:
    metadata = _metadata(cc)
    pattern = metadata.national_prefix_for_parsing if metadata is not None else None
    return re.compile(pattern) if pattern else None


@lru_cache(maxsize=512)
def _general_re(cc: int) -> re.Pattern[str] | None:
    metadata = _metadata(cc)
    if metadata is None or metadata.general_desc is None:
        return None
    pattern = metadata.general_desc.national_number_pattern
    return re.compile(pattern) if pattern else None


@lru_cache(maxsize=512)
def _idd_re(region_code: str) -> re.Pattern[str] | None:
    metadata = PhoneMetadata.metadata_for_region(region_code, None)
    if metadata is None or not metadata.international_prefix:
        return None
    return re.compile(metadata.international_prefix)


def _split_country_code(digits: str) -> tuple[int, str]:
    """Split E.164 digits (no ``+``) into (calling code, rest); calling code 0 if unknown."""
    if digits[:1] != "0":
        for size in (1, 2, 3):
            cc = int(digits[:size])
            if cc in COUNTRY_CODE_TO_REGION_CODE:
                return cc, digits[size:]
    return 0, digits


def _build(cc: int, national: str) -> PhoneNumber:
    """Build the ``PhoneNumber`` that ``phonenumbers.parse`` would return for +cc national."""
    number = PhoneNumber(country_code=cc, national_number=int(national))
    if len(national) > 1 and national[0] == "0":
        number.italian_leading_zero = True
        zeros = 1
        while zeros < len(national) - 1 and national[zeros] == "0":
            zeros += 1
        if zeros != 1:
            number.number_of_leading_zeros = zeros
    return number


def _parse(text: str, region_code: str | None, value: str) -> PhoneNumber:
    try:
        return phonenumbers.parse(text, region_code)
    except NumberParseException as exc:
        raise InvalidPhoneNumber(value, _PARSE_REASONS.get(exc.error_type, "invalid")) from None


def _parse_international(digits: str, value: str) -> PhoneNumber:
    """Parse ``+`` + ``digits``, avoiding ``phonenumbers.parse`` when it cannot change them."""
    if len(digits) < 3:
        raise InvalidPhoneNumber(value, "too_short")
    cc, national = _split_country_code(digits)
    if cc == 0:
        raise InvalidPhoneNumber(value, "no_country")
    if national[:1] == "0":
        return _parse("+" + digits, None, value)
    prefix = _national_prefix_re(cc)
    if prefix is not None and prefix.match(national):
        return _parse("+" + digits, None, value)
    if len(national) < _MIN_NSN:
        raise InvalidPhoneNumber(value, "too_short")
    if len(national) > _MAX_NSN:
        raise InvalidPhoneNumber(value, "too_long")
    return _build(cc, national)


def _check(number: PhoneNumber, value: str, strict: bool) -> None:
    """Apply the validity policy of the module docstring; raise on rejection.

    Accepted = plausible (mobile length and numbering-plan pattern) or ``is_valid_number``.
    The cheap plausibility test runs first, so the range check only runs when it fails.
    """
    length = phonenumbers.is_possible_number_for_type_with_reason(number, PhoneNumberType.MOBILE)
    if not strict and length == ValidationResult.IS_POSSIBLE:
        general = _general_re(number.country_code or 0)
        nsn = phonenumbers.national_significant_number(number)
        if general is not None and general.fullmatch(nsn):
            return
    if phonenumbers.is_valid_number(number):
        return
    raise InvalidPhoneNumber(value, _LENGTH_REASONS.get(length, "invalid"))


def _to_number(number: str, default_region: str | None, strict: bool) -> PhoneNumber:
    if not isinstance(number, str):
        raise InvalidPhoneNumber(number, "not_a_number")
    if number[:1] == "+" and number.isascii() and number[1:].isdigit():
        parsed = _parse_international(number[1:], number)  # fast path: already +digits
    else:
        if len(number) > _MAX_INPUT_LENGTH:
            raise InvalidPhoneNumber(number, "too_long")
        cleaned = number.translate(_SEPARATORS)
        if _CLEANED_RE.fullmatch(cleaned) is None:
            raise InvalidPhoneNumber(number, "not_a_number")
        region_code = default_region.upper() if default_region else None
        if cleaned.startswith("00"):
            idd = _idd_re(region_code) if region_code else None
            if idd is None or idd.fullmatch("00") or idd.match(cleaned) is None:
                cleaned = "+" + cleaned[2:]
        if cleaned[0] == "+":
            parsed = _parse_international(cleaned[1:], number)
        elif region_code is None:
            raise InvalidPhoneNumber(number, "no_country")
        else:
            parsed = _parse(cleaned, region_code, number)
    _check(parsed, number, strict)
    return parsed


def normalize(number: str, default_region: str | None = None, *, strict: bool = False) -> str:
    """Return ``number`` in E.164 format (``+48111222333``).

    Args:
        number: the number as typed (see the module docstring for accepted formats).
        default_region: ISO 3166 region (``"PL"``) used for numbers in national format; without
            it a number must carry its country code (``+48``/``0048``).
        strict: accept only numbers ``phonenumbers.is_valid_number`` approves (see the policy in
            the module docstring); by default, plausible numbers are accepted too.

    Raises:
        InvalidPhoneNumber: with ``reason`` ``not_a_number``, ``no_country``, ``too_short``,
            ``too_long`` or ``invalid``.
    """
    parsed = _to_number(number, default_region, strict)
    e164 = phonenumbers.format_number(parsed, PhoneNumberFormat.E164)
    if len(e164) - 1 > _MAX_E164_DIGITS:
        raise InvalidPhoneNumber(number, "too_long")
    return e164


def _canonical(e164: str) -> tuple[int, str]:
    if not (e164[:1] == "+" and e164.isascii() and e164[1:].isdigit()):
        raise InvalidPhoneNumber(e164, "not_a_number")
    cc, national = _split_country_code(e164[1:])
    if cc == 0:
        raise InvalidPhoneNumber(e164, "no_country")
    if not national:
        raise InvalidPhoneNumber(e164, "too_short")
    return cc, national


def country_code(e164: str) -> int:
    """Return the country calling code of a canonical E.164 number (``+48111222333`` -> 48).

    Raises:
        InvalidPhoneNumber: when ``e164`` is not ``+`` and digits starting with an assigned code.
    """
    return _canonical(e164)[0]


def region(e164: str) -> str | None:
    """Return the ISO 3166 region of a canonical E.164 number (``+48111222333`` -> ``"PL"``).

    For a calling code shared by several regions (+1, +7, +44...) the region whose numbering plan
    the number matches is returned (``+12025550123`` -> ``"US"``, ``+14165550123`` -> ``"CA"``).
    Returns None for non-geographic numbers (+800, +882...) and for a shared calling code when
    the number matches none of its regions.

    Raises:
        InvalidPhoneNumber: when ``e164`` is not ``+`` and digits starting with an assigned code.
    """
    cc, national = _canonical(e164)
    code = phonenumbers.region_code_for_number(_build(cc, national))
    if code is None or code in (_UNKNOWN_REGION, _NON_GEO_REGION):
        return None
    return code
