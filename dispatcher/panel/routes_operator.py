"""The platform operator's pages: every account (create one with its first key pair and admin,
set its limits and sender policy), the carrier connections with their breakers, and the audit
log of every account.

Operators only (a 403 page for anyone else). Sender-name decisions are in
:mod:`dispatcher.panel.routes_senders`.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Annotated

import structlog
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from redis.exceptions import RedisError
from sqlalchemy import Connection

from dispatcher.accounts.account import KeyPair, create_account_in, set_limits_in
from dispatcher.cli.connections import describe
from dispatcher.panel.sessions import SessionsUnavailable
from dispatcher.panel.web import (
    PanelError,
    Viewer,
    in_db,
    not_found,
    operator_viewer,
    redirect,
    render,
    state,
)
from dispatcher.routing import ConfigError, load
from dispatcher.routing.breaker_state import read_breakers
from dispatcher.store import accounts as stored_accounts
from dispatcher.store import admission, audit
from dispatcher.store.dashboard import per_connection
from dispatcher.store.senders import SenderPolicy, set_policy
from dispatcher.store.users import (
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    Role,
    UserExists,
    create_user,
)

router = APIRouter(prefix="/panel/operator", include_in_schema=False)
log = structlog.get_logger(component="panel")
ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$")
USERNAME = re.compile(r"^[A-Za-z0-9._@+-]{3,64}$")
AUDIT_PAGE = 50


class NameTaken(Exception):
    """An account with that name exists."""


@dataclass(frozen=True)
class Created:
    """What the create form made: shown once."""

    account: str
    pair: KeyPair
    admin: str | None


async def _page(
    request: Request,
    who: Viewer,
    *,
    created: Created | None = None,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    notice: str | None = None,
    status: int = 200,
) -> Response:
    rows = await in_db(request, lambda conn: stored_accounts.account_summaries(conn, time.time()))
    return render(
        request,
        "operator_accounts.html",
        status=status,
        who=who,
        title="Accounts",
        rows=rows,
        created=created,
        values=values or {},
        errors=errors or {},
        notice=notice,
        policies=[p.value for p in SenderPolicy],
        api_url=str(request.base_url).rstrip("/"),
    )


@router.get("/accounts")
async def account_list(request: Request, saved: str = "") -> Response:
    """Every account with its limits, policy, live keys and panel users."""
    who = await operator_viewer(request)
    return await _page(request, who, notice=f"Saved {saved[:64]}." if saved else None)


@router.post("/accounts")
async def create(
    request: Request,
    csrf_token: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    sender_policy: Annotated[str, Form()] = "registered",
    priority: Annotated[str, Form()] = "",
    admin_username: Annotated[str, Form()] = "",
    admin_password: Annotated[str, Form()] = "",
) -> Response:
    """Create an account, its first key pair (shown once) and optionally its first admin."""
    who = await operator_viewer(request, csrf_token)
    name, admin_username = name.strip()[:65], admin_username.strip()[:65]
    values = {"name": name, "admin_username": admin_username, "sender_policy": sender_policy}
    errors: dict[str, str] = {}
    if not ACCOUNT_NAME.match(name):
        errors["name"] = "2-64 letters, digits, . _ - (starting with a letter or digit)."
    if sender_policy not in {p.value for p in SenderPolicy}:
        errors["sender_policy"] = "Choose registered or open."
    if admin_username and not USERNAME.match(admin_username):
        errors["admin_username"] = "3-64 letters, digits and . _ @ + -"
    if admin_username and not MIN_PASSWORD_LENGTH <= len(admin_password) <= MAX_PASSWORD_LENGTH:
        errors["admin_password"] = (
            f"{MIN_PASSWORD_LENGTH}-{MAX_PASSWORD_LENGTH} characters; tell it to the customer "
            "over another channel."
        )
    if errors:
        return await _page(request, who, values=values, errors=errors, status=400)

    def work(conn: Connection) -> Created:
        now = time.time()
        if stored_accounts.account_id(conn, name) is not None:
            raise NameTaken(name)
        account, pair = create_account_in(
            conn, name, priority == "1", sender_policy, now, who.actor
        )
        audit.record(conn, None, who.actor, "account.create", name, f"policy {sender_policy}",
                     now=now)  # fmt: skip
        if admin_username:
            create_user(conn, account.id, admin_username, admin_password, Role.ADMIN, now)
            audit.record(conn, account.id, who.actor, "user.create", admin_username, "admin",
                         now=now)  # fmt: skip
        return Created(account.name, pair, admin_username or None)

    try:
        created = await in_db(request, work, write=True)
    except UserExists:
        errors["admin_username"] = "This username is taken."
    except NameTaken:
        errors["name"] = "An account with this name exists."
    if errors:
        return await _page(request, who, values=values, errors=errors, status=400)
    log.info("panel.account_created", user_id=who.user.id)
    return await _page(request, who, created=created)


def _limit(raw: str, kind: type[int] | type[float]) -> float | int | None:
    raw = raw.strip()
    if not raw:
        return None
    value = kind(raw)
    if not math.isfinite(value) or value < 0 or value > 1e9:  # float() reads "nan" and "inf"
        raise ValueError(raw)
    return value


@router.post("/accounts/{account_id}/limits")
async def limits(
    request: Request,
    account_id: str,
    csrf_token: Annotated[str, Form()] = "",
    api_rate_per_s: Annotated[str, Form()] = "",
    daily_cap: Annotated[str, Form()] = "",
    sender_policy: Annotated[str, Form()] = "",
    bulk_weight: Annotated[str, Form()] = "",
) -> Response:
    """Set an account's request rate, daily cap (empty: the default, 0: unlimited), policy and
    weight in the fair bulk lane (empty: unchanged; docs/campaigns.md)."""
    who = await operator_viewer(request, csrf_token)
    if not account_id.isdigit() or len(account_id) > 12:
        raise not_found(who.user)
    try:
        rate = _limit(api_rate_per_s[:20], float)
        cap = _limit(daily_cap[:20], int)
    except ValueError:
        raise PanelError(
            400,
            "Not a limit",
            "Limits are numbers of 0 or more (0: unlimited; empty: the server's default).",
            who.user,
        ) from None
    if sender_policy not in {p.value for p in SenderPolicy}:
        raise PanelError(400, "Not a policy", "Choose registered or open.", who.user)
    weight_raw = bulk_weight.strip()[:20]
    weight = int(weight_raw) if weight_raw.isdigit() else None
    if weight_raw and (weight is None or not 1 <= weight <= admission.MAX_WEIGHT):
        raise PanelError(
            400,
            "Not a weight",
            f"The bulk weight is a whole number from 1 to {admission.MAX_WEIGHT}.",
            who.user,
        )
    target = int(account_id)

    def work(conn: Connection) -> str | None:
        name = stored_accounts.account_name(conn, target)
        if name is None:
            return None
        set_limits_in(conn, target, rate, None if cap is None else int(cap))
        set_policy(conn, target, sender_policy)
        if weight is not None:
            admission.set_weight(conn, target, weight)
        detail = f"rate {rate if rate is not None else 'default'}/s, daily cap "
        detail += f"{cap if cap is not None else 'default'}, policy {sender_policy}"
        detail += f", bulk weight {weight}" if weight is not None else ""
        audit.record(conn, target, who.actor, "account.limits", str(name), detail, now=time.time())
        return str(name)

    name = await in_db(request, work, write=True)
    if name is None:
        raise not_found(who.user)
    log.info("panel.account_limits", user_id=who.user.id, account_id=target)
    return redirect(f"/panel/operator/accounts?saved={name}")


@router.get("/audit")
async def audit_all(request: Request, before: str = "") -> Response:
    """Every account's audit log (and the platform's own entries), newest first."""
    who = await operator_viewer(request)
    before_id = int(before) if before.isdigit() and len(before) < 19 else None

    def load(conn: Connection) -> tuple[list[audit.AuditEntry], dict[int, str]]:
        rows = audit.entries(conn, None, before_id, AUDIT_PAGE + 1)
        return rows, stored_accounts.account_names(conn)

    rows, names = await in_db(request, load)
    return render(
        request,
        "audit.html",
        who=who,
        title="Platform audit log",
        rows=rows[:AUDIT_PAGE],
        more=rows[AUDIT_PAGE - 1].id if len(rows) > AUDIT_PAGE else None,
        account_names=names,
        operator=True,
    )


@router.get("/connections")
async def connections(request: Request) -> Response:
    """The carrier connections (as configured, secrets only as set / not set), each with its
    circuit breaker's state and the last hour's messages by outcome."""
    who = await operator_viewer(request)
    settings = state(request).settings
    try:
        config = load(settings)
    except ConfigError as exc:
        raise PanelError(500, "Connections file invalid", str(exc), who.user) from None
    names = [c.name for c in config.connections]
    try:
        breakers = await read_breakers(state(request).redis, names)
    except RedisError as exc:
        raise SessionsUnavailable(str(exc)) from None
    now = time.time()
    traffic = await in_db(request, lambda conn: per_connection(conn, now - 3600, now))
    return render(
        request,
        "operator_connections.html",
        who=who,
        title="Connections",
        connections=[describe(c) for c in config.connections],
        breakers=breakers,
        traffic=traffic,
        breaker=config.breaker,
        source=config.source,
    )
