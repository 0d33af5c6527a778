"""The operator's price lists: the platform default and each account's, with their entries,
and a form that adds an entry (or replaces the one for the same destination and date).

Operators only. Validation is the store's (:func:`dispatcher.store.prices.add_price`, the
one the CLI uses); its refusal is shown on the field it names. See docs/prices.md.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Annotated, Any
from urllib.parse import quote

import structlog
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy import Connection

from dispatcher.billing.money import MoneyError
from dispatcher.billing.money import currency as currency_of
from dispatcher.cli.prices import parse_time
from dispatcher.panel.web import Viewer, in_db, not_found, operator_viewer, redirect, render
from dispatcher.store import audited
from dispatcher.store.accounts import account_name, account_names
from dispatcher.store.prices import NewPrice, PriceListError, entries_view, list_entries

router = APIRouter(prefix="/panel/operator", include_in_schema=False)
log = structlog.get_logger(component="panel")
MAX_AHEAD_S = 10 * 366 * 86_400
FIELDS = ("destination", "price", "currency", "valid_from")


def field_of(message: str) -> str:
    """The form field a :class:`PriceListError` text names (its first word)."""
    for name in FIELDS:
        if message.startswith(name):
            return name
    return "price"


def _account_param(raw: str) -> int | None:
    """The list asked for: ``""`` the platform default, else an account id; ValueError."""
    raw = raw.strip()
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 12:
        raise ValueError(raw)
    return int(raw)


def _load(conn: Connection, account_id: int | None) -> dict[str, Any] | None:
    names = list(account_names(conn).items())
    name = None
    if account_id is not None:
        name = dict(names).get(account_id)
        if name is None:
            return None
    now = time.time()
    entries = list_entries(conn, account_id)
    # An entry is in force when it is the latest of its destination not after now.
    current: dict[str, float] = {}
    for e in entries:
        if e.valid_from <= now:
            current[e.destination] = max(current.get(e.destination, 0.0), e.valid_from)
    view = entries_view(entries)
    for row, e in zip(view, entries, strict=True):
        if e.valid_from > now:
            row["state"] = "scheduled"
        elif current.get(e.destination) == e.valid_from:
            row["state"] = "in force"
        else:
            row["state"] = "replaced"
    return {"accounts": names, "name": name, "entries": view}


async def _page(
    request: Request,
    who: Viewer,
    account_id: int | None,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    notice: str | None = None,
    status: int = 200,
) -> Response:
    data = await in_db(request, lambda conn: _load(conn, account_id))
    if data is None:
        raise not_found(who.user)
    return render(
        request,
        "operator_prices.html",
        status=status,
        who=who,
        title="Price lists",
        account_id=account_id,
        values=values or {},
        errors=errors or {},
        notice=notice,
        billing=request.app.state.panel.settings.billing,
        **data,
    )


@router.get("/prices")
async def price_list(request: Request, account: str = "", saved: str = "") -> Response:
    """One price list (``account`` empty: the platform default) with every dated entry."""
    who = await operator_viewer(request)
    try:
        account_id = _account_param(account)
    except ValueError:
        raise not_found(who.user) from None
    notice = f"Saved the price for {saved[:20]}." if saved else None
    return await _page(request, who, account_id, notice=notice)


@router.post("/prices")
async def set_price(
    request: Request,
    csrf_token: Annotated[str, Form()] = "",
    account: Annotated[str, Form()] = "",
    destination: Annotated[str, Form()] = "",
    price: Annotated[str, Form()] = "",
    currency: Annotated[str, Form()] = "",
    valid_from: Annotated[str, Form()] = "",
) -> Response:
    """Add an entry to a list, or replace the one of the same destination and date."""
    who = await operator_viewer(request, csrf_token)
    try:
        account_id = _account_param(account)
    except ValueError:
        raise not_found(who.user) from None
    values = {
        "destination": destination.strip()[:20],
        "price": price.strip()[:24],
        "currency": currency.strip()[:8],
        "valid_from": valid_from.strip()[:40],
    }
    errors: dict[str, str] = {}
    for name in ("destination", "price", "currency"):
        if not values[name]:
            errors[name] = "Required."
    if values["currency"]:
        try:  # the store would name the price for an unknown currency: name the right field
            currency_of(values["currency"])
        except MoneyError as exc:
            errors["currency"] = str(exc)
    start: float | None = None
    if values["valid_from"]:
        try:
            start = parse_time(values["valid_from"])
        except argparse.ArgumentTypeError:
            start = None
        if start is None or not math.isfinite(start) or start > time.time() + MAX_AHEAD_S:
            errors["valid_from"] = (
                "Write a date (2027-01-01) or a UTC time (2027-01-01T12:00), at most 10 years "
                "ahead; empty: now."
            )
    if errors:
        return await _page(request, who, account_id, values=values, errors=errors, status=400)
    new = NewPrice(values["destination"], values["price"], values["currency"], start)

    def work(conn: Connection) -> str | None:
        target = None
        if account_id is not None:
            target = account_name(conn, account_id)
            if target is None:
                return None
        entry = audited.add_price(conn, account_id, target, new, who.actor, time.time())
        return entry.destination

    try:
        saved = await in_db(request, work, write=True)
    except PriceListError as exc:
        errors[field_of(str(exc))] = str(exc)
        return await _page(request, who, account_id, values=values, errors=errors, status=400)
    if saved is None:
        raise not_found(who.user)
    log.info("panel.price_set", user_id=who.user.id, account_id=account_id)
    query = f"account={account_id}&" if account_id is not None else ""
    return redirect(f"/panel/operator/prices?{query}saved={quote(saved)}")
