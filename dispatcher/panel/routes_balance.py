"""Balances in the panel: the account's own page (balance, credit limit, the ledger, usage
per day and country with its CSV) for every role, and the operator's page of any account
with its top-up, adjustment and limits forms.

Every change goes through :mod:`dispatcher.store.balances` (a ledger row each, in the same
transaction as the balance) and adds an audit row. See docs/prices.md.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy import Connection

from dispatcher.billing.money import MoneyError, currency, to_minor
from dispatcher.panel.billing_view import (
    RangeError,
    customer_usage,
    load_balance,
    usage_range,
    usage_view,
)
from dispatcher.panel.web import (
    PanelError,
    Viewer,
    in_db,
    not_found,
    operator_viewer,
    redirect,
    render,
    viewer,
)
from dispatcher.store import audited
from dispatcher.store.accounts import account_name
from dispatcher.store.balances import BalanceError, Keep
from dispatcher.store.usage import usage_csv

router = APIRouter(prefix="/panel", include_in_schema=False)
log = structlog.get_logger(component="panel")
CSV_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


def _before(raw: str) -> int | None:
    return int(raw) if raw.isdigit() and len(raw) < 19 else None


# -- the account's own page ----------------------------------------------------------------------


@router.get("/balance")
async def own_balance(
    request: Request, before: str = "", date_from: str = "", date_to: str = ""
) -> Response:
    """The account's balance, its ledger (paged) and its usage per day and country."""
    who = await viewer(request)
    account_id = who.user.account_id
    errors: dict[str, str] = {}
    try:
        first, last = usage_range(date_from, date_to)
    except RangeError as exc:
        errors[exc.field] = str(exc)
        first, last = usage_range("", "")

    def load(conn: Connection) -> dict[str, Any]:
        data = load_balance(conn, account_id, _before(before))
        data["usage"] = usage_view(customer_usage(conn, account_id, first, last))
        return data

    data = await in_db(request, load)
    return render(
        request,
        "balance.html",
        status=400 if errors else 200,
        who=who,
        title="Balance and usage",
        operator_view=False,
        errors=errors,
        range_from=date_from[:10] if errors else first.isoformat(),
        range_to=date_to[:10] if errors else last.isoformat(),
        csv_query=f"date_from={first.isoformat()}&date_to={last.isoformat()}",
        billing=request.app.state.panel.settings.billing,
        **data,
    )


