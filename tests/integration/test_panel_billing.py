"""Prices, balances and usage in the panel, over real HTTP on a real stack (database, Redis,
API process with billing on): the operator's price lists (validation shown on the field,
replace, scheduled entries), top-ups, adjustments and limits (a ledger row and an audit row
each), and the account's own page (balance, ledger paged, usage per day and country, CSV)
for admin and support, isolated per account. The role walk of these routes is in
``test_panel_workspace.py``.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from dispatcher.store.audit import entries
from dispatcher.store.balances import balance_of, ledger_rows, post, reconcile
from dispatcher.store.prices import NewPrice, add_price, list_entries
from dispatcher.store.usage import CSV_HEADER
from tests.browser.panel_helpers import PanelClient, csrf_of, logged_in, make_user
from tests.support.stack import ApiClient, Stack, running_stack, wait_until

pytestmark = pytest.mark.integration
PLN = 985


@dataclass
class World:
    stack: Stack
    a: ApiClient
    b: ApiClient
    support_a: PanelClient
    admin_a: PanelClient
    admin_b: PanelClient
    operator: PanelClient
    op_name: str


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with running_stack(workers={}, scheduler=False, billing=True, prices_reload_s=0.2) as s:
        a = s.account("pb-a")
        b = s.account("pb-b")
        platform = s.account("pb-platform")
        op_name = make_user(s, platform.account_id, "operator")
        yield World(
            s,
            a,
            b,
            logged_in(s, make_user(s, a.account_id, "support")),
            logged_in(s, make_user(s, a.account_id, "admin")),
            logged_in(s, make_user(s, b.account_id, "admin")),
            logged_in(s, op_name),
            op_name,
        )


def _error(page: str, form: str, field: str) -> str:
    """The text of a field's error on a page (asserting there is one)."""
    found = re.search(rf'id="{form}-{field}-error">([^<]*)<', page)
    assert found, f"no error on {form}-{field}"
    return found.group(1)


def test_operator_price_lists_validate_replace_and_schedule(world: World) -> None:
    op, stack = world.operator, world.stack
    page = op.get("/panel/operator/prices")
    assert page.status_code == 200 and "Platform default prices" in page.text
    token = csrf_of(page.text)

    def put(**form: str) -> tuple[int, str]:
        r = op.post("/panel/operator/prices", csrf_token=token, **form)
        return r.status_code, r.text

    code, text = put(destination="US", price="0.07", currency="PLN")
    assert code == 400 and "shared by several countries" in _error(text, "price", "destination")
    code, text = put(destination="PL", price="0.045", currency="PLN")
    assert code == 400 and "more than 2 decimals" in _error(text, "price", "price")
    assert 'value="0.045"' in text  # what was typed stays in the form
    code, text = put(destination="PL", price="0.07", currency="XYZ")
    assert code == 400 and "unknown currency" in _error(text, "price", "currency")
    code, text = put(destination="PL", price="0.07", currency="PLN", valid_from="soon")
    assert code == 400 and "2027-01-01" in _error(text, "price", "valid_from")
    code, text = put(destination="PL", price="0.07", currency="PLN", valid_from="2020-01-01")
    assert code == 400 and "in the past" in _error(text, "price", "valid_from")
    code, text = put(destination="", price="", currency="PLN")
    assert code == 400 and _error(text, "price", "destination") == "Required."
    engine = stack.db()
    with engine.connect() as conn:
        assert list_entries(conn, None) == []  # nothing refused was stored

    r = op.post(
        "/panel/operator/prices", csrf_token=token, destination="PL", price="0.07", currency="PLN"
    )
    assert r.status_code == 303 and r.headers["location"].startswith("/panel/operator/prices?")
    code, text = put(destination="+49", price="0.05", currency="EUR")
    assert code == 400 and "this price list is in PLN" in _error(text, "price", "currency")

    # An account's own list: a price now, a change scheduled, then the change replaced.
    a = str(world.a.account_id)
    for price, start in (("0.05", ""), ("0.04", "2030-01-01"), ("0.03", "2030-01-01")):
        r = op.post(
            "/panel/operator/prices", csrf_token=token, account=a, destination="+48501",
            price=price, currency="PLN", valid_from=start,
        )  # fmt: skip
        assert r.status_code == 303, r.text
    with engine.connect() as conn:
        own = list_entries(conn, world.a.account_id)
        default = list_entries(conn, None)
        log = entries(conn, world.a.account_id, None, 50)
    engine.dispose()
    assert [(e.destination, e.price) for e in own] == [("+48501", 5), ("+48501", 3)]
    assert [(e.destination, e.price, e.currency) for e in default] == [("+48", 7, PLN)]
    listing = op.get("/panel/operator/prices", account=a).text
    assert "Prices of pb-a" in listing
    assert listing.count(">in force<") == 1 and listing.count(">scheduled<") == 1
    sets = [e for e in log if e.action == "price.set"]
    assert len(sets) == 3 and all(e.actor == f"panel:{world.op_name}" for e in sets)
    assert "platform" in op.get("/panel/operator/audit").text
    assert op.get("/panel/operator/prices", account="999999").status_code == 404
    bad = op.post("/panel/operator/prices", csrf_token=token, account="999999",
                  destination="PL", price="0.07", currency="PLN")  # fmt: skip
    assert bad.status_code == 404
    forged = op.post("/panel/operator/prices", csrf_token="forged", destination="PL",
                     price="0.01", currency="PLN")  # fmt: skip
    assert forged.status_code == 403
    assert world.admin_a.get("/panel/operator/prices").status_code == 403


