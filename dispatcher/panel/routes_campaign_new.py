"""New campaign from the browser: recipients (CSV upload or pasted numbers), a text with
``{placeholders}``, a schedule and a send window; a preview of the first messages with their
encoding and parts; then send. The rejected rows are downloadable from the campaign's page.

The preview is a draft kept in Redis for an hour under the user's id (one at a time): sending
stores exactly the previewed messages, through the same preparation and writer as the API
(:func:`dispatcher.submit.prepare_personalised`, the account's sender policy and daily cap,
opt-outs dropped in the storing transaction), with an idempotency key per batch so a double
click or a retried POST cannot send twice. Admins only.

Longer than 400 lines on purpose: one flow (form, preview, send, rejected rows) over one
draft, whose steps a reader follows top to bottom; the parsing and personalising it calls live
in their own modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import secrets
import time
from collections.abc import Iterator
from typing import Annotated, Any
from urllib.parse import quote

import orjson
import structlog
from fastapi import APIRouter, Form, Request, UploadFile
from fastapi.responses import Response, StreamingResponse
from redis.exceptions import RedisError
from sqlalchemy import Connection

from dispatcher.accounts.account import Account, load_account, recheck_sender
from dispatcher.accounts.quotas import reserve_for
from dispatcher.billing.money import currency_name, format_minor
from dispatcher.errors import ApiError
from dispatcher.intake.submit import (
    RequestRefused,
    prepare_personalised,
    sender_refusal,
    unpaid_error,
)
from dispatcher.panel.campaign_draft import (
    MAX_UPLOAD_BYTES,
    PREVIEW_ROWS,
    Draft,
    DraftError,
    Recipient,
    Rejected,
    build_draft,
    check_name,
    parse_clock,
    parse_schedule,
    start_in_window,
)
from dispatcher.panel.sessions import PREFIX, SessionsUnavailable
from dispatcher.panel.web import (
    SECURITY_HEADERS,
    PanelError,
    Viewer,
    admin_viewer,
    in_db,
    redirect,
    render,
    state,
    viewer,
)
from dispatcher.sms import InvalidSender, validate_sender
from dispatcher.store import audit
from dispatcher.store.campaigns import add_rejections, name_taken, rejections
from dispatcher.store.db import StoreUnavailable
from dispatcher.store.senders import NameState, list_names, may_send

router = APIRouter(prefix="/panel/campaigns", include_in_schema=False)
log = structlog.get_logger(component="panel")
DRAFT_TTL_S = 3600
BATCH = 10_000
SOURCE = "panel"


def _draft_key(user_id: int) -> str:
    return f"{PREFIX}draft:{user_id}"


async def _account(request: Request, account_id: int) -> Account:
    account = await in_db(request, lambda conn: load_account(conn, account_id=account_id))
    if account is None:
        raise PanelError(404, "Not found", "This account no longer exists.")
    return account


async def _form_page(
    request: Request,
    who: Viewer,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    draft: dict[str, Any] | None = None,
    status: int = 200,
    fragment: bool = False,
) -> Response:
    account_id = who.user.account_id
    names = await in_db(
        request, lambda conn: [n.name for n in list_names(conn, account_id, NameState.APPROVED)]
    )
    return render(
        request,
        "_campaign_preview.html" if fragment else "campaign_new.html",
        status=status,
        who=who,
        title="New campaign",
        values=values or {},
        errors=errors or {},
        draft=draft,
        sender_names=names,
        preview_rows=PREVIEW_ROWS,
    )


@router.get("/new")
async def new(request: Request) -> Response:
    """The empty form."""
    who = await admin_viewer(request)
    return await _form_page(request, who)


def _summary(
    draft_id: str,
    name: str,
    sender: str,
    draft: Draft,
    start: float | None,
    window: tuple[int, int] | None,
) -> dict[str, Any]:
    return {
        "id": draft_id,
        "name": name,
        "sender": sender,
        "start": start,
        "window": list(window) if window else None,
        "recipients": [[r.line, r.phone, r.text, r.encoding, r.parts] for r in draft.recipients],
        "rejected": [[r.line, r.phone, r.reason] for r in draft.rejected],
        "parts": draft.parts,
        "encodings": draft.encodings,
        "columns": draft.columns,
    }


async def _price(request: Request, account_id: int, draft: Draft, at: float) -> str | None:
    """What the draft will cost with billing on (docs/prices.md), per currency; ``None`` with
    billing off. Recipients without a price are counted: they would be refused."""
    prices = request.app.state.ctx.writer.prices
    if prices is None:
        return None

    def quote(conn: Connection) -> tuple[dict[int, int], int]:
        book = prices.get(conn)
        totals: dict[int, int] = {}
        unpriced = 0
        for r in draft.recipients:
            q = book.quote(account_id, r.phone, at)
            if q is None:
                unpriced += 1
            else:
                totals[q.currency] = totals.get(q.currency, 0) + q.price * r.parts
        return totals, unpriced

    totals, unpriced = await in_db(request, quote)
    text = " + ".join(f"{format_minor(v, c)} {currency_name(c)}" for c, v in totals.items())
    if unpriced:
        text += f"{'; ' if text else ''}no price for {unpriced} recipient(s): they would be refused"
    return text or None


@router.post("/preview")
async def preview(
    request: Request,
    csrf_token: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    sender: Annotated[str, Form()] = "",
    text: Annotated[str, Form()] = "",
    numbers: Annotated[str, Form()] = "",
    schedule: Annotated[str, Form()] = "",
    window_from: Annotated[str, Form()] = "",
    window_to: Annotated[str, Form()] = "",
    file: UploadFile | None = None,
) -> Response:
    """Check the form and show the first messages; the draft waits for "Send"."""
    who = await admin_viewer(request, csrf_token)
    fragment = request.headers.get("x-panel-fragment") == "1"
    values = {
        "name": name[:80],
        "sender": sender[:16],
        "text": text[:2000],
        "numbers": numbers[:200_000],
        "schedule": schedule[:20],
        "window_from": window_from[:5],
        "window_to": window_to[:5],
    }
    errors: dict[str, str] = {}
    data = await file.read(MAX_UPLOAD_BYTES + 1) if file is not None and file.filename else None
    settings = state(request).settings
    now = time.time()
    account = await _account(request, who.user.account_id)
    try:
        clean_name = check_name(name)
    except DraftError as exc:
        errors[exc.field] = exc.message
        clean_name = ""
    try:
        validate_sender(sender)
    except InvalidSender as exc:
        errors["sender"] = exc.message
    start: float | None = None
    window: tuple[int, int] | None = None
    try:
        start = parse_schedule(schedule, now)
        opens, closes = parse_clock(window_from, "window"), parse_clock(window_to, "window")
        if (opens is None) != (closes is None) or (opens is not None and opens == closes):
            raise DraftError("window", "Give both ends of the window, e.g. 09:00 to 20:00.")
        if opens is not None and closes is not None:
            window = (opens, closes)
            start = start_in_window(start or now, window)
    except DraftError as exc:
        errors[exc.field] = exc.message
    draft: Draft | None = None
    try:
        draft = await asyncio.to_thread(
            build_draft,
            text,
            data,
            numbers,
            settings.default_region or None,
            settings.max_parts,
        )
    except DraftError as exc:
        errors[exc.field] = exc.message
    if clean_name:
        taken = await in_db(request, lambda conn: name_taken(conn, account.id, clean_name))
        if taken:
            errors["name"] = "A campaign with this name exists: choose another name."
    if "sender" not in errors and sender.strip():
        allowed, entry = await in_db(request, lambda conn: recheck_sender(conn, account, sender))
        if not may_send(allowed.sender_policy, allowed.senders, sender):
            errors["sender"] = sender_refusal(sender.strip(), entry).message
    if errors or draft is None:
        return await _form_page(
            request, who, values=values, errors=errors, status=400, fragment=fragment
        )
    draft_id = secrets.token_urlsafe(12)
    summary = _summary(draft_id, clean_name, sender.strip(), draft, start, window)
    summary["price"] = await _price(request, account.id, draft, start or now)
    try:
        await state(request).redis.set(
            _draft_key(who.user.id), orjson.dumps(summary), ex=DRAFT_TTL_S
        )
    except RedisError as exc:
        raise SessionsUnavailable(str(exc)) from None
    return await _form_page(request, who, values=values, draft=summary, fragment=fragment)


async def _store_batch(
    request: Request,
    account: Account,
    name: str,
    sender: str,
    batch: list[Recipient],
    start: float | None,
    key: str,
) -> tuple[int, list[Rejected]]:
    """Prepare and store one batch like the API does; (messages stored, rows refused)."""
    ctx = request.app.state.ctx
    settings = state(request).settings
    now = time.time()
    by_phone = {r.phone: r for r in batch}
    try:
        prepared = prepare_personalised(
            account,
            settings,
            sender,
            [(r.phone, r.text) for r in batch],
            now,
            source=SOURCE,
            campaign=name,
            schedule_at=start,
            idempotency_key=key,
        )
    except RequestRefused as exc:
        reason = "; ".join(e.message for e in exc.errors[:2])
        return 0, [Rejected(r.line, r.phone, reason) for r in batch]
    refused: list[Rejected] = []
    reserved = 0
    if ctx.quotas is not None:
        try:
            reserved = await reserve_for(ctx.quotas.daily, account, prepared, now)
        except ApiError as exc:
            return 0, [Rejected(r.line, r.phone, exc.message) for r in batch]
    # Refused rows: invalid or unroutable numbers, and those over the daily cap (which
    # reserve_for has removed from the submission).
    for e in prepared.recipient_errors:
        r = by_phone.get(str(e.value)) if e.value is not None else None
        if r is not None:
            refused.append(Rejected(r.line, r.phone, e.message))
    try:
        stored = await ctx.writer.submit(prepared.submission)
    except StoreUnavailable:
        if reserved and ctx.quotas is not None:
            await ctx.quotas.daily.refund(account, reserved, now)
        raise PanelError(
            503, "Temporarily unavailable", "The message log does not answer. Try again soon."
        ) from None
    unused = reserved if stored.refused or stored.conflict or stored.duplicate else 0
    dropped = len(stored.opted_out) + len(stored.unpaid)
    if ctx.quotas is not None and (unused or dropped):
        await ctx.quotas.daily.refund(account, unused or dropped, now)
    refused += [
        Rejected(by_phone[p].line, p, "opted out of this account's messages")
        for p in stored.opted_out
        if p in by_phone
    ]
    # Billing on (docs/prices.md): recipients the balance could not pay for, or unpriced.
    refused += [
        Rejected(by_phone[p].line, p, unpaid_error(p, code).message)
        for p, code in stored.unpaid
        if p in by_phone
    ]
    if stored.duplicate:  # this batch was stored by an earlier click: nothing new
        return len(stored.messages), []
    return len(prepared.submission.messages), refused


@router.post("/send")
async def send(
    request: Request,
    csrf_token: Annotated[str, Form()] = "",
    draft_id: Annotated[str, Form()] = "",
) -> Response:
    """Store the previewed draft as a campaign (scheduled, or queued now) and show it."""
    who = await admin_viewer(request, csrf_token)
    panel = state(request)
    try:
        raw = await panel.redis.get(_draft_key(who.user.id))
    except RedisError as exc:
        raise SessionsUnavailable(str(exc)) from None
    summary = orjson.loads(raw) if raw else None
    if summary is None or not secrets.compare_digest(str(summary["id"]), draft_id[:64]):
        raise PanelError(
            409,
            "Preview again",
            "This preview has expired or was replaced by a newer one. Open the form, preview "
            "the campaign again and send it from there.",
            who.user,
        )
    account = await _account(request, who.user.account_id)
    name, sender, start = str(summary["name"]), str(summary["sender"]), summary["start"]
    recipients = [Recipient(*r) for r in summary["recipients"]]
    rejected = [Rejected(*r) for r in summary["rejected"]]
    stored = 0
    for i in range(0, len(recipients), BATCH):
        key = f"panel:{summary['id']}:{i // BATCH}"
        n, refused = await _store_batch(
            request, account, name, sender, recipients[i : i + BATCH], start, key
        )
        stored += n
        rejected += refused
    now = time.time()
    when = "now" if not start or start <= now + 5 else f"scheduled for {_iso(start)}"
    detail = f"{stored} messages {when}, {len(rejected)} rows rejected"

    def record(conn: Connection) -> None:
        rows = [(r.line, r.phone, r.reason) for r in sorted(rejected, key=lambda r: r.line)]
        add_rejections(conn, account.id, name, rows, now)
        audit.record(conn, account.id, who.actor, "campaign.send", name, detail, now=now)

    await in_db(request, record, write=True)
    # It expires on its own; the batches' idempotency keys stop a second send anyway.
    with contextlib.suppress(RedisError):
        await panel.redis.delete(_draft_key(who.user.id))
    log.info("panel.campaign_sent", user_id=who.user.id, account_id=account.id, messages=stored)
    return redirect("/panel/campaigns/c/" + quote(name, safe=""))


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


@router.get("/rejected.csv")
async def rejected_csv(request: Request, name: str = "") -> Response:
    """The campaign's rejected rows as CSV (line, phone, reason), streamed."""
    who = await viewer(request)
    account_id = who.user.account_id
    rows = await in_db(request, lambda conn: rejections(conn, account_id, name[:64]))

    def lines() -> Iterator[str]:
        buf = io.StringIO()
        out = csv.writer(buf)
        out.writerow(["line", "phone", "reason"])
        for row in rows:
            out.writerow(row)
            if buf.tell() > 64_000:
                yield buf.getvalue()
                buf.seek(0)
                buf.truncate()
        yield buf.getvalue()

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name[:64]) or "campaign"
    headers = {
        **SECURITY_HEADERS,
        "Content-Disposition": f'attachment; filename="{safe}-rejected.csv"',
    }
    return StreamingResponse(lines(), media_type="text/csv; charset=utf-8", headers=headers)