@router.get("/balance/usage.csv")
async def own_usage_csv(request: Request, date_from: str = "", date_to: str = "") -> Response:
    """The usage table as the CLI's CSV (``smsdispatch usage``), without the operator's
    columns' contents (connection, carrier cost, margin are left empty)."""
    who = await viewer(request)
    try:
        first, last = usage_range(date_from, date_to)
    except RangeError as exc:
        raise PanelError(400, "Not a date range", f"{exc.field}: {exc}", who.user) from None
    rows = await in_db(request, lambda c: customer_usage(c, who.user.account_id, first, last))
    name = f"usage-{first.isoformat()}-{last.isoformat()}.csv"
    return Response(
        usage_csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={**CSV_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'},
    )


# -- the operator's page of an account -----------------------------------------------------------


def _account_id(who: Viewer, raw: str) -> int:
    if not raw.isdigit() or len(raw) > 12:
        raise not_found(who.user)
    return int(raw)


async def _operator_page(
    request: Request,
    who: Viewer,
    account_id: int,
    *,
    before: int | None = None,
    form: str = "",
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    notice: str | None = None,
    status: int = 200,
) -> Response:
    def load(conn: Connection) -> dict[str, Any] | None:
        name = account_name(conn, account_id)
        if name is None:
            return None
        data = load_balance(conn, account_id, before)
        data["account_name"] = str(name)
        return data

    data = await in_db(request, load)
    if data is None:
        raise not_found(who.user)
    balance = data["balance"]
    return render(
        request,
        "balance.html",
        status=status,
        who=who,
        title=f"Balance of {data['account_name']}",
        operator_view=True,
        account_id=account_id,
        form=form,
        values=values or {},
        errors=errors or {},
        notice=notice,
        default_currency=balance["currency"] if balance else "",
        billing=request.app.state.panel.settings.billing,
        **data,
    )


@router.get("/operator/accounts/{account_id}/balance")
async def operator_balance(
    request: Request, account_id: str, before: str = "", saved: str = ""
) -> Response:
    """An account's balance and ledger, with the operator's forms."""
    who = await operator_viewer(request)
    notice = {"topup": "Topped up.", "adjustment": "Adjusted.", "limits": "Limits saved."}
    return await _operator_page(
        request,
        who,
        _account_id(who, account_id),
        before=_before(before),
        notice=notice.get(saved),
    )


async def _account_name(request: Request, who: Viewer, account_id: int) -> str:
    name = await in_db(request, lambda c: account_name(c, account_id))
    if name is None:
        raise not_found(who.user)
    return str(name)


async def _post_money(
    request: Request,
    who: Viewer,
    account_id: int,
    kind: str,
    values: dict[str, str],
) -> Response:
    """A top-up or an adjustment: one ledger row and one audit row, in one transaction."""
    name = await _account_name(request, who, account_id)
    form = "topup" if kind == "topup" else "adjust"
    errors: dict[str, str] = {}
    cur = None
    try:
        cur = currency(values["currency"])
    except MoneyError as exc:
        errors["currency"] = str(exc)
    amount = 0
    if cur is not None:
        try:
            amount = to_minor(values["amount"], cur, allow_negative=kind == "adjustment")
        except MoneyError as exc:
            errors["amount"] = str(exc)
        if not errors and kind == "topup" and amount <= 0:
            errors["amount"] = "A top-up is positive (use an adjustment to take money)."
        if not errors and kind == "adjustment" and amount == 0:
            errors["amount"] = "An adjustment is not zero."
    if kind == "adjustment" and not values["note"]:
        errors["note"] = "Say why: the customer sees it in the ledger."
    if errors or cur is None:
        return await _operator_page(
            request, who, account_id, form=form, values=values, errors=errors, status=400
        )
    numeric, note = cur.numeric, values["note"] or None

    def work(conn: Connection) -> int:
        return audited.post_balance(
            conn, account_id, name, kind, amount, numeric, who.actor, note, time.time()
        )

    try:
        await in_db(request, work, write=True)
    except BalanceError as exc:
        text = str(exc)
        errors["currency" if text.startswith("currency") else "amount"] = text
        return await _operator_page(
            request, who, account_id, form=form, values=values, errors=errors, status=400
        )
    log.info("panel.balance_" + kind, user_id=who.user.id, account_id=account_id)
    return redirect(f"/panel/operator/accounts/{account_id}/balance?saved={kind}")


def _limit_value(raw: str, cur: Any, off_word: str) -> int | Keep | None:
    """Empty: keep; ``off_word``: none; else an amount of 0 or more (MoneyError)."""
    if not raw:
        return Keep.KEEP
    if raw.lower() == off_word:
        return None
    return to_minor(raw, cur)


@router.post("/operator/accounts/{account_id}/balance/limits")
async def limits(
    request: Request,
    account_id: str,
    csrf_token: Annotated[str, Form()] = "",
    currency_code: Annotated[str, Form(alias="currency")] = "",
    credit_limit: Annotated[str, Form()] = "",
    low_balance: Annotated[str, Form()] = "",
) -> Response:
    """Set the credit limit (``unlimited``: postpaid) and the low-balance level (``off``)."""
    who = await operator_viewer(request, csrf_token)
    target = _account_id(who, account_id)
    values = {"currency": currency_code.strip()[:8], "credit_limit": credit_limit.strip()[:24],
              "low_balance": low_balance.strip()[:24]}  # fmt: skip
    name = await _account_name(request, who, target)
    errors: dict[str, str] = {}
    credit: int | Keep | None = Keep.KEEP
    low: int | Keep | None = Keep.KEEP
    try:
        cur = currency(values["currency"])
    except MoneyError as exc:
        errors["currency"] = str(exc)
    else:
        for field, off in (("credit_limit", "unlimited"), ("low_balance", "off")):
            try:
                value = _limit_value(values[field], cur, off)
            except MoneyError as exc:
                errors[field] = str(exc)
                continue
            if field == "credit_limit":
                credit = value
            else:
                low = value
    if errors:
        return await _operator_page(
            request, who, target, form="limits", values=values, errors=errors, status=400
        )

    def work(conn: Connection) -> None:
        audited.set_balance_limits(
            conn,
            target,
            name,
            cur.numeric,
            who.actor,
            time.time(),
            credit_limit=credit,
            low_balance=low,
        )

    try:
        await in_db(request, work, write=True)
    except BalanceError as exc:
        text = str(exc)
        errors["currency" if text.startswith("currency") else "credit_limit"] = text
        return await _operator_page(
            request, who, target, form="limits", values=values, errors=errors, status=400
        )
    log.info("panel.balance_limits", user_id=who.user.id, account_id=target)
    return redirect(f"/panel/operator/accounts/{target}/balance?saved=limits")


MONEY_ACTIONS = {"topup": "topup", "adjust": "adjustment"}  # path → ledger kind


@router.post("/operator/accounts/{account_id}/balance/{action}")
async def money(
    request: Request,
    account_id: str,
    action: str,
    csrf_token: Annotated[str, Form()] = "",
    amount: Annotated[str, Form()] = "",
    currency_code: Annotated[str, Form(alias="currency")] = "",
    note: Annotated[str, Form()] = "",
) -> Response:
    """``topup``: add money (a ``topup`` ledger row); ``adjust``: correct the balance either
    way, with a note (an ``adjustment`` row)."""
    who = await operator_viewer(request, csrf_token)
    kind = MONEY_ACTIONS.get(action)
    if kind is None:
        raise not_found(who.user)
    values = {"amount": amount.strip()[:24], "currency": currency_code.strip()[:8],
              "note": note.strip()[:255]}  # fmt: skip
    return await _post_money(request, who, _account_id(who, account_id), kind, values)