def test_operator_tops_up_adjusts_and_sets_limits(world: World) -> None:
    op, stack = world.operator, world.stack
    acct = world.b.account_id
    base = f"/panel/operator/accounts/{acct}/balance"
    page = op.get(base)
    assert page.status_code == 200 and 'id="balance-none"' in page.text
    token = csrf_of(page.text)

    def form(action: str, **data: str) -> tuple[int, str]:
        r = op.post(f"{base}/{action}", csrf_token=token, **data)
        return r.status_code, r.text

    code, text = form("topup", amount="ten", currency="PLN")
    assert code == 400 and "not an amount" in _error(text, "bal-topup", "amount")
    code, text = form("topup", amount="-5.00", currency="PLN")
    assert code == 400 and "negative" in _error(text, "bal-topup", "amount")
    code, text = form("topup", amount="5.001", currency="PLN")
    assert code == 400 and "decimals" in _error(text, "bal-topup", "amount")
    code, text = form("topup", amount="5.00", currency="")
    assert code == 400 and "currency" in _error(text, "bal-topup", "currency")
    assert form("topup", amount="10.00", currency="PLN", note="invoice 7")[0] == 303
    code, text = form("topup", amount="1.00", currency="EUR")
    assert code == 400 and "balance is in PLN" in _error(text, "bal-topup", "currency")
    code, text = form("adjust", amount="-2.50", currency="PLN", note="")
    assert code == 400 and "Say why" in _error(text, "bal-adjust", "note")
    code, text = form("adjust", amount="0", currency="PLN", note="nothing")
    assert code == 400 and "not zero" in _error(text, "bal-adjust", "amount")
    assert form("adjust", amount="-2.50", currency="PLN", note="outage credit reversed")[0] == 303
    code, text = form("limits", currency="PLN", credit_limit="lots", low_balance="")
    assert code == 400 and "not an amount" in _error(text, "bal-limits", "credit_limit")
    code, text = form("limits", currency="PLN", credit_limit="", low_balance="-1")
    assert code == 400 and "negative" in _error(text, "bal-limits", "low_balance")
    assert form("limits", currency="PLN", credit_limit="5.00", low_balance="3.00")[0] == 303

    shown = op.get(base).text
    assert 'id="balance-amount">7.50 PLN<' in shown
    assert "12.50 PLN" in shown  # available: 7.50 + credit 5.00
    assert "outage credit reversed" in shown and "invoice 7" in shown
    engine = stack.db()
    with engine.connect() as conn:
        b = balance_of(conn, acct)
        rows = ledger_rows(conn, acct, 10)
        log = entries(conn, acct, None, 50)
        problems = reconcile(conn, acct)
    assert b is not None and (b.balance, b.credit_limit, b.low_balance) == (750, 500, 300)
    assert [(r["kind"], r["amount"]) for r in rows] == [("adjustment", -250), ("topup", 1000)]
    assert {r["actor"] for r in rows} == {f"panel:{world.op_name}"}
    actions = [e.action for e in log]
    assert actions.count("balance.topup") == 1 and actions.count("balance.adjust") == 1
    assert actions.count("balance.limits") == 1
    assert problems == []
    # "unlimited": postpaid; an empty field keeps what is set.
    assert form("limits", currency="PLN", credit_limit="unlimited", low_balance="")[0] == 303
    with engine.connect() as conn:
        b = balance_of(conn, acct)
    engine.dispose()
    assert b is not None and b.credit_limit is None and b.low_balance == 300
    assert op.get("/panel/operator/accounts/999999/balance").status_code == 404
    assert form_missing(op, token) == 404
    assert form("withdraw", amount="1.00", currency="PLN")[0] == 404  # not an action
    # The customer sees the operator's work on its own page.
    own = world.admin_b.get("/panel/balance").text
    assert 'id="balance-amount">7.50 PLN<' in own and "unlimited" in own


