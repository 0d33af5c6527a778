"""Number look-ups (HLR): ``POST /v2.1/sms/hlr`` and the support panel's message view
(docs/lookup.md)."""

from __future__ import annotations

from dispatcher.lookup.carriers import LookupFailed
from dispatcher.lookup.result import LookupResult
from dispatcher.lookup.service import AllLookupsFailed, LookupNotSupported, NumberLookup

__all__ = [
    "AllLookupsFailed",
    "LookupFailed",
    "LookupNotSupported",
    "LookupResult",
    "NumberLookup",
]
