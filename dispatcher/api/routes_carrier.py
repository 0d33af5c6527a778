"""Carrier callbacks: ``POST /carrier/{connection}/reports`` and ``…/inbound``.

Thin on purpose: authenticate the connection, check the shape and every value
(:mod:`dispatcher.api.callback_fields`: 4xx naming each bad place), commit the items to the
callback inbox, answer (:mod:`dispatcher.api.callbacks`). Parsing (each carrier's status map)
and applying happen in the dlr workers, so a burst of reports never slows the API and a report
that arrives before its submit was recorded can be retried there instead of being dropped.

Each connection of the routing configuration authenticates with its own secret: a bearer
callback token, or, for a ``messageflow`` upstream that reports by signed webhooks, its webhook
secret (Standard Webhooks signature; the events are turned into the generic report form
here). Unknown connections are 404; without a connections file the implicit ``default``
connection uses ``SMSDISPATCH_CARRIER_CALLBACK_TOKEN``.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Request
from smsdispatch_client.webhooks import WebhookVerificationError, verify

from dispatcher.api.callback_fields import item_errors
from dispatcher.api.context import ContextDep, request_id
from dispatcher.api.envelope import JsonResponse, envelope
from dispatcher.api.models import error_responses
from dispatcher.errors import ApiError
from dispatcher.routing import ConnectionConfig, current_table
from dispatcher.routing.upstream import report_from_status_event
from dispatcher.store.callback_inbox import INBOUND, REPORT

router = APIRouter(prefix="/carrier", tags=["Carrier callbacks"])


def _connection(ctx: ContextDep, connection: str) -> ConnectionConfig:
    cfg = current_table(ctx.settings).config.connection(connection)
    if cfg is None:
        raise ApiError("not_found", "no such carrier connection", "connection", connection)
    return cfg


def _check_token(cfg: ConnectionConfig, authorization: str | None) -> None:
    token = cfg.credentials.callback_token
    given = (authorization or "").removeprefix("Bearer ").strip()
    # An empty configured token refuses everything: callbacks are closed unless configured.
    if not token or not hmac.compare_digest(given.encode(), token.encode()):
        raise ApiError(
            "unauthorized", "wrong or missing carrier callback token", "Authorization", None
        )


def _parse(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ApiError("invalid_json", "the body is not valid JSON", "body", None) from None


class _Refused(Exception):
    """The body holds values that must not be stored (each named in ``errors``)."""

    def __init__(self, errors: list[ApiError]) -> None:
        super().__init__(", ".join(e.code for e in errors))
        self.errors = errors


def _items(body: Any) -> list[dict[str, Any]]:
    items = body if isinstance(body, list) else [body]
    errors = item_errors(items, single=not isinstance(body, list))
    if errors:
        raise _Refused(errors)
    return items


async def _accept(
    request: Request, ctx: ContextDep, kind: str, connection: str, items: list[dict[str, Any]]
) -> JsonResponse:
    if items:  # the log away: the app's StoreUnavailable handler answers 503, the carrier retries
        await ctx.callbacks.accept(kind, connection, items)
    return JsonResponse({"accepted": len(items), "uniqId": request_id(request)})


async def _signed_reports(
    request: Request, ctx: ContextDep, cfg: ConnectionConfig, body: bytes
) -> JsonResponse:
    """An upstream's signed ``message.status`` webhook → generic reports on the dlr lane."""
    try:
        verify(body, dict(request.headers), [cfg.credentials.webhook_secret])
    except WebhookVerificationError as exc:
        raise ApiError("unauthorized", f"webhook signature: {exc}", "webhook-signature") from None
    reports = [r for r in map(report_from_status_event, _items(_parse(body))) if r]
    return await _accept(request, ctx, REPORT, cfg.name, reports)


AuthHeader = Annotated[str | None, Header(description="`Bearer <callback token>`")]
CALLBACK_ERRORS = error_responses(
    "invalid_json",
    "invalid_field",
    "unauthorized",
    "not_found",
    "payload_too_large",
    "internal_error",
    "service_unavailable",
)


@router.post(
    "/{connection}/reports", summary="Delivery reports from a carrier", responses=CALLBACK_ERRORS
)
async def reports(
    request: Request, connection: str, ctx: ContextDep, authorization: AuthHeader = None
) -> JsonResponse:
    """Accept one report object or an array of them; 200 once they are stored."""
    cfg = _connection(ctx, connection)
    body = await request.body()
    try:
        if cfg.credentials.webhook_secret and "webhook-signature" in request.headers:
            return await _signed_reports(request, ctx, cfg, body)
        _check_token(cfg, authorization)
        return await _accept(request, ctx, REPORT, cfg.name, _items(_parse(body)))
    except _Refused as exc:
        return _refused(request, exc)


@router.post(
    "/{connection}/inbound", summary="Inbound messages from a carrier", responses=CALLBACK_ERRORS
)
async def inbound(
    request: Request, connection: str, ctx: ContextDep, authorization: AuthHeader = None
) -> JsonResponse:
    """Accept one inbound message (or part) or an array of them; 200 once they are stored."""
    cfg = _connection(ctx, connection)
    _check_token(cfg, authorization)
    try:
        items = _items(_parse(await request.body()))
    except _Refused as exc:
        return _refused(request, exc)
    return await _accept(request, ctx, INBOUND, cfg.name, items)


def _refused(request: Request, exc: _Refused) -> JsonResponse:
    """400 naming every bad place; nothing of the request was stored."""
    return JsonResponse(envelope(request_id(request), 400, errors=exc.errors), status_code=400)