def form_missing(op: PanelClient, token: str) -> int:
    r = op.post(
        "/panel/operator/accounts/999999/balance/topup",
        csrf_token=token,
        amount="1.00",
        currency="PLN",
    )
    return r.status_code


def test_the_account_sees_its_balance_ledger_and_usage(world: World) -> None:
    stack = world.stack
    c = stack.account("pb-c")
    admin = logged_in(stack, make_user(stack, c.account_id, "admin"))
    support = logged_in(stack, make_user(stack, c.account_id, "support"))
    engine = stack.db()
    with engine.begin() as conn:
        add_price(conn, c.account_id, NewPrice("PL", "0.07", "PLN"), "test")
        add_price(conn, c.account_id, NewPrice("+48501", "0.05", "PLN"), "test")
        post(conn, c.account_id, "topup", 1000, PLN, "test")
    engine.dispose()
    body = {"sender": "ACME", "message": "hi", "phoneNumbers": ["+48501000001", "+48600000002"]}
    wait_until(lambda: c.send(body).status_code == 200, 20, what="a priced send")
    r = c.send(body)
    assert r.status_code == 200, r.text
    balance_after = r.json()["meta"]["accountBalance"]
    assert balance_after is not None
    for client in (admin, support):
        page = client.get("/panel/balance")
        assert page.status_code == 200
        assert f'id="balance-amount">{balance_after} PLN<' in page.text
        assert ">Charge<" in page.text and ">Top-up<" in page.text
        usage = re.search(r'<table id="usage">.*?</table>', page.text, re.S)
        assert usage and ">PL<" in usage.group(0)
    # The CSV is the CLI's format; the operator's columns stay empty for the customer.
    today = time.strftime("%Y-%m-%d", time.gmtime())
    got = support.get("/panel/balance/usage.csv", date_from=today, date_to=today)
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(got.text)))
    assert tuple(rows[0]) == CSV_HEADER
    lines = [dict(zip(rows[0], line, strict=True)) for line in rows[1:]]
    assert {line["account"] for line in lines} == {"pb-c"}
    pl = [line for line in lines if line["country"] == "PL"]
    assert len(pl) == 1 and int(pl[0]["messages"]) >= 4  # two sends of two, maybe more
    assert pl[0]["connection"] == "" and pl[0]["carrier_cost"] == "" and pl[0]["margin"] == ""
    assert pl[0]["currency"] == "PLN"
    # Isolation: the other account sees nothing of this one.
    other = world.admin_b.get("/panel/balance").text
    assert "pb-c" not in other and f'id="balance-amount">{balance_after} PLN<' not in other
    other_csv = world.admin_b.get("/panel/balance/usage.csv", date_from=today, date_to=today)
    assert "pb-c" not in other_csv.text
    # Bad days are shown on their field; the CSV refuses them.
    bad = admin.get("/panel/balance", date_from="2027-13-01")
    assert bad.status_code == 400 and 'id="usage-from-error"' in bad.text
    assert (
        admin.get("/panel/balance", date_from="2027-02-01", date_to="2027-01-01").status_code == 400
    )
    assert admin.get("/panel/balance/usage.csv", date_to="x").status_code == 400
    assert (
        admin.get(
            "/panel/balance/usage.csv", date_from="2020-01-01", date_to="2027-01-01"
        ).status_code
        == 400
    )


def test_the_ledger_is_paged(world: World) -> None:
    stack = world.stack
    extra = stack.account("pb-paged")
    admin = logged_in(stack, make_user(stack, extra.account_id, "admin"))
    engine = stack.db()
    with engine.begin() as conn:
        for n in range(1, 56):
            post(conn, extra.account_id, "topup", n, PLN, "test", f"row {n}")
    engine.dispose()
    first = admin.get("/panel/balance").text
    assert "row 55<" in first and "row 6<" in first and "row 5<" not in first
    older = re.search(r'href="/panel/balance\?before=(\d+)"', first)
    assert older, "no link to older entries"
    second = admin.get("/panel/balance", before=older.group(1)).text
    assert "row 5<" in second and "row 1<" in second and "row 6<" not in second
    assert 'rel="next"' not in second
