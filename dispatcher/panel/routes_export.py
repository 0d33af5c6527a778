"""Export of any message search as CSV: the search form's filters, every matching row (not
just the page), streamed page by page on the keyset the search uses, bounded at
:data:`EXPORT_MAX` rows, texts masked for the support role exactly as on screen."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import Engine

from dispatcher.panel.forms import parse_search
from dispatcher.panel.routes_messages import shown_body
from dispatcher.panel.web import SECURITY_HEADERS, PanelError, state, viewer
from dispatcher.panel.words import iso
from dispatcher.store.db import reading
from dispatcher.store.panel_queries import Cursor, search_inbound, search_outgoing

router = APIRouter(prefix="/panel", include_in_schema=False)
log = structlog.get_logger(component="panel")
EXPORT_MAX = 100_000  # a bigger export belongs to the API's list endpoint or a database copy
PAGE = 2000
OUT_COLUMNS = ("id", "created", "direction", "phone", "sender", "status", "lane", "parts",
               "externalId", "text")  # fmt: skip


@router.get("/messages.csv")
async def export(request: Request) -> Response:
    """The search's matches as CSV (newest first, at most :data:`EXPORT_MAX` rows)."""
    who = await viewer(request)
    settings = state(request).settings
    form = parse_search(request.query_params, settings.default_region or None)
    problems = {k: v for k, v in form.errors.items() if k != "after"}
    if problems:
        raise PanelError(400, "Fix the search first", "; ".join(problems.values()), who.user)
    engine: Engine = request.app.state.ctx.engine
    account_id = who.user.account_id
    inbound = form.filter.direction == "in"
    find = search_inbound if inbound else search_outgoing
    keywords = settings.panel_mask_keywords

    def rows() -> Iterator[str]:
        buf = io.StringIO()
        out = csv.writer(buf)
        out.writerow(OUT_COLUMNS)
        sent = 0
        cursor: Cursor | None = None
        while sent < EXPORT_MAX:
            with reading(engine) as conn:  # one short read per page: no long transaction
                page, cursor = find(
                    conn, account_id, form.filter, cursor, min(PAGE, EXPORT_MAX - sent)
                )
            for r in page:
                body = shown_body(who, r["body"], keywords)[0]
                at = r["received_at"] if inbound else r["created_at"]
                out.writerow(
                    (
                        r["id"],
                        iso(at),
                        "in" if inbound else "out",
                        r["phone"],
                        r.get("number") if inbound else r["sender"],
                        "received" if inbound else r["status"],
                        "" if inbound else r["lane"],
                        r["parts"],
                        "" if inbound else r["external_id"],
                        body,
                    )
                )
            sent += len(page)
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
            if cursor is None:
                return
        out.writerow((f"# stopped at {EXPORT_MAX} rows: narrow the search",))
        yield buf.getvalue()

    log.info("panel.export", user_id=who.user.id, account_id=account_id)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    headers = {
        **SECURITY_HEADERS,
        "Content-Disposition": f'attachment; filename="messages-{stamp}.csv"',
    }
    return StreamingResponse(rows(), media_type="text/csv; charset=utf-8", headers=headers)
