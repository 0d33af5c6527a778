"""``/v2.1/sms/senders``: the account's sender names and their state; requesting a new one.

Answered for ``GET`` and for ``OPTIONS`` (a published client of the original lists the names
with ``OPTIONS``). In the original, a name is requested and support approves it before it
can be used; here the operator approves it with ``smsdispatch senders approve`` (or the panel),
and an account whose policy is ``registered`` sends only from approved names and its
dedicated numbers (docs/senders.md).
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection

from dispatcher.api.context import AccountDep, ContextDep, in_log, request_id
from dispatcher.api.envelope import JsonResponse, envelope, iso
from dispatcher.api.models import ErrorItem, Meta, error_responses
from dispatcher.errors import ApiError
from dispatcher.sms import InvalidSender
from dispatcher.store import audited
from dispatcher.store.numbers import list_numbers
from dispatcher.store.senders import (
    NameState,
    SenderName,
    get_policy,
    list_names,
)

router = APIRouter(prefix="/v2.1/sms/senders", tags=["Sender names"])
AUTH = ("unauthorized", "rate_limited", "service_unavailable", "internal_error")


class SenderView(BaseModel):
    """A sender name (or a dedicated number) of your account."""

    sender: str = Field(description="The name as handsets show it.", examples=["ACME"])
    kind: str = Field(
        description="`name` (requested and approved by the operator) or `number` (a dedicated "
        "number of the account, always usable).",
        examples=["name"],
    )
    state: str = Field(
        description="`pending` (waiting for the operator), `approved` (usable), `rejected`.",
        examples=["approved"],
    )
    reason: str | None = Field(
        None, description="Why it was rejected; null otherwise.", examples=[None]
    )
    createTime: int = Field(
        description="When it was requested: unix seconds.", examples=[1795694400]
    )
    statusTime: int = Field(
        description="When it entered its state: unix seconds.", examples=[1795698000]
    )
    createdAt: str = Field(
        description="`createTime` with milliseconds (ISO 8601 UTC).",
        examples=["2026-11-26T12:00:00.000Z"],
    )
    statusAt: str = Field(
        description="`statusTime` with milliseconds (ISO 8601 UTC).",
        examples=["2026-11-26T13:00:00.000Z"],
    )


class SendersMeta(Meta):
    """``meta`` of the sender names: the counts, and the account's policy."""

    senderPolicy: str = Field(
        description="`registered`: only approved names and dedicated numbers may send; `open`: "
        "any valid sender name may.",
        examples=["registered"],
    )


class SendersEnvelope(BaseModel):
    """``{data, errors, meta}`` of sender names."""

    data: list[SenderView] = Field(description="Your sender names, oldest request first.")
    errors: list[ErrorItem] = Field(description="Always empty in a 200 answer.")
    meta: SendersMeta = Field(description="Counts, the request id and the sender policy.")


class SenderRequestBody(BaseModel):
    """Body of ``POST /v2.1/sms/senders``."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [{"sender": "ACME"}]})

    sender: str = Field(
        description="The name to request: 1-11 letters, digits, spaces or `.-_&` with at least "
        "one letter, or a number of 3-15 digits.",
        examples=["ACME"],
    )


def name_view(entry: SenderName) -> dict[str, Any]:
    """A sender name as the API shows it."""
    return {
        "sender": entry.name,
        "kind": "name",
        "state": str(entry.state),
        "reason": entry.reason,
        "createTime": int(entry.requested_at),
        "statusTime": int(entry.status_at),
        "createdAt": iso(entry.requested_at),
        "statusAt": iso(entry.status_at),
    }


def _number_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "sender": row["number"],
        "kind": "number",
        "state": str(NameState.APPROVED),
        "reason": None,
        "createTime": int(row["created_at"]),
        "statusTime": int(row["created_at"]),
        "createdAt": iso(row["created_at"]),
        "statusAt": iso(row["created_at"]),
    }


async def _listing(request: Request, account_id: int, ctx: ContextDep) -> JsonResponse:
    def read(conn: Connection) -> tuple[str, list[dict[str, Any]]]:
        names = [name_view(n) for n in list_names(conn, account_id)]
        own = [_number_view(r) for r in list_numbers(conn, account_id)]
        return str(get_policy(conn, account_id)), names + own

    policy, data = await in_log(ctx, read)
    return JsonResponse(envelope(request_id(request), 200, data, senderPolicy=policy))


@router.get(
    "",
    summary="Your sender names and their state",
    response_model=SendersEnvelope,
    responses=error_responses(*AUTH),
)
async def list_senders(request: Request, account: AccountDep, ctx: ContextDep) -> JsonResponse:
    """Every name the account requested with its state, then its dedicated numbers; an empty
    list is a 200. `meta.senderPolicy` says whether only approved names may send."""
    return await _listing(request, account.id, ctx)


@router.options(
    "",
    summary="Your sender names (OPTIONS, as some clients of the original call it)",
    response_model=SendersEnvelope,
    responses=error_responses(*AUTH),
)
async def options_senders(request: Request, account: AccountDep, ctx: ContextDep) -> JsonResponse:
    """The same answer as `GET /v2.1/sms/senders`, plus `Allow`."""
    answer = await _listing(request, account.id, ctx)
    answer.headers["Allow"] = "GET, POST, OPTIONS"
    return answer


@router.post(
    "",
    summary="Request a sender name",
    response_model=SendersEnvelope,
    responses=error_responses(*AUTH, "invalid_json", "missing_field", "invalid_sender"),
)
async def request_sender(
    request: Request, body: SenderRequestBody, account: AccountDep, ctx: ContextDep
) -> JsonResponse:
    """Ask the operator for a sender name. A new (or a rejected) name is `pending` until the
    operator decides; asking again for a pending or approved name changes nothing."""

    def ask(conn: Connection) -> tuple[str, SenderName]:
        entry = audited.request_sender(conn, account.id, body.sender, account.actor, time.time())
        return str(get_policy(conn, account.id)), entry

    try:
        policy, entry = await in_log(ctx, ask, write=True)
    except InvalidSender as exc:
        raise ApiError("invalid_sender", exc.message, "sender", body.sender) from None
    return JsonResponse(envelope(request_id(request), 200, [name_view(entry)], senderPolicy=policy))
