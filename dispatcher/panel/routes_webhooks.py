"""Account → Webhooks: URLs (checked as everywhere), the signing secret (rotate, shown once),
"send a test event" with the receiver's answer, recent deliveries, resuming endpoints.

Admins only; every change is in the audit log (URLs by host only: paths can hold tokens).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy import Connection

from dispatcher.panel.web import PanelError, Viewer, admin_viewer, in_db, redirect, render, state
from dispatcher.store import audit, audited, webhook_settings
from dispatcher.store.accounts import account_name
from dispatcher.store.audited import WEBHOOK_VIEW_KEYS
from dispatcher.store.panel_queries import recent_deliveries
from dispatcher.store.webhooks import signing_secrets
from dispatcher.webhooks.test_event import EventAnswer, send_test_event
from dispatcher.webhooks.urls import UrlRefused, check_resolved, safe_host

router = APIRouter(prefix="/panel/account/webhooks", include_in_schema=False)
log = structlog.get_logger(component="panel")
# The form's fields: what each URL is for.
URL_FIELDS = {
    "url": "Main URL (delivery reports)",
    "secondary": "Secondary URL (when the main one fails)",
    "inbound_url": "Inbound URL (replies and incoming messages)",
    "inbound_secondary": "Inbound secondary URL",
}
OVERLAPS_H = (0, 1, 24, 72)
MAX_URL = 2048


async def _page(
    request: Request,
    who: Viewer,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    notice: str | None = None,
    secret: str | None = None,
    answer: EventAnswer | None = None,
    status: int = 200,
) -> Response:
    account_id = who.user.account_id

    def load(conn: Connection) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return webhook_settings.view(conn, account_id, time.time()), recent_deliveries(
            conn, account_id
        )

    settings, deliveries = await in_db(request, load)
    shown = (
        values
        if values is not None
        else {k: settings[v] or "" for k, v in WEBHOOK_VIEW_KEYS.items()}
    )
    return render(
        request,
        "webhooks.html",
        status=status,
        who=who,
        title="Webhooks",
        s=settings,
        values=shown,
        fields=URL_FIELDS,
        errors=errors or {},
        notice=notice,
        secret=secret,
        answer=answer,
        deliveries=deliveries,
        overlaps=OVERLAPS_H,
        suspended=[e for e in settings["endpoints"] if e["state"] != "active"],
    )


@router.get("")
async def webhooks(request: Request, saved: str = "") -> Response:
    """The account's webhook settings, endpoint health and recent deliveries."""
    who = await admin_viewer(request)
    notice = {"1": "Saved.", "resumed": "Endpoints resumed."}.get(saved)
    return await _page(request, who, notice=notice)


@router.post("")
async def save(
    request: Request,
    csrf_token: Annotated[str, Form()] = "",
    url: Annotated[str, Form()] = "",
    secondary: Annotated[str, Form()] = "",
    inbound_url: Annotated[str, Form()] = "",
    inbound_secondary: Annotated[str, Form()] = "",
    on_sent: Annotated[str, Form()] = "",
) -> Response:
    """Change the URLs (each checked as the sender checks it; nothing is saved on an error)."""
    who = await admin_viewer(request, csrf_token)
    allow_private = state(request).settings.webhook_allow_private
    raw = {"url": url, "secondary": secondary, "inbound_url": inbound_url}
    raw["inbound_secondary"] = inbound_secondary
    values = {k: v.strip()[: MAX_URL + 1] for k, v in raw.items()}
    checked: dict[str, str | None] = {}
    errors: dict[str, str] = {}
    for key, value in values.items():
        if not value:
            checked[key] = None
            continue
        try:
            checked[key] = await check_resolved(value, allow_private)
        except UrlRefused as exc:
            errors[key] = f"Not a URL we can call: {exc.reason}."
    if errors:
        return await _page(request, who, values=values, errors=errors, status=400)
    account_id = who.user.account_id

    def work(conn: Connection) -> str | None:
        return audited.set_webhooks(
            conn,
            account_id,
            checked,
            on_sent == "1",
            who.actor,
            time.time(),
            create_secret=any(checked.values()),
        )

    secret = await in_db(request, work, write=True)
    log.info("panel.webhooks_saved", user_id=who.user.id, account_id=account_id)
    if secret is not None:  # the first URL: the account's signing secret, shown this once
        return await _page(request, who, secret=secret, notice="Saved. Your signing secret:")
    return redirect("/panel/account/webhooks?saved=1")


@router.post("/rotate-secret")
async def rotate_secret(
    request: Request,
    csrf_token: Annotated[str, Form()] = "",
    overlap_h: Annotated[str, Form()] = "24",
) -> Response:
    """A new signing secret, shown once; the old one still signs for the overlap."""
    who = await admin_viewer(request, csrf_token)
    hours = int(overlap_h) if overlap_h.isdigit() and int(overlap_h) in OVERLAPS_H else 24
    account_id = who.user.account_id

    def work(conn: Connection) -> str:
        return audited.rotate_webhook_secret(conn, account_id, hours * 3600, who.actor, time.time())

    secret = await in_db(request, work, write=True)
    log.info("panel.webhook_secret_rotated", user_id=who.user.id, account_id=account_id)
    return await _page(request, who, secret=secret, notice="New signing secret issued.")


@router.post("/test")
async def test_event(
    request: Request,
    csrf_token: Annotated[str, Form()] = "",
    which: Annotated[str, Form()] = "url",
) -> Response:
    """POST a signed test event to one of the URLs and show what the receiver answered."""
    who = await admin_viewer(request, csrf_token)
    if which not in URL_FIELDS:
        which = "url"
    settings = state(request).settings
    account_id = who.user.account_id

    def load(conn: Connection) -> tuple[str | None, list[str], str]:
        view = webhook_settings.view(conn, account_id, time.time())
        secrets = signing_secrets(conn, [account_id], time.time())[account_id]
        return view[WEBHOOK_VIEW_KEYS[which]], secrets, str(account_name(conn, account_id))

    target, secrets, name = await in_db(request, load, write=True)
    if not target:
        raise PanelError(400, "No URL", "Set that URL first, then send it a test event.", who.user)
    answer = await send_test_event(
        target, secrets, name, settings.webhook_allow_private, settings.webhook_timeout_s
    )
    outcome = (
        f"answered {answer.status_code} in {answer.latency_ms:.0f} ms"
        if answer.status_code is not None and answer.latency_ms is not None
        else f"no answer: {answer.error}"
    )

    def note(conn: Connection) -> None:
        audit.record(
            conn, account_id, who.actor, "webhook.test", safe_host(target), outcome, now=time.time()
        )

    await in_db(request, note, write=True)
    log.info("panel.webhook_test", user_id=who.user.id, account_id=account_id, ok=answer.ok)
    return await _page(request, who, answer=answer)


@router.post("/resume")
async def resume(request: Request, csrf_token: Annotated[str, Form()] = "") -> Response:
    """Reactivate suspended or disabled endpoints and send again what failed because of them."""
    who = await admin_viewer(request, csrf_token)
    window_s = state(request).settings.webhook_retry_window_h * 3600
    account_id = who.user.account_id

    def work(conn: Connection) -> webhook_settings.Resumed:
        return audited.resume_webhooks(conn, account_id, window_s, who.actor, time.time())

    await in_db(request, work, write=True)
    log.info("panel.webhooks_resumed", user_id=who.user.id, account_id=account_id)
    return redirect("/panel/account/webhooks?saved=resumed")
