"""``POST /v2.1/sms/hlr``: look a number up (validity, country, network, ported, reachable)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from dispatcher.api.context import AccountDep, ContextDep, request_id
from dispatcher.api.envelope import JsonResponse, envelope, iso
from dispatcher.api.models import ErrorItem, Meta, error_responses
from dispatcher.errors import ApiError
from dispatcher.lookup import AllLookupsFailed, LookupNotSupported, LookupResult
from dispatcher.sms import InvalidPhoneNumber

router = APIRouter(prefix="/v2.1/sms", tags=["Number lookup"])
RETRY = {"Retry-After": "5"}


class LookupBody(BaseModel):
    """Body of ``POST /v2.1/sms/hlr``."""

    model_config = ConfigDict(
        extra="ignore", json_schema_extra={"examples": [{"phone": "+48500100200"}]}
    )

    phone: str = Field(
        description="The number: E.164 (`+48500100200`) or any common spelling.",
        examples=["+48500100200"],
    )


class NetworkView(BaseModel):
    """The mobile network a number is on."""

    mcc: str | None = Field(description="Mobile country code (E.212).", examples=["260"])
    mnc: str | None = Field(description="Mobile network code.", examples=["02"])
    name: str | None = Field(description="The network's name.", examples=["Simulated PL 02"])


class LookupView(BaseModel):
    """What the look-up found."""

    phoneNumber: str = Field(description="The number in E.164.", examples=["+48500100200"])
    valid: bool = Field(
        description="A number that exists and can receive SMS (false: no such subscriber, or "
        "not a number we could send to: see `invalidReason`).",
        examples=[True],
    )
    country: str | None = Field(description="ISO 3166-1 alpha-2 country.", examples=["PL"])
    network: NetworkView | None = Field(
        description="Its current network (after porting); null when not valid or unknown."
    )
    ported: bool | None = Field(
        description="Moved to another network than its number range's.", examples=[False]
    )
    reachable: bool | None = Field(
        description="The handset is on the network now (false: off or out of coverage).",
        examples=[True],
    )
    invalidReason: str | None = Field(
        description="Why it is not a number we could send to, decided without asking a "
        "carrier: `no_country`, `too_short`, `too_long`, `invalid`; null otherwise.",
        examples=[None],
    )
    connection: str | None = Field(
        description="The carrier connection that answered; null when decided without one.",
        examples=["default"],
    )
    cached: bool = Field(
        description="Answered from the cache (SMSDISPATCH_LOOKUP_CACHE_S) instead of the carrier.",
        examples=[False],
    )
    lookupTime: int = Field(
        description="When the carrier answered: unix seconds.", examples=[1795694400]
    )
    lookedUpAt: str = Field(
        description="`lookupTime` with milliseconds (ISO 8601 UTC).",
        examples=["2026-11-26T12:00:00.000Z"],
    )


class LookupEnvelope(BaseModel):
    """``{data, errors, meta}`` of a look-up: one element in ``data``."""

    data: list[LookupView] = Field(description="The number's look-up.")
    errors: list[ErrorItem] = Field(description="Always empty in a 200 answer.")
    meta: Meta = Field(description="Counts and the request id.")


def lookup_view(result: LookupResult, cached: bool) -> dict[str, Any]:
    """A look-up as the API (and the panel) shows it."""
    network = None
    if result.mcc or result.mnc or result.network:
        network = {"mcc": result.mcc, "mnc": result.mnc, "name": result.network}
    return {
        "phoneNumber": result.phone,
        "valid": result.valid,
        "country": result.country,
        "network": network,
        "ported": result.ported,
        "reachable": result.reachable,
        "invalidReason": result.invalid_reason,
        "connection": result.connection,
        "cached": cached,
        "lookupTime": int(result.looked_up_at),
        "lookedUpAt": iso(result.looked_up_at),
    }


LOOKUP_ERRORS = (
    "unauthorized",
    "rate_limited",
    "invalid_json",
    "missing_field",
    "invalid_field",
    "invalid_phone_number",
    "lookup_not_supported",
    "lookup_failed",
    "service_unavailable",
    "internal_error",
)


@router.post(
    "/hlr",
    summary="Look a number up (HLR)",
    response_model=LookupEnvelope,
    responses=error_responses(*LOOKUP_ERRORS),
)
async def lookup_number(
    request: Request, body: LookupBody, account: AccountDep, ctx: ContextDep
) -> JsonResponse:
    """Validity, country, network (MCC/MNC and name), portability and reachability of a
    number, from a carrier connection that answers look-ups; answers are cached for
    `SMSDISPATCH_LOOKUP_CACHE_S` seconds (1 hour by default)."""
    if ctx.lookups is None:
        raise ApiError("lookup_not_supported", "number look-ups are not set up in this process")
    try:
        result, cached = await ctx.lookups.lookup(body.phone, account.name)
    except InvalidPhoneNumber as exc:
        raise ApiError("invalid_phone_number", exc.message, "phone", body.phone) from None
    except LookupNotSupported as exc:
        raise ApiError("lookup_not_supported", str(exc), "phone", body.phone) from None
    except AllLookupsFailed as exc:
        raise ApiError(
            "lookup_failed", f"the carrier did not answer: {exc}", "phone", body.phone, None, RETRY
        ) from None
    return JsonResponse(envelope(request_id(request), 200, [lookup_view(result, cached)]))
