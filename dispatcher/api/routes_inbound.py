"""Two-way SMS and opt-outs: ``/v2.1/sms/inbound``, ``/v2.1/numbers``, ``/v2.1/suppressions``.

Everything is scoped to the calling account. Listings follow ``GET /v2.1/sms``: the
``{data, errors, meta}`` envelope with ``meta.total/offset/limit``, and 404 ``no_results`` when
nothing matches.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from dispatcher.api.context import AccountDep, ContextDep, in_log, request_id
from dispatcher.api.envelope import JsonResponse, envelope, iso
from dispatcher.api.models import ErrorItem, Meta
from dispatcher.api.query import direction, phones, split, unix_time
from dispatcher.errors import CATALOGUE, ApiError
from dispatcher.sms import InvalidPhoneNumber, normalize
from dispatcher.store.audited import remove_suppression
from dispatcher.store.inbound import InboundFilter, list_inbound
from dispatcher.store.numbers import list_numbers, lookup_forms
from dispatcher.store.suppressions import list_suppressions

router = APIRouter()


class InboundView(BaseModel):
    """A message a subscriber sent to one of your numbers."""

    id: str = Field(
        description="Our id of the inbound message.",
        examples=["0192f7a4-8b1c-7cde-8f00-1234567890ab"],
    )
    phoneNumber: str = Field(description="The sender (E.164).", examples=["+48600111222"])
    number: str = Field(description="Your dedicated number it was sent to.", examples=["4321"])
    message: str = Field(description="The text, parts joined.", examples=["What time do you open?"])
    numberOfParts: int = Field(description="Parts joined into this message.", examples=[1])
    receiveTime: int = Field(description="When it arrived: unix seconds.", examples=[1795694400])
    receivedAt: str = Field(
        description="`receiveTime` with milliseconds (ISO 8601 UTC).",
        examples=["2026-11-26T12:00:00.000Z"],
    )
    keyword: str | None = Field(
        None, description="The opt-out/opt-in keyword the body is, if any.", examples=[None]
    )


class NumberView(BaseModel):
    """A dedicated number of your account."""

    number: str = Field(description="The number (E.164 or short code).", examples=["+48500100200"])
    kind: str = Field(description="short_code or long_number.", examples=["long_number"])
    createTime: int = Field(
        description="When it was assigned: unix seconds.", examples=[1795694400]
    )
    createdAt: str = Field(
        description="`createTime` with milliseconds (ISO 8601 UTC).",
        examples=["2026-11-26T12:00:00.000Z"],
    )


class SuppressionView(BaseModel):
    """A number bulk messages of your account are not sent to."""

    phoneNumber: str = Field(
        description="The suppressed number (E.164).", examples=["+48600111222"]
    )
    source: str = Field(description="keyword (the subscriber) or api.", examples=["keyword"])
    keyword: str | None = Field(None, description="The keyword it sent.", examples=["STOP"])
    createTime: int = Field(
        description="When it was suppressed: unix seconds.", examples=[1795694400]
    )
    createdAt: str = Field(
        description="`createTime` with milliseconds (ISO 8601 UTC).",
        examples=["2026-11-26T12:00:00.000Z"],
    )


class InboundEnvelope(BaseModel):
    """``{data, errors, meta}`` of inbound messages."""

    data: list[InboundView] = Field(description="The inbound messages.")
    errors: list[ErrorItem] = Field(description="What was refused, one element per problem.")
    meta: Meta = Field(description="Counts and the request id.")


class NumbersEnvelope(BaseModel):
    """``{data, errors, meta}`` of numbers."""

    data: list[NumberView] = Field(description="Your numbers.")
    errors: list[ErrorItem] = Field(description="What was refused, one element per problem.")
    meta: Meta = Field(description="Counts and the request id.")


class SuppressionsEnvelope(BaseModel):
    """``{data, errors, meta}`` of suppressions."""

    data: list[SuppressionView] = Field(description="The suppressed numbers.")
    errors: list[ErrorItem] = Field(description="What was refused, one element per problem.")
    meta: Meta = Field(description="Counts and the request id.")


def _declared(*codes: str) -> dict[int | str, dict[str, Any]]:
    by_status: dict[int, list[str]] = {}
    for c in ("unauthorized", "rate_limited", "service_unavailable", "internal_error", *codes):
        by_status.setdefault(CATALOGUE[c].status, []).append(c)
    return {s: {"description": "Error codes: " + ", ".join(cs)} for s, cs in by_status.items()}


def inbound_view(row: dict[str, Any]) -> dict[str, Any]:
    """A stored inbound message as the API shows it."""
    return {
        "id": row["id"],
        "phoneNumber": row["phone"],
        "number": row["number"],
        "message": row["body"],
        "numberOfParts": row["parts"],
        "receiveTime": int(row["received_at"]),
        "receivedAt": iso(row["received_at"]),
        "keyword": row["keyword"],
    }


def suppression_view(row: dict[str, Any]) -> dict[str, Any]:
    """A suppression row as the API shows it."""
    return {
        "phoneNumber": row["phone"],
        "source": row["source"],
        "keyword": row["keyword"],
        "createTime": int(row["created_at"]),
        "createdAt": iso(row["created_at"]),
    }


Offset = Annotated[int, Query(ge=0, le=10_000_000)]
Limit = Annotated[int, Query(ge=1, le=1000)]
PhoneFilter = Annotated[str | None, Query(description="Comma-separated, any common spelling.")]


@router.get(
    "/v2.1/sms/inbound",
    tags=["Two-way"],
    summary="List inbound messages",
    response_model=InboundEnvelope,
    responses=_declared("invalid_query", "no_results"),
)
async def list_inbound_sms(
    request: Request,
    account: AccountDep,
    ctx: ContextDep,
    phoneNumber: PhoneFilter = None,
    number: Annotated[str | None, Query(description="Your numbers, comma-separated.")] = None,
    dateFrom: Annotated[str | None, Query(description="ISO 8601 UTC or unix seconds.")] = None,
    dateTo: Annotated[str | None, Query(description="ISO 8601 UTC or unix seconds.")] = None,
    offset: Offset = 0,
    limit: Limit = 100,
    orderDirection: Annotated[
        str, Query(description="`ASC` or `DESC`, in any letter case.")
    ] = "DESC",
) -> JsonResponse:
    """Messages subscribers sent to your numbers, newest first (404 when nothing matches)."""
    flt = InboundFilter(
        phones=phones(phoneNumber, ctx.settings.default_region or None),
        numbers=tuple(f for n in split(number) for f in lookup_forms(n)),
        date_from=unix_time(dateFrom, "dateFrom"),
        date_to=unix_time(dateTo, "dateTo"),
    )
    descending = direction(orderDirection)
    rows, total = await in_log(
        ctx, lambda c: list_inbound(c, account.id, flt, offset, limit, descending)
    )
    if not rows:
        raise ApiError("no_results", "no inbound message matches the filters")
    data = [inbound_view(r) for r in rows]
    return JsonResponse(
        envelope(request_id(request), 200, data, total=total, offset=offset, limit=limit)
    )


@router.get(
    "/v2.1/numbers",
    tags=["Two-way"],
    summary="Your dedicated numbers",
    response_model=NumbersEnvelope,
    responses=_declared("no_results"),
)
async def list_account_numbers(
    request: Request, account: AccountDep, ctx: ContextDep
) -> JsonResponse:
    """Short codes and long numbers assigned to your account (404 when there are none)."""
    rows = await in_log(ctx, lambda c: list_numbers(c, account.id))
    if not rows:
        raise ApiError("no_results", "no dedicated number is assigned to your account")
    data = [
        {
            "number": r["number"],
            "kind": r["kind"],
            "createTime": int(r["created_at"]),
            "createdAt": iso(r["created_at"]),
        }
        for r in rows
    ]
    return JsonResponse(envelope(request_id(request), 200, data, total=len(data)))


@router.get(
    "/v2.1/suppressions",
    tags=["Opt-out"],
    summary="Numbers that opted out",
    response_model=SuppressionsEnvelope,
    responses=_declared("invalid_query", "no_results"),
)
async def list_account_suppressions(
    request: Request,
    account: AccountDep,
    ctx: ContextDep,
    phoneNumber: PhoneFilter = None,
    offset: Offset = 0,
    limit: Limit = 100,
) -> JsonResponse:
    """Your suppression list, newest first (404 when nothing matches).

    Bulk messages to these numbers are refused with `recipient_opted_out`.
    """
    wanted = phones(phoneNumber, ctx.settings.default_region or None)
    rows, total = await in_log(
        ctx, lambda c: list_suppressions(c, account.id, offset, limit, wanted)
    )
    if not rows:
        raise ApiError("no_results", "no suppressed number matches")
    data = [suppression_view(r) for r in rows]
    return JsonResponse(
        envelope(request_id(request), 200, data, total=total, offset=offset, limit=limit)
    )


@router.delete(
    "/v2.1/suppressions/{phone}",
    tags=["Opt-out"],
    summary="Take a number off your suppression list",
    response_model=SuppressionsEnvelope,
    responses=_declared("invalid_phone_number", "not_found"),
)
async def delete_suppression(
    request: Request, phone: str, account: AccountDep, ctx: ContextDep
) -> JsonResponse:
    """Bulk messages to the number are sent again; answers the removed entry.

    Only do this when the subscriber asked for it (e.g. they opted in another way).
    """
    try:
        e164 = normalize(phone, ctx.settings.default_region or None)
    except InvalidPhoneNumber as exc:
        raise ApiError("invalid_phone_number", exc.message, "phone", phone) from None
    row = await in_log(
        ctx,
        lambda c: remove_suppression(c, account.id, e164, account.actor, time.time()),
        write=True,
    )
    if row is None:
        raise ApiError("not_found", "the number is not on your suppression list", "phone", e164)
    return JsonResponse(envelope(request_id(request), 200, [suppression_view(row)]))
