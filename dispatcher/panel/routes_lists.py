"""Campaigns (with counts per status and progress) and the suppression list."""

from __future__ import annotations

import time
from typing import Annotated
from urllib.parse import quote, urlencode

import structlog
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy import Connection

from dispatcher.panel import charts
from dispatcher.panel.forms import phone_to_e164
from dispatcher.panel.web import (
    PanelError,
    admin_viewer,
    in_db,
    not_found,
    redirect,
    render,
    state,
    viewer,
)
from dispatcher.store import audited, control
from dispatcher.store.campaigns import count_rejections
from dispatcher.store.dashboard import campaign_curve
from dispatcher.store.panel_queries import (
    SearchFilter,
    campaign,
    list_campaigns,
    search_outgoing,
)
from dispatcher.store.suppressions import list_suppressions

router = APIRouter(prefix="/panel", include_in_schema=False)
log = structlog.get_logger(component="panel")
PAGE_SIZE = 25
MAX_PAGE = 10_000


def _page_number(raw: str | None) -> int:
    return int(raw) if raw and raw.isdigit() and 0 < int(raw) <= MAX_PAGE else 1


@router.get("/campaigns")
async def campaigns(request: Request, page: str | None = None) -> Response:
    """The account's campaigns, newest first."""
    who = await viewer(request)
    n = _page_number(page)
    account_id = who.user.account_id
    found, more = await in_db(
        request, lambda conn: list_campaigns(conn, account_id, (n - 1) * PAGE_SIZE, PAGE_SIZE)
    )
    return render(
        request,
        "campaigns.html",
        who=who,
        title="Campaigns",
        campaigns=found,
        page=n,
        more=more,
        quote=quote,
    )


CONTROL_DONE = {
    "pause": "Paused: its unsent messages wait until you resume it.",
    "resume": "Resumed: its messages are being sent again.",
    "cancel": "Cancelled: its unsent messages will not be sent.",
}


@router.post("/campaigns/control")
async def campaign_control(
    request: Request,
    name: Annotated[str, Form()] = "",
    action: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    """Pause, resume or cancel a named campaign (admins; docs/campaigns.md)."""
    who = await admin_viewer(request, csrf_token)
    if action not in CONTROL_DONE or not 0 < len(name) <= 64:
        raise not_found(who.user)
    account_id = who.user.account_id
    change = {
        "pause": control.pause_campaign,
        "resume": control.resume_campaign,
        "cancel": control.cancel_campaign,
    }[action]
    page = "/panel/campaigns/c/" + quote(name, safe="")
    try:
        done = await in_db(
            request,
            lambda conn: change(conn, account_id, name, who.actor, time.time()),
            write=True,
        )
    except control.ControlRefused as exc:
        if exc.code == "campaign_not_found":
            raise not_found(who.user) from None
        return redirect(page + "?" + urlencode({"refused": exc.message}))
    log.info("panel.campaign_control", user_id=who.user.id, action=action, moved=done.changed)
    return redirect(page + "?" + urlencode({"done": action}))


@router.get("/campaigns/{kind}/{key:path}")
async def campaign_detail(
    request: Request, kind: str, key: str, done: str = "", refused: str = ""
) -> Response:
    """One campaign: counts per status, progress, its control state and its newest messages."""
    who = await viewer(request)
    if kind not in ("c", "s") or not 0 < len(key) <= 64:
        raise not_found(who.user)
    account_id = who.user.account_id
    found = await in_db(request, lambda conn: campaign(conn, account_id, kind, key))
    if found is None:
        raise not_found(who.user)
    flt = SearchFilter(submission_ids=tuple(found.submission_ids))
    rows, cursor = await in_db(
        request, lambda conn: search_outgoing(conn, account_id, flt, None, 50)
    )
    curve = await in_db(
        request, lambda conn: campaign_curve(conn, account_id, found.submission_ids)
    )
    chart = None
    if curve:
        step = curve[-1][0] - curve[0][0]
        fmt = "%H:%M:%S" if step < 600 else "%H:%M" if step < 86400 else "%d %b %H:%M"
        chart = charts.lines(
            "Campaign progress",
            [time.strftime(fmt, time.gmtime(t)) for t, _, _ in curve],
            {
                "past the carrier": [float(p) for _, p, _ in curve],
                "final": [float(f) for _, _, f in curve],
            },
            "messages",
            y_max=charts.nice_max(float(max(found.total, 1))),
        )
    rejected = 0
    run_state = control.RUNNING
    if kind == "c":
        rejected = await in_db(request, lambda conn: count_rejections(conn, account_id, key))
        run_state = await in_db(request, lambda conn: control.campaign_state(conn, account_id, key))
    return render(
        request,
        "campaign.html",
        who=who,
        title=f"Campaign {key}" if kind == "c" else "Bulk send",
        c=found,
        rows=rows,
        more=cursor is not None,
        rejected=rejected,
        chart=chart,
        rejected_url="/panel/campaigns/rejected.csv?" + urlencode({"name": key}),
        run_state=run_state,
        notice=CONTROL_DONE.get(done),
        refused=refused[:200],
    )


@router.get("/suppressions")
async def suppressions(
    request: Request, phone: str = "", page: str | None = None, removed: str = ""
) -> Response:
    """Numbers that opted out of the account's bulk messages."""
    who = await viewer(request)
    n = _page_number(page)
    error = None
    phones: tuple[str, ...] = ()
    if phone.strip():
        try:
            phones = (phone_to_e164(phone[:64], state(request).settings.default_region or None),)
        except ValueError as exc:
            error = f"Not a phone number we can read ({exc})."
    rows: list[dict[str, object]] = []
    total = 0
    if error is None:
        account_id = who.user.account_id
        rows, total = await in_db(
            request,
            lambda conn: list_suppressions(
                conn, account_id, (n - 1) * PAGE_SIZE, PAGE_SIZE, phones
            ),
        )
    query = {"phone": phone} if phone else {}
    return render(
        request,
        "suppressions.html",
        who=who,
        title="Suppression list",
        rows=rows,
        total=total,
        page=n,
        more=n * PAGE_SIZE < total,
        phone=phone[:64],
        error=error,
        removed=removed[:32],
        page_query=urlencode(query),
    )


@router.post("/suppressions/remove")
async def remove(
    request: Request,
    phone: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    """Take a number off the list (admin only, CSRF-checked)."""
    who = await viewer(request)
    if not who.session.csrf_ok(csrf_token):
        raise PanelError(
            403, "Form expired", "Reload the page and submit the form again.", who.user
        )
    if not who.is_admin:
        raise PanelError(
            403, "Admins only", "Only an admin of this account can remove numbers.", who.user
        )
    account_id = who.user.account_id
    target = phone.strip()[:32]

    def work(conn: Connection) -> bool:
        removed = audited.remove_suppression(conn, account_id, target, who.actor, time.time())
        return removed is not None

    done = await in_db(request, work, write=True)
    if not done:
        raise not_found(who.user)
    log.info("panel.suppression_removed", user_id=who.user.id, account_id=account_id)
    return redirect("/panel/suppressions?" + urlencode({"removed": target}))
