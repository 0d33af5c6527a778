"""Sender names: the account's names and where each stands (everyone), requesting one
(admins), and the operator's queue with approve and reject (operators, every account).

The store's functions (:mod:`dispatcher.store.senders`) are the one implementation the API,
the CLI and these pages share; decisions record ``panel:<username>`` as who decided.
"""

from __future__ import annotations

import time
from typing import Annotated

import structlog
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy import Connection

from dispatcher.panel.web import (
    PanelError,
    Viewer,
    admin_viewer,
    in_db,
    not_found,
    operator_viewer,
    redirect,
    render,
    viewer,
)
from dispatcher.sms import InvalidSender
from dispatcher.store import audit, audited
from dispatcher.store.accounts import account_names
from dispatcher.store.numbers import list_numbers
from dispatcher.store.senders import (
    NameState,
    SenderName,
    UnknownSenderName,
    approve,
    get_name,
    get_policy,
    list_names,
    reject,
)

router = APIRouter(prefix="/panel", include_in_schema=False)
log = structlog.get_logger(component="panel")
MAX_REASON = 255
DECIDED_SHOWN = 30


async def _page(
    request: Request,
    who: Viewer,
    *,
    error: str | None = None,
    asked: str = "",
    notice: str | None = None,
    status: int = 200,
) -> Response:
    account_id = who.user.account_id

    def load(conn: Connection) -> tuple[list[SenderName], list[str], str]:
        numbers = [str(n["number"]) for n in list_numbers(conn, account_id)]
        return list_names(conn, account_id), numbers, str(get_policy(conn, account_id))

    names, numbers, policy = await in_db(request, load)
    return render(
        request,
        "senders.html",
        status=status,
        who=who,
        title="Sender names",
        names=names,
        numbers=numbers,
        policy=policy,
        error=error,
        asked=asked,
        notice=notice,
    )


@router.get("/senders")
async def senders(request: Request, requested: str = "") -> Response:
    """The account's sender names with their state, its numbers and its policy."""
    who = await viewer(request)
    notice = f"“{requested[:16]}” is waiting for approval." if requested else None
    return await _page(request, who, notice=notice)


@router.post("/senders/request")
async def request_sender(
    request: Request, sender: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = ""
) -> Response:
    """Ask for a sender name (admins); an operator approves or rejects it."""
    who = await admin_viewer(request, csrf_token)
    account_id = who.user.account_id
    asked = sender[:64]

    def work(conn: Connection) -> SenderName:
        return audited.request_sender(conn, account_id, asked, who.actor, time.time())

    try:
        found = await in_db(request, work, write=True)
    except InvalidSender as exc:
        return await _page(request, who, error=exc.message, asked=asked, status=400)
    log.info("panel.sender_requested", user_id=who.user.id, account_id=account_id)
    if found.state is NameState.APPROVED:
        return await _page(request, who, notice=f"“{found.name}” is already approved.")
    return redirect("/panel/senders?requested=" + found.name)


def _account_names(conn: Connection, ids: set[int]) -> dict[int, str]:
    return account_names(conn, ids) if ids else {}


@router.get("/operator/senders")
async def queue(request: Request, done: str = "") -> Response:
    """The operator's queue: pending names of every account, oldest first, and recent
    decisions."""
    who = await operator_viewer(request)

    def load(conn: Connection) -> tuple[list[SenderName], list[SenderName], dict[int, str]]:
        pending = list_names(conn, state=NameState.PENDING)
        decided = [n for n in list_names(conn) if n.state is not NameState.PENDING]
        decided.sort(key=lambda n: n.status_at, reverse=True)
        decided = decided[:DECIDED_SHOWN]
        names = _account_names(conn, {n.account_id for n in pending + decided})
        return pending, decided, names

    pending, decided, names = await in_db(request, load)
    return render(
        request,
        "operator_senders.html",
        who=who,
        title="Sender names to approve",
        pending=pending,
        decided=decided,
        account_names=names,
        notice=done[:80] or None,
    )


async def _decide(
    request: Request, who: Viewer, name_id: str, verdict: str, reason: str = ""
) -> Response:
    if not name_id.isdigit() or len(name_id) > 12:
        raise not_found(who.user)

    def work(conn: Connection) -> SenderName | None:
        now = time.time()
        if get_name(conn, int(name_id)) is None:
            return None
        try:
            if verdict == "approve":
                found = approve(conn, int(name_id), who.actor, now)
            else:
                found = reject(conn, int(name_id), who.actor, reason, now)
        except UnknownSenderName:
            return None
        audit.record(
            conn, found.account_id, who.actor, f"sender.{verdict}", found.name, reason or None,
            now=now,
        )  # fmt: skip
        return found

    found = await in_db(request, work, write=True)
    if found is None:
        raise not_found(who.user)
    log.info("panel.sender_decided", user_id=who.user.id, verdict=verdict)
    word = "approved" if verdict == "approve" else "rejected"
    return redirect(f"/panel/operator/senders?done={found.name}+{word}")


@router.post("/operator/senders/{name_id}/approve")
async def approve_name(
    request: Request, name_id: str, csrf_token: Annotated[str, Form()] = ""
) -> Response:
    """Approve a name: a ``registered`` account may send from it at once."""
    who = await operator_viewer(request, csrf_token)
    return await _decide(request, who, name_id, "approve")


@router.post("/operator/senders/{name_id}/reject")
async def reject_name(
    request: Request,
    name_id: str,
    reason: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    """Reject a name (or withdraw its approval); the customer sees the reason."""
    who = await operator_viewer(request, csrf_token)
    if not reason.strip():
        raise PanelError(
            400, "Say why", "A rejection needs a reason: the customer sees it.", who.user
        )
    return await _decide(request, who, name_id, "reject", reason.strip()[:MAX_REASON])
