"""``/v2.1/sms``: send, list, look up, statuses.

Longer than 400 lines on purpose: the routes of one resource, ``/v2.1/sms``, with the
send route's refusals beside it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from sqlalchemy import Connection

from dispatcher.accounts.account import Account, recheck_sender
from dispatcher.accounts.quotas import reserve_for
from dispatcher.api import metrics
from dispatcher.api.context import AccountDep, ApiContext, ContextDep, in_log, request_id
from dispatcher.api.envelope import (
    JsonResponse,
    balance_text,
    envelope,
    iso,
    links_view,
    message_view,
    new_message_view,
)
from dispatcher.api.models import Envelope, SendSmsBody
from dispatcher.api.query import direction, order_key, phones, split, unix_time
from dispatcher.contract import STATUS_CODES, Status
from dispatcher.errors import CATALOGUE, ApiError
from dispatcher.intake.submit import (
    Prepared,
    RequestRefused,
    SendRequest,
    prepare,
    unpaid_error,
)
from dispatcher.store.balances import balance_of
from dispatcher.store.db import StoreUnavailable
from dispatcher.store.links import message_links
from dispatcher.store.queries import (
    ORDER_COLUMNS,
    MessageFilter,
    get_message,
    list_messages,
    message_timeline,
)
from dispatcher.store.timeline import build_timeline

router = APIRouter(prefix="/v2.1/sms", tags=["SMS"])

# Requests this large are validated off the event loop, so OTPs are not stuck behind them.
OFFLOAD_RECIPIENTS = 100


def _declared(*codes: str) -> dict[int | str, dict[str, Any]]:
    by_status: dict[int, list[str]] = {}
    for c in codes:
        by_status.setdefault(CATALOGUE[c].status, []).append(c)
    return {
        status: {"model": Envelope, "description": "Error codes: " + ", ".join(cs)}
        for status, cs in by_status.items()
    }


AUTH_ERRORS = ("unauthorized", "rate_limited", "service_unavailable", "internal_error")
SEND_ERRORS = (
    *AUTH_ERRORS,
    "invalid_json",
    "missing_field",
    "invalid_field",
    "invalid_phone_number",
    "no_valid_recipients",
    "too_many_recipients",
    "invalid_sender",
    "empty_message",
    "message_too_long",
    "invalid_validity",
    "invalid_schedule_time",
    "invalid_type",
    "short_link_unsupported",
    "invalid_webhook_url",
    "webhook_url_forbidden",
    "webhook_endpoint_limit",
    "invalid_external_id",
    "priority_not_enabled",
    "idempotency_key_reused",
    "idempotency_key_in_flight",
    "invalid_idempotency_key",
    "invalid_campaign",
    "payload_too_large",
    "unsupported_media_type",
    "daily_cap_exceeded",
    "insufficient_balance",
    "no_price",
)
UNAVAILABLE = {"Retry-After": "5"}


@router.post(
    "",
    summary="Send an SMS to one or many recipients",
    response_model=Envelope,
    responses=_declared(*SEND_ERRORS),
)
async def send_sms(
    request: Request,
    body: SendSmsBody,
    account: AccountDep,
    ctx: ContextDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Retry safely: the same key and body "
            "return the first answer; the same key with another body is refused (422).",
        ),
    ] = None,
    campaign: Annotated[
        str | None,
        Header(
            alias="Smsdispatch-Campaign",
            description="Group several requests (e.g. one CSV upload) into one campaign in the "
            "support panel; 1-64 printable ASCII characters.",
        ),
    ] = None,
) -> JsonResponse:
    """Accept a message: it is stored durably, then queued on its lane.

    Partial success answers 200: good recipients in `data`, refused ones in `errors`.
    """
    rid = request_id(request)
    if idempotency_key is not None and not (
        0 < len(idempotency_key) <= 255
        and idempotency_key.isascii()
        and idempotency_key.isprintable()
    ):
        raise ApiError("invalid_idempotency_key", None, "Idempotency-Key", idempotency_key)
    if campaign is not None and not (
        0 < len(campaign) <= 64 and campaign.isascii() and campaign.isprintable()
    ):
        raise ApiError("invalid_campaign", None, "Smsdispatch-Campaign", campaign[:80])
    req = SendRequest(
        sender=body.sender,
        message=body.message,
        phone_numbers=body.phoneNumbers,
        validity=body.validity,
        schedule_time=body.scheduleTime,
        type=body.type,
        short_link=body.shortLink,
        webhook_url=body.webhookUrl,
        external_id=body.externalId,
        priority=body.priority,
        time_restriction=body.timeRestriction,
        time_restriction_range=body.timeRestrictionRange,
    )
    try:
        canonical = orjson.dumps(body.model_dump(), option=orjson.OPT_SORT_KEYS)
    except TypeError:  # an integer beyond 64 bits: validation below refuses it, naming it
        canonical = json.dumps(body.model_dump(), sort_keys=True).encode()
    body_hash = hashlib.sha256(canonical).hexdigest()
    now = time.time()

    def validate(acct: Account) -> Prepared:
        return prepare(
            req,
            acct,
            ctx.settings,
            now,
            idempotency_key=idempotency_key,
            body_hash=body_hash,
            campaign=campaign,
        )

    async def attempt(acct: Account) -> Prepared:
        if len(req.phone_numbers) > OFFLOAD_RECIPIENTS:
            return await asyncio.to_thread(validate, acct)
        return validate(acct)

    try:
        try:
            prepared = await attempt(account)
        except RequestRefused as exc:
            if not exc.for_sender:
                raise
            # The key cache may hold the account from before an approval: ask the log.
            held = account
            account, entry = await in_log(ctx, lambda c: recheck_sender(c, held, req.sender))
            try:
                prepared = await attempt(account)
            except RequestRefused as again:
                raise again.explained(req.sender.strip(), entry) from None
    except RequestRefused as exc:
        status = exc.errors[0].status if len(exc.errors) == 1 else 400
        if any(e.status == 403 for e in exc.errors):
            status = 403
        # Refused as a whole: every recipient not sent.
        nothing = {"sentSms": 0, "notSentSms": len(req.phone_numbers)}
        return JsonResponse(envelope(rid, status, None, exc.errors, **nothing), status_code=status)
    hook = prepared.submission.messages[0].webhook_url if prepared.submission.messages else None
    if hook is not None and ctx.webhook_targets is not None:
        await ctx.webhook_targets.admit(account.id, hook)
    # Daily cap: recipients beyond it are dropped here; what is not stored is given back.
    reserved = await reserve_for(ctx.quotas.daily, account, prepared, now) if ctx.quotas else 0
    try:
        stored = await ctx.writer.submit(prepared.submission)
    except StoreUnavailable:  # answered by the app's handler, once the reservation is back
        await _refund(ctx, account, reserved, now)
        raise
    unused = reserved if stored.refused or stored.conflict or stored.duplicate else 0
    await _refund(ctx, account, unused or len(stored.opted_out) + len(stored.unpaid), now)
    # Bulk (marketing) messages to numbers that opted out were dropped in the same transaction;
    # priority (transactional) ones never are.
    prepared.recipient_errors.extend(
        ApiError(
            "recipient_opted_out", f"{p} opted out of messages from this account", "phoneNumbers", p
        )
        for p in sorted(stored.opted_out)
    )
    # Recipients the balance could not pay for, or without a price (docs/prices.md).
    prepared.recipient_errors.extend(unpaid_error(p, code) for p, code in stored.unpaid)
    if stored.unpaid:
        metrics.record_unpaid(stored.unpaid)
    balance = balance_text(stored.balance, stored.balance_currency)
    if stored.refused:
        none_sent: dict[str, Any] = {
            "sentSms": 0,
            "notSentSms": len(req.phone_numbers),
            "accountBalance": balance,
        }
        if prepared.recipient_errors and all(
            e.code == "insufficient_balance" for e in prepared.recipient_errors
        ):
            errs = prepared.recipient_errors
            return JsonResponse(envelope(rid, 402, None, errs, **none_sent), status_code=402)
        errors = [
            *prepared.recipient_errors,
            ApiError("no_valid_recipients", None, "phoneNumbers", None),
        ]
        return JsonResponse(envelope(rid, 400, None, errors, **none_sent), status_code=400)
    if stored.conflict == "body_mismatch":
        raise ApiError("idempotency_key_reused", None, "Idempotency-Key", idempotency_key)
    if stored.conflict == "in_flight":
        raise ApiError("idempotency_key_in_flight", None, "Idempotency-Key", idempotency_key)
    if stored.duplicate:
        data = [message_view(m) for m in stored.messages]
        if ctx.settings.billing:
            balance = await in_log(ctx, lambda conn: _balance(ctx, account.id, conn))
    else:
        base = ctx.settings.short_link_base
        data = [new_message_view(m, base) for m in prepared.submission.messages]
        metrics.record_accepted(
            prepared.submission.lane, prepared.submission.messages, time.time() - now
        )
    return JsonResponse(
        envelope(
            rid,
            200,
            data,
            prepared.recipient_errors,
            sentSms=len(data),
            notSentSms=len(prepared.recipient_errors),
            duplicate=stored.duplicate,
            lane=prepared.submission.lane,
            accountBalance=balance,
        )
    )


def _balance(ctx: ApiContext, account_id: int, conn: Connection) -> str | None:
    """``meta.accountBalance`` of an answer that did not charge (listings, repeats)."""
    if not ctx.settings.billing:
        return None
    found = balance_of(conn, account_id)
    return None if found is None else balance_text(found.balance, found.currency)


async def _refund(ctx: ApiContext, account: Account, count: int, now: float) -> None:
    if ctx.quotas is not None and count:
        await ctx.quotas.daily.refund(account, count, now)


def _statuses(value: str | None) -> tuple[str, ...]:
    out: list[str] = []
    for item in split(value):
        if item.isdigit():
            out.extend(s for s, code in STATUS_CODES.items() if code == int(item))
            if not any(code == int(item) for code in STATUS_CODES.values()):
                raise ApiError("invalid_query", f"unknown status {item}", "status", item)
        else:
            try:
                out.append(Status(item.lower()))
            except ValueError:
                raise ApiError("invalid_query", f"unknown status {item}", "status", item) from None
    return tuple(out)


def _filter(
    external_id: str | None,
    phone: str | None,
    status: str | None,
    sender: str | None,
    date_from: str | None,
    date_to: str | None,
    region: str | None,
) -> MessageFilter:
    senders = split(sender)
    if len(senders) > 10:
        raise ApiError("invalid_query", "at most 10 senders", "sender", len(senders))
    return MessageFilter(
        external_id=external_id or None,
        phone_numbers=phones(phone, region),
        statuses=_statuses(status),
        senders=senders,
        date_from=unix_time(date_from, "dateFrom"),
        date_to=unix_time(date_to, "dateTo"),
    )


class ListParams:
    """Query parameters shared by the listings."""

    def __init__(
        self,
        externalId: Annotated[str | None, Query(description="Filter by externalId.")] = None,
        phoneNumber: Annotated[
            str | None,
            Query(description="Filter by recipient; comma-separated, any common spelling."),
        ] = None,
        status: Annotated[
            str | None, Query(description="Numeric v2.1 codes or our names, comma-separated.")
        ] = None,
        sender: Annotated[str | None, Query(description="Comma-separated, at most 10.")] = None,
        dateFrom: Annotated[
            str | None, Query(description="Created at or after: ISO 8601 UTC or unix seconds.")
        ] = None,
        dateTo: Annotated[
            str | None, Query(description="Created at or before: ISO 8601 UTC or unix seconds.")
        ] = None,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        orderBy: Annotated[
            str,
            Query(
                description="Sort key, in any letter case: "
                + ", ".join(f"`{k}`" for k in ORDER_COLUMNS)
                + ".",
                json_schema_extra={"examples": ["createTime"]},
            ),
        ] = "createTime",
        orderDirection: Annotated[
            str, Query(description="`ASC` or `DESC`, in any letter case.")
        ] = "DESC",
    ) -> None:
        self.raw = (externalId, phoneNumber, status, sender, dateFrom, dateTo)
        self.offset = offset
        self.limit = limit
        self.order_by = order_key(orderBy)
        self.descending = direction(orderDirection)


async def _listing(
    request: Request, account_id: int, ctx: ContextDep, params: ListParams
) -> tuple[str, list[dict[str, Any]], int, str | None]:
    flt = _filter(*params.raw, ctx.settings.default_region or None)

    def query(conn: Connection) -> tuple[list[dict[str, Any]], int, str | None]:
        rows, total = list_messages(
            conn,
            account_id,
            flt,
            params.offset,
            params.limit,
            params.order_by,
            params.descending,
        )
        return rows, total, _balance(ctx, account_id, conn)

    rows, total, balance = await in_log(ctx, query)
    rid = request_id(request)
    if not rows:
        raise ApiError("no_results", "no message matches the filters")
    return rid, rows, total, balance


async def _page(
    request: Request, account_id: int, ctx: ContextDep, params: ListParams
) -> JsonResponse:
    rid, rows, total, balance = await _listing(request, account_id, ctx, params)
    data = [message_view(r) for r in rows]
    meta: dict[str, Any] = {"total": total, "offset": params.offset, "limit": params.limit}
    return JsonResponse(envelope(rid, 200, data, accountBalance=balance, **meta))


LIST_ERRORS = (*AUTH_ERRORS, "invalid_query", "no_results")


@router.get("", summary="List messages", response_model=Envelope, responses=_declared(*LIST_ERRORS))
async def list_sms(
    request: Request,
    account: AccountDep,
    ctx: ContextDep,
    params: Annotated[ListParams, Depends()],
) -> JsonResponse:
    """Messages of your account, newest first by default (404 when nothing matches)."""
    return await _page(request, account.id, ctx, params)


@router.get(
    "/statuses",
    summary="Statuses of messages",
    response_model=Envelope,
    responses=_declared(*LIST_ERRORS),
)
async def list_statuses(
    request: Request,
    account: AccountDep,
    ctx: ContextDep,
    params: Annotated[ListParams, Depends()],
) -> JsonResponse:
    """The status of each matching message (same filters as the listing)."""
    return await _page(request, account.id, ctx, params)


@router.get(
    "/{message_id}",
    summary="One message with its timeline",
    response_model=Envelope,
    responses=_declared(*AUTH_ERRORS, "not_found"),
)
async def get_sms(
    request: Request, message_id: str, account: AccountDep, ctx: ContextDep
) -> JsonResponse:
    """A message of your account, with its recorded events (404 for any other id).

    A message sent with `shortLink` also has `shortLinks` (each URL, its short link, its
    clicks, previews by link-preview fetchers and bots, first click and expiry), `clicks` and
    `clickThroughRate` (the share of its links clicked at least once).
    """
    if len(message_id) > 64:
        raise ApiError("not_found", None, "id", message_id)

    def query(
        conn: Connection,
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]], str | None, list[dict[str, Any]]]:
        row = get_message(conn, account.id, message_id)
        if row is None:
            return None, [], None, []
        return (
            row,
            message_timeline(conn, message_id),
            _balance(ctx, account.id, conn),
            message_links(conn, message_id),
        )

    row, events, balance, links = await in_log(ctx, query)
    if row is None:
        raise ApiError("not_found", "no such message in your account", "id", message_id)
    view = message_view(row)
    view["carrier"] = {
        "connection": row["connection"],
        "messageId": row["carrier_message_id"],
        "httpStatus": row["http_status"],
        "latencyMs": row["latency_ms"],
        "attempts": row["attempts"],
    }
    view["events"] = [{**e, "at": iso(e["at"])} for e in build_timeline(row, events)]
    view.update(links_view(links, ctx.settings.short_link_base))
    return JsonResponse(envelope(request_id(request), 200, [view], accountBalance=balance))
