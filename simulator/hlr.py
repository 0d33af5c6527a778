"""Number look-ups (HLR) of the simulated carrier: ``POST /v1/hlr``.

Deterministic, so tests can predict every answer: the country comes from the number
(phonenumbers), the network is the country's MCC and an MNC chosen by the number's last digit,
and the configuration decides the rest: ``reject_prefixes`` are no subscriber at all (not
valid), ``hlr_ported_prefixes`` moved to another network (ported), ``hlr_absent_prefixes``
have their handset off (not reachable).
"""

from __future__ import annotations

from typing import Any

import phonenumbers

# Mobile country codes (ITU-T E.212) of a few countries; any other country gets 999, the code
# E.212 sets aside for private networks, which a simulated one is.
MCC = {
    "PL": "260",
    "DE": "262",
    "GB": "234",
    "FR": "208",
    "CZ": "230",
    "SK": "231",
    "UA": "255",
    "IT": "222",
    "ES": "214",
    "NL": "204",
    "US": "310",
}
PRIVATE_MCC = "999"


def _digits(prefix: str) -> str:
    return prefix.removeprefix("+")


def _country(phone: str) -> str | None:
    try:
        number = phonenumbers.parse("+" + _digits(phone))
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.region_code_for_number(number)


def lookup(
    phone: str,
    rejected: tuple[str, ...],
    ported: tuple[str, ...],
    absent: tuple[str, ...],
) -> dict[str, Any]:
    """The look-up answer for ``phone`` (digits with an optional ``+``)."""
    digits = _digits(phone)
    country = _country(phone)
    answer: dict[str, Any] = {
        "phone": "+" + digits,
        "valid": country is not None and not digits.startswith(rejected),
        "country": country,
        "mcc": None,
        "mnc": None,
        "network": None,
        "ported": False,
        "reachable": False,
    }
    if not answer["valid"]:
        return answer
    moved = digits.startswith(ported)
    # Three networks per country; a ported number sits on the next one.
    mnc = f"{(int(digits[-1]) + (1 if moved else 0)) % 3 + 1:02d}"
    mcc = MCC.get(country or "", PRIVATE_MCC)
    answer.update(
        mcc=mcc,
        mnc=mnc,
        network=f"Simulated {country} {mnc}",
        ported=moved,
        reachable=not digits.startswith(absent),
    )
    return answer
