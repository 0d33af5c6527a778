"""Message search and message detail (outgoing and inbound)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from dispatcher.contract import Lane, Status
from dispatcher.panel.forms import FIELDS, parse_search
from dispatcher.panel.web import Viewer, in_db, not_found, render, state, viewer
from dispatcher.panel.words import mask_codes
from dispatcher.store.panel_queries import (
    inbound_detail,
    message_detail,
    search_inbound,
    search_outgoing,
)
from dispatcher.timeline import build_timeline

router = APIRouter(prefix="/panel", include_in_schema=False)
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
    first_url = "/panel/messages?" + urlencode({k: v for k, v in form.values.items() if v})
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
        statuses=[s.value for s in Status],
        lanes=[lane.value for lane in (Lane.PRIORITY, Lane.BULK)],
        fields=FIELDS,
        page_size=PAGE_SIZE,
    )


@router.get("/messages/{message_id}")
async def detail(request: Request, message_id: str) -> Response:
    """One message of the user's account; 404 for any other id (never 403: no leak)."""
    who = await viewer(request)
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
    body, masked = shown_body(who, row["body"], keywords)
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
        masked=masked,
        timeline=build_timeline(row, found.events),
        webhooks=found.webhooks,
        submission=submission,
        campaign_url=campaign_url,
    )
