"""``smsdispatch balance``: balances, credit limits and the ledger (docs/prices.md).

Register with :func:`register` on the ``smsdispatch`` sub-parsers. Output goes through
:mod:`dispatcher.cli.output`; errors name the field, exit code 1. Amounts are typed and shown
in major units (``12.34``), stored in minor units. Changes are recorded in the audit log
(:mod:`dispatcher.store.audited`).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from dispatcher.billing.money import MoneyError, currency, format_minor, to_minor
from dispatcher.cli.accounts import cli_actor, fail, open_engine
from dispatcher.cli.output import emit
from dispatcher.cli.prices import account_id_of, currency_alpha, money_text
from dispatcher.store import audited
from dispatcher.store.db import reading, transaction


def _show(conn: Any, account_id: int, name: str) -> dict[str, Any]:
    from dispatcher.store.balances import balance_of

    b = balance_of(conn, account_id)
    if b is None:
        return {"account": name, "balance": None, "note": "no balance: top up to start"}
    return {
        "account": name,
        "balance": format_minor(b.balance, b.currency),
        "currency": currency_alpha(b.currency),
        "creditLimit": None if b.credit_limit is None else money_text(b.credit_limit, b.currency),
        "unlimited": b.credit_limit is None,
        "available": money_text(b.available, b.currency),
        "lowBalance": money_text(b.low_balance, b.currency),
    }


def cmd_balance_show(args: argparse.Namespace) -> int:
    """An account's balance, credit limit and what it can still spend."""
    engine = open_engine()
    try:
        account_id = account_id_of(engine, args.account)
        assert account_id is not None
        with reading(engine) as conn:
            out = _show(conn, account_id, args.account)
    except LookupError as exc:
        return fail(str(exc), args)
    finally:
        engine.dispose()
    emit(args, out)
    return 0


def _post(args: argparse.Namespace, kind: str) -> int:
    from dispatcher.store.balances import BalanceError

    engine = open_engine()
    try:
        account_id = account_id_of(engine, args.account)
        assert account_id is not None
        cur = currency(args.currency)
        amount = to_minor(args.amount, cur, allow_negative=kind == "adjustment")
        with transaction(engine) as conn:
            audited.post_balance(
                conn,
                account_id,
                args.account,
                kind,
                amount,
                cur.numeric,
                cli_actor(args),
                args.note,
                time.time(),
            )
            out = _show(conn, account_id, args.account)
    except LookupError as exc:
        return fail(str(exc), args)
    except MoneyError as exc:
        return fail(f"amount: {exc}", args)
    except BalanceError as exc:
        return fail(str(exc), args)
    finally:
        engine.dispose()
    emit(args, out)
    return 0


def cmd_balance_top_up(args: argparse.Namespace) -> int:
    """Add money to an account's balance (a ``topup`` ledger row)."""
    return _post(args, "topup")


def cmd_balance_adjust(args: argparse.Namespace) -> int:
    """Correct a balance either way, with a note (an ``adjustment`` ledger row)."""
    return _post(args, "adjustment")


def _limit(raw: str | None, cur: Any, off_word: str) -> Any:
    from dispatcher.store.balances import Keep

    if raw is None:
        return Keep.KEEP
    if raw.strip().lower() == off_word:
        return None
    return to_minor(raw, cur)


def cmd_balance_limits(args: argparse.Namespace) -> int:
    """Set the credit limit (``unlimited``: postpaid) and the low-balance alert level."""
    from dispatcher.store.balances import BalanceError

    engine = open_engine()
    try:
        account_id = account_id_of(engine, args.account)
        assert account_id is not None
        cur = currency(args.currency)
        try:
            credit = _limit(args.credit_limit, cur, "unlimited")
        except MoneyError as exc:
            return fail(f"credit-limit: {exc}", args)
        try:
            low = _limit(args.low_balance, cur, "off")
        except MoneyError as exc:
            return fail(f"low-balance: {exc}", args)
        with transaction(engine) as conn:
            audited.set_balance_limits(
                conn,
                account_id,
                args.account,
                cur.numeric,
                cli_actor(args),
                time.time(),
                credit_limit=credit,
                low_balance=low,
            )
            out = _show(conn, account_id, args.account)
    except LookupError as exc:
        return fail(str(exc), args)
    except (MoneyError, BalanceError) as exc:
        return fail(str(exc), args)
    finally:
        engine.dispose()
    emit(args, out)
    return 0


