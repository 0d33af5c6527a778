"""Account → API (named key pairs: create, revoke, rotate with an overlap) and the audit log.

Admins only. A new pair is shown once, on the answer to the POST that made it (``no-store``):
only its hashes are kept. Every change is written to the audit log in the same transaction.
"""

from __future__ import annotations

import re
import time
from typing import Annotated

import structlog
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy import Connection

from dispatcher.accounts.account import (
    KeyInfo,
    KeyPair,
    UnknownKey,
    create_named_key,
    list_keys,
    revoke_key,
    rotate_one_key,
)
from dispatcher.panel.web import Viewer, admin_viewer, in_db, not_found, redirect, render
from dispatcher.store import audit

router = APIRouter(prefix="/panel/account", include_in_schema=False)
log = structlog.get_logger(component="panel")
KEY_NAME = re.compile(r"^[\w .:/@()+-]{1,64}$")
# Overlaps offered when rotating (hours): long enough to deploy the new key everywhere.
OVERLAPS_H = (0, 1, 24, 72, 168)
AUDIT_PAGE = 50


def _key_page(
    request: Request,
    who: Viewer,
    keys: list[KeyInfo],
    new_pair: KeyPair | None = None,
    new_name: str = "",
    error: str | None = None,
    notice: str | None = None,
    status: int = 200,
) -> Response:
    return render(
        request,
        "keys.html",
        status=status,
        who=who,
        title="API keys",
        keys=keys,
        now=time.time(),
        new_pair=new_pair,
        new_name=new_name,
        error=error,
        notice=notice,
        overlaps=OVERLAPS_H,
        api_url=str(request.base_url).rstrip("/"),
    )


@router.get("/api")
async def keys(request: Request, revoked: str = "") -> Response:
    """The account's key pairs: name, created, last used, state."""
    who = await admin_viewer(request)
    account_id = who.user.account_id
    found = await in_db(request, lambda conn: list_keys(conn, account_id))
    notice = f"The key “{revoked[:64]}” was revoked." if revoked else None
    return _key_page(request, who, found, notice=notice)


@router.post("/api/create")
async def create(
    request: Request,
    name: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    """Issue a named pair and show it once."""
    who = await admin_viewer(request, csrf_token)
    account_id = who.user.account_id
    name = name.strip()
    if not KEY_NAME.match(name):
        found = await in_db(request, lambda conn: list_keys(conn, account_id))
        return _key_page(
            request,
            who,
            found,
            new_name=name[:64],
            error="Name the key (1-64 letters, digits, spaces or . : / @ ( ) + - _), "
            "e.g. “shop backend”.",
            status=400,
        )

    def work(conn: Connection) -> tuple[KeyPair, list[KeyInfo]]:
        now = time.time()
        pair = create_named_key(conn, account_id, name, who.actor, now)
        audit.record(conn, account_id, who.actor, "key.create", name, now=now)
        return pair, list_keys(conn, account_id)

    pair, found = await in_db(request, work, write=True)
    log.info("panel.key_created", user_id=who.user.id, account_id=account_id)
    return _key_page(request, who, found, new_pair=pair, new_name=name)


@router.post("/api/{key_id}/revoke")
async def revoke(
    request: Request, key_id: str, csrf_token: Annotated[str, Form()] = ""
) -> Response:
    """Stop a key pair now."""
    who = await admin_viewer(request, csrf_token)
    account_id = who.user.account_id
    if not key_id.isdigit() or len(key_id) > 12:
        raise not_found(who.user)

    def work(conn: Connection) -> KeyInfo | None:
        now = time.time()
        try:
            info = revoke_key(conn, account_id, int(key_id), now)
        except UnknownKey:
            return None
        audit.record(conn, account_id, who.actor, "key.revoke", info.name or f"#{info.id}", now=now)
        return info

    info = await in_db(request, work, write=True)
    if info is None:
        raise not_found(who.user)
    log.info("panel.key_revoked", user_id=who.user.id, account_id=account_id)
    return redirect("/panel/account/api?revoked=" + (info.name or f"%23{info.id}"))


@router.post("/api/{key_id}/rotate")
async def rotate(
    request: Request,
    key_id: str,
    overlap_h: Annotated[str, Form()] = "24",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    """A new pair under the same name; the old one works for the chosen overlap."""
    who = await admin_viewer(request, csrf_token)
    account_id = who.user.account_id
    if not key_id.isdigit() or len(key_id) > 12:
        raise not_found(who.user)
    hours = int(overlap_h) if overlap_h.isdigit() and int(overlap_h) in OVERLAPS_H else 24

    def work(conn: Connection) -> tuple[KeyInfo, KeyPair, list[KeyInfo]] | None:
        now = time.time()
        try:
            old, pair = rotate_one_key(conn, account_id, int(key_id), hours * 3600, who.actor, now)
        except UnknownKey:
            return None
        audit.record(
            conn,
            account_id,
            who.actor,
            "key.rotate",
            old.name or f"#{old.id}",
            f"the old pair works for {hours} more hour{'s' * (hours != 1)}",
            now=now,
        )
        return old, pair, list_keys(conn, account_id)

    done = await in_db(request, work, write=True)
    if done is None:
        raise not_found(who.user)
    old, pair, found = done
    log.info("panel.key_rotated", user_id=who.user.id, account_id=account_id)
    notice = (
        f"The old pair stops working {'now' if hours == 0 else f'in {hours} h'}: "
        "deploy the new one before then."
    )
    return _key_page(request, who, found, new_pair=pair, new_name=old.name or "", notice=notice)


@router.get("/audit")
async def audit_log(request: Request, before: str = "") -> Response:
    """Who did what in the account, newest first."""
    who = await admin_viewer(request)
    account_id = who.user.account_id
    before_id = int(before) if before.isdigit() and len(before) < 19 else None
    rows = await in_db(
        request, lambda conn: audit.entries(conn, account_id, before_id, AUDIT_PAGE + 1)
    )
    return render(
        request,
        "audit.html",
        who=who,
        title="Audit log",
        rows=rows[:AUDIT_PAGE],
        more=rows[AUDIT_PAGE - 1].id if len(rows) > AUDIT_PAGE else None,
    )
