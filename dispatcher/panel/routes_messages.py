"""Message search and message detail (outgoing and inbound)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote, urlencode

import structlog
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from dispatcher.contract import Lane, Status
from dispatcher.lookup import AllLookupsFailed, LookupNotSupported, LookupResult
from dispatcher.panel.forms import FIELDS, parse_search
from dispatcher.panel.web import PanelError, Viewer, in_db, not_found, render, state, viewer
from dispatcher.panel.words import mask_codes
from dispatcher.sms import InvalidPhoneNumber
from dispatcher.store.accounts import account_name
from dispatcher.store.panel_queries import (
    inbound_detail,
    message_detail,
    search_inbound,
    search_outgoing,
)
from dispatcher.store.timeline import build_timeline

router = APIRouter(prefix="/panel", include_in_schema=False)
log = structlog.get_logger(component="panel")
PAGE_SIZE = 50
MAX_ID = 64


def shown_body(who: Viewer, body: str, keywords: str) -> tuple[str, bool]:
    """The text as this user may see it: codes masked for the support role."""
    if who.is_admin:
        return body, False
    return mask_codes(body, keywords)


@router.get("/messages")
async def search(request: Request) -> Response:
    """The search form and one page of results, newest first."""
    who = await viewer(request)
    settings = state(request).settings
    form = parse_search(request.query_params, settings.default_region or None)
    rows: list[dict[str, Any]] = []
    next_url = None
    field_errors = {k: v for k, v in form.errors.items() if k != "after"}
    if not field_errors:
        account_id = who.user.account_id
        find = search_inbound if form.filter.direction == "in" else search_outgoing
        rows, cursor = await in_db(
            request, lambda conn: find(conn, account_id, form.filter, form.after, PAGE_SIZE)
        )
        for r in rows:
            r["preview"] = shown_body(who, r["body"], settings.panel_mask_keywords)[0]
        if cursor is not None:
            query = {k: v for k, v in form.values.items() if v}
            next_url = "/panel/messages?" + urlencode({**query, "after": cursor.encode()})
    search_query = urlencode({k: v for k, v in form.values.items() if v})
    first_url = "/panel/messages?" + search_query
    return render(
        request,
        "messages.html",
        who=who,
        title="Incoming messages" if form.filter.direction == "in" else "Messages",
        form=form,
        errors=form.errors,
        rows=rows,
        next_url=next_url,
        first_url=first_url if form.after else None,
        export_url="/panel/messages.csv?" + search_query,
        statuses=[s.value for s in Status],
        lanes=[lane.value for lane in (Lane.PRIORITY, Lane.BULK)],
        fields=FIELDS,
        page_size=PAGE_SIZE,
    )


@router.get("/messages/{message_id}")
async def detail(request: Request, message_id: str) -> Response:
    """One message of the user's account; 404 for any other id (never 403: no leak)."""
    return await _detail(request, await viewer(request), message_id)


@router.post("/messages/{message_id}/lookup")
async def lookup(
    request: Request, message_id: str, csrf_token: Annotated[str, Form()] = ""
) -> Response:
    """Look the message's recipient up (validity, network, ported, reachable) and show the
    message page with the answer (CSRF-checked: a look-up may cost the operator money)."""
    who = await viewer(request)
    if not who.session.csrf_ok(csrf_token):
        raise PanelError(
            403, "Form expired", "Reload the page and submit the form again.", who.user
        )
    return await _detail(request, who, message_id, looked_up=True)


async def _lookup(
    request: Request, who: Viewer, phone: str
) -> tuple[tuple[LookupResult, bool] | None, str | None]:
    """The look-up of ``phone`` and whether it was cached, or ``None`` and what went wrong."""
    lookups = request.app.state.ctx.lookups
    if lookups is None:
        return None, "Number look-ups are not set up on this server."
    account_id = who.user.account_id
    name = await in_db(request, lambda conn: account_name(conn, account_id))
    try:
        result, cached = await lookups.lookup(phone, name)
    except LookupNotSupported:
        return None, "No carrier connection serving this number answers look-ups."
    except AllLookupsFailed:
        return None, "The carrier did not answer the look-up. Try again in a moment."
    except InvalidPhoneNumber:
        return None, "This is not a phone number that can be looked up."
    log.info("panel.number_lookup", user_id=who.user.id, account_id=account_id, cached=cached)
    return (result, cached), None


async def _detail(
    request: Request, who: Viewer, message_id: str, looked_up: bool = False
) -> Response:
    if len(message_id) > MAX_ID:
        raise not_found(who.user)
    account_id = who.user.account_id
    keywords = state(request).settings.panel_mask_keywords
    found = await in_db(request, lambda conn: message_detail(conn, account_id, message_id))
    if found is None:
        inbound = await in_db(request, lambda conn: inbound_detail(conn, account_id, message_id))
        if inbound is None:
            raise not_found(who.user)
        body, masked = shown_body(who, inbound["body"], keywords)
        return render(
            request,
            "inbound.html",
            who=who,
            title=f"Incoming message from {inbound['phone']}",
            m=inbound,
            body=body,
            masked=masked,
        )
    row = found.row
    number, lookup_error = await _lookup(request, who, row["phone"]) if looked_up else (None, None)
    body, masked = shown_body(who, row["body"], keywords)
    original = None
    if row.get("original_body") is not None:
        original, _masked = shown_body(who, row["original_body"], keywords)
    submission = found.submission or {}
    campaign_url = None
    if submission.get("campaign"):
        campaign_url = "/panel/campaigns/c/" + quote(submission["campaign"], safe="")
    elif submission.get("recipients", 0) > 1:
        campaign_url = "/panel/campaigns/s/" + submission["id"]
    return render(
        request,
        "message.html",
        who=who,
        title=f"Message to {row['phone']}",
        m=row,
        body=body,
        original=original,
        links=found.links,
        masked=masked,
        timeline=build_timeline(row, found.events),
        webhooks=found.webhooks,
        submission=submission,
        campaign_url=campaign_url,
        number=number,
        lookup_error=lookup_error,
    )