def cmd_balance_ledger(args: argparse.Namespace) -> int:
    """An account's ledger, newest first."""
    from dispatcher.store.balances import ledger_rows

    engine = open_engine()
    try:
        account_id = account_id_of(engine, args.account)
        assert account_id is not None
        with reading(engine) as conn:
            rows = ledger_rows(conn, account_id, args.limit)
    except LookupError as exc:
        return fail(str(exc), args)
    finally:
        engine.dispose()
    out = [
        {
            "id": r["id"],
            "at": r["at"],
            "kind": r["kind"],
            "amount": format_minor(r["amount"], r["currency"]),
            "currency": currency_alpha(r["currency"]),
            "submission": r["submission_id"],
            "messages": r["messages"],
            "parts": r["parts"],
            "actor": r["actor"],
            "note": r["note"],
        }
        for r in rows
    ]
    emit(args, out, indent=2)
    return 0


def cmd_balance_reconcile(args: argparse.Namespace) -> int:
    """Check every balance against its ledger and the ledger against the messages; exit
    code 1 (and each difference on stdout) when anything disagrees."""
    from dispatcher.store.balances import reconcile

    engine = open_engine()
    try:
        account_id = account_id_of(engine, args.account)
        with reading(engine) as conn:
            problems = reconcile(conn, account_id)
    except LookupError as exc:
        return fail(str(exc), args)
    finally:
        engine.dispose()
    out = {
        "consistent": not problems,
        "mismatches": [
            {"account": p.account_id, "check": p.what, "expected": p.expected, "found": p.found}
            for p in problems
        ],
    }
    emit(args, out)
    return 0 if not problems else 1


def register(sub: Any) -> None:
    """Add ``balance`` to the ``smsdispatch`` sub-parsers."""
    b = sub.add_parser("balance", help="balances, credit limits, the ledger")
    bs = b.add_subparsers(dest="balance_command", required=True)
    sh = bs.add_parser("show", help="balance, credit limit, what can still be spent")
    sh.add_argument("account", metavar="ACCOUNT")
    sh.set_defaults(func=cmd_balance_show)
    for name, func, help_text in (
        ("top-up", cmd_balance_top_up, "add money (a topup row in the ledger)"),
        ("adjust", cmd_balance_adjust, "correct either way, with --note (an adjustment row)"),
    ):
        t = bs.add_parser(name, help=help_text)
        t.add_argument("account", metavar="ACCOUNT")
        t.add_argument("amount", help="major units: 100.00 (adjust: may be negative)")
        t.add_argument("--currency", required=True, help="ISO 4217: PLN or 985")
        t.add_argument("--note", help="why (required for adjust)")
        t.add_argument("--by", help="who (default cli:<user>)")
        t.set_defaults(func=func)
    lim = bs.add_parser("limits", help="credit limit and low-balance alert level")
    lim.add_argument("account", metavar="ACCOUNT")
    lim.add_argument("--currency", required=True, help="ISO 4217: PLN or 985")
    lim.add_argument("--credit-limit", help="how far below 0 it may go; 'unlimited': postpaid")
    lim.add_argument("--low-balance", help="alert below this; 'off': no alert")
    lim.set_defaults(func=cmd_balance_limits)
    lg = bs.add_parser("ledger", help="the ledger, newest first")
    lg.add_argument("account", metavar="ACCOUNT")
    lg.add_argument("--limit", type=int, default=100)
    lg.set_defaults(func=cmd_balance_ledger)
    rc = bs.add_parser("reconcile", help="check balances = sum of ledger = messages' prices")
    rc.add_argument("--account", metavar="NAME")
    rc.set_defaults(func=cmd_balance_reconcile)
