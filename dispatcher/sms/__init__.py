"""Pure SMS rules: text encoding and segmentation, phone numbers, sender IDs.

Standard library and ``phonenumbers`` only; no I/O. Every rule violation raises a subclass of
:class:`SmsRuleError` (a ``ValueError``) carrying ``field``, ``value``, ``reason`` and a human
``message``.
"""

from dispatcher.sms.encoding import (
    GSM7_BASIC_CHARS,
    GSM7_CHARS,
    GSM7_EXTENSION_CHARS,
    GSM7_MULTI_PART,
    GSM7_SINGLE_PART,
    MAX_PARTS,
    UCS2_MULTI_PART,
    UCS2_SINGLE_PART,
    Encoding,
    SegmentInfo,
    check_parts,
    count_parts,
    detect_encoding,
    is_gsm7,
    split_parts,
)
from dispatcher.sms.errors import (
    EmptyMessage,
    InvalidMessage,
    InvalidPhoneNumber,
    InvalidSender,
    SmsRuleError,
    TooManyParts,
)
from dispatcher.sms.phone import country_code, normalize, region
from dispatcher.sms.sender import (
    ALPHANUMERIC_SENDER_MAX,
    NUMERIC_SENDER_MAX,
    NUMERIC_SENDER_MIN,
    is_numeric_sender,
    validate_sender,
)

__all__ = [
    "ALPHANUMERIC_SENDER_MAX",
    "GSM7_BASIC_CHARS",
    "GSM7_CHARS",
    "GSM7_EXTENSION_CHARS",
    "GSM7_MULTI_PART",
    "GSM7_SINGLE_PART",
    "MAX_PARTS",
    "NUMERIC_SENDER_MAX",
    "NUMERIC_SENDER_MIN",
    "UCS2_MULTI_PART",
    "UCS2_SINGLE_PART",
    "EmptyMessage",
    "Encoding",
    "InvalidMessage",
    "InvalidPhoneNumber",
    "InvalidSender",
    "SegmentInfo",
    "SmsRuleError",
    "TooManyParts",
    "check_parts",
    "count_parts",
    "country_code",
    "detect_encoding",
    "is_gsm7",
    "is_numeric_sender",
    "normalize",
    "region",
    "split_parts",
    "validate_sender",
]
