"""Carrier callbacks: ``POST /carrier/{connection}/reports`` and ``…/inbound``.

Thin on purpose: authenticate the connection, check the shape, enqueue on the dlr lane, answer.
Parsing (each carrier's status map) and applying happen in the dlr workers, so a burst of
reports never slows the API and a report that arrives before its submit was recorded can be
retried there instead of being dropped.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Request

from dispatcher.api.context import ContextDep, request_id
from dispatcher.api.envelope import JsonResponse
from dispatcher.broker import BrokerUnavailable
from dispatcher.contract import TASK_APPLY_INBOUND, TASK_APPLY_REPORTS
from dispatcher.errors import ApiError

router = APIRouter(prefix="/carrier", tags=["Carrier callbacks"])
MAX_ITEMS = 1000
KNOWN_CONNECTIONS = ("default",)


def _authenticate(ctx: ContextDep, connection: str, authorization: str | None) -> None:
    token = ctx.settings.carrier_callback_token
    if connection not in KNOWN_CONNECTIONS:
        raise ApiError("not_found", "no such carrier connection", "connection", connection)
    given = (authorization or "").removeprefix("Bearer ").strip()
    # An empty configured token refuses everything: callbacks are closed unless configured.
    if not token or not hmac.compare_digest(given.encode(), token.encode()):
        raise ApiError(
            "unauthorized", "wrong or missing carrier callback token", "Authorization", None
        )


async def _items(request: Request) -> list[dict[str, Any]]:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise ApiError("invalid_json", "the body is not valid JSON", "body", None) from None
    items = body if isinstance(body, list) else [body]
    if not items or len(items) > MAX_ITEMS:
        raise ApiError("invalid_field", f"send 1-{MAX_ITEMS} objects", "body", len(items))
    for i, item in enumerate(items):
        if not isinstance(item, dict) or len(item) > 50:
            raise ApiError(
                "invalid_field", "each item must be a JSON object", "body", None, f"body[{i}]"
            )
    return items


async def _accept(
    request: Request, ctx: ContextDep, task: str, connection: str, authorization: str | None
) -> JsonResponse:
    _authenticate(ctx, connection, authorization)
    items = await _items(request)
    try:
        await ctx.callbacks.publish(task, connection, items)
    except BrokerUnavailable:
        raise ApiError("service_unavailable", "queue unreachable; retry later") from None
    return JsonResponse({"accepted": len(items), "uniqId": request_id(request)})


AuthHeader = Annotated[str | None, Header(description="`Bearer <callback token>`")]


@router.post("/{connection}/reports", summary="Delivery reports from a carrier")
async def reports(
    request: Request, connection: str, ctx: ContextDep, authorization: AuthHeader = None
) -> JsonResponse:
    """Accept one report object or an array of them; 200 once they are queued."""
    return await _accept(request, ctx, TASK_APPLY_REPORTS, connection, authorization)


@router.post("/{connection}/inbound", summary="Inbound messages from a carrier")
async def inbound(
    request: Request, connection: str, ctx: ContextDep, authorization: AuthHeader = None
) -> JsonResponse:
    """Accept one inbound message (or part) or an array of them; 200 once they are queued."""
    return await _accept(request, ctx, TASK_APPLY_INBOUND, connection, authorization)
