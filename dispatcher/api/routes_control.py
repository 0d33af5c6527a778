"""Campaign and message control (ours, beside v2.1; docs/campaigns.md): pause, resume and
cancel a campaign, cancel one message.

A campaign is named by the ``Smsdispatch-Campaign`` header its messages were sent with (a CSV
upload, a panel campaign). Each change is one transaction: when the answer arrives, no message
it stopped can be claimed by a worker any more; those already claimed finish normally.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field
from sqlalchemy import Connection

from dispatcher.api.context import AccountDep, ContextDep, in_log, request_id
from dispatcher.api.envelope import JsonResponse, envelope
from dispatcher.api.models import ErrorItem, Meta
from dispatcher.api.routes_inbound import _declared
from dispatcher.errors import ApiError
from dispatcher.store import control
from dispatcher.store.control import CampaignState, ControlRefused

router = APIRouter(prefix="/v2.1", tags=["Campaign control"])

# ``:path``: a campaign name may hold "/" (any printable ASCII, as the header).
CampaignName = Annotated[str, Path(min_length=1, max_length=64)]  # described in docs_page


class CampaignView(BaseModel):
    """A campaign's control state after the change, and its messages by status."""

    campaign: str = Field(description="The campaign's name.", examples=["spring-sale"])
    state: str = Field(description="running | paused | cancelled.", examples=["paused"])
    changed: int = Field(
        description="Messages this request moved (paused, resumed or cancelled).",
        examples=[91250],
    )
    messages: dict[str, int] = Field(
        description="The campaign's messages by status after the change.",
        examples=[{"paused": 91250, "sent": 8750}],
    )


class CampaignEnvelope(BaseModel):
    """``{data, errors, meta}`` of a campaign change."""

    data: list[CampaignView] = Field(description="The campaign.")
    errors: list[ErrorItem] = Field(description="What was refused, one element per problem.")
    meta: Meta = Field(description="Counts and the request id.")


class CancelledView(BaseModel):
    """A message after its cancel."""

    id: str = Field(description="The message id.", examples=["01JDKQ7ZC8M5T3V6X9Y2B4N7PQ"])
    statusName: str = Field(description="`cancelled`.", examples=["cancelled"])


class CancelledEnvelope(BaseModel):
    """``{data, errors, meta}`` of a message cancel."""

    data: list[CancelledView] = Field(description="The message.")
    errors: list[ErrorItem] = Field(description="What was refused, one element per problem.")
    meta: Meta = Field(description="Counts and the request id.")


def _view(s: CampaignState) -> dict[str, Any]:
    return {"campaign": s.campaign, "state": s.state, "changed": s.changed, "messages": s.counts}


async def _change(request: Request, ctx: ContextDep, fn: Any) -> JsonResponse:
    now = time.time()

    def run(conn: Connection) -> CampaignState:
        return fn(conn, now)

    try:
        state = await in_log(ctx, run, write=True)
    except ControlRefused as exc:
        raise ApiError(exc.code, exc.message, "campaign", None) from None
    return JsonResponse(envelope(request_id(request), 200, [_view(state)]))


CAMPAIGN_ERRORS = ("campaign_not_found", "invalid_field", "unsupported_media_type")


@router.post(
    "/campaigns/{campaign:path}/pause",
    summary="Pause a campaign",
    response_model=CampaignEnvelope,
    responses=_declared(*CAMPAIGN_ERRORS, "campaign_cancelled"),
)
async def pause(
    request: Request, campaign: CampaignName, account: AccountDep, ctx: ContextDep
) -> JsonResponse:
    """Its messages not yet taken by a worker wait (`paused`); those being sent finish.

    Their validity keeps running: one that expires while paused ends `expired`. Messages sent
    into the campaign while it is paused wait too. Pausing a paused campaign changes nothing.
    """
    return await _change(
        request,
        ctx,
        lambda conn, now: control.pause_campaign(conn, account.id, campaign, "api", now),
    )


@router.post(
    "/campaigns/{campaign:path}/resume",
    summary="Resume a paused campaign",
    response_model=CampaignEnvelope,
    responses=_declared(*CAMPAIGN_ERRORS, "campaign_cancelled"),
)
async def resume(
    request: Request, campaign: CampaignName, account: AccountDep, ctx: ContextDep
) -> JsonResponse:
    """Its paused messages are sent again (scheduled ones at their time)."""
    return await _change(
        request,
        ctx,
        lambda conn, now: control.resume_campaign(conn, account.id, campaign, "api", now),
    )


@router.post(
    "/campaigns/{campaign:path}/cancel",
    summary="Cancel a campaign",
    response_model=CampaignEnvelope,
    responses=_declared(*CAMPAIGN_ERRORS),
)
async def cancel(
    request: Request, campaign: CampaignName, account: AccountDep, ctx: ContextDep
) -> JsonResponse:
    """Every message not yet taken by a worker ends `cancelled`, with its status webhook.

    Those being sent finish normally. A charged message that never reached a carrier is
    refunded (docs/prices.md). Messages sent into the campaign afterwards are cancelled too.
    Final: a cancelled campaign cannot be resumed.
    """
    return await _change(
        request,
        ctx,
        lambda conn, now: control.cancel_campaign(conn, account.id, campaign, "api", now),
    )


@router.post(
    "/sms/{message_id}/cancel",
    summary="Cancel one message",
    response_model=CancelledEnvelope,
    responses=_declared("not_found", "message_not_cancellable", "unsupported_media_type"),
)
async def cancel_sms(
    request: Request, message_id: str, account: AccountDep, ctx: ContextDep
) -> JsonResponse:
    """A scheduled, queued, retrying or paused message ends `cancelled`, with its webhook.

    One a worker has taken is sent normally, and so is one whose last attempt may have reached
    the carrier (a timeout): the answer is `message_not_cancellable`.
    """
    if len(message_id) > 64:
        raise ApiError("not_found", "no such message in your account", "id", message_id)
    now = time.time()
    try:
        status = await in_log(
            ctx, lambda conn: control.cancel_message(conn, account.id, message_id, now), write=True
        )
    except ControlRefused as exc:
        raise ApiError(exc.code, exc.message, "id", message_id) from None
    data = [{"id": message_id, "statusName": status}]
    return JsonResponse(envelope(request_id(request), 200, data))
