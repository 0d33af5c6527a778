"""``smsdispatch prices|balance|usage``: price lists, balances and the ledger, usage reports.

Register with :func:`register` on the ``smsdispatch`` sub-parsers. Output goes through
:mod:`dispatcher.cli.output` (JSON for scripts, tables on a terminal; CSV for ``usage``); errors
name the field, exit code 1. Amounts
are typed and shown in major units (``12.34``), stored in minor units (docs/prices.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from typing import Any

from dispatcher.billing.money import MoneyError, by_numeric, currency, format_minor, to_minor
from dispatcher.cli.accounts import cli_actor, fail, open_engine
from dispatcher.cli.output import emit
from dispatcher.store import audited
from dispatcher.store.db import reading, transaction


def parse_time(raw: str) -> float:
    """Unix seconds from ``2027-01-01``, ``2027-01-01T12:00:00Z`` (UTC if no zone) or digits."""
    value = raw.strip()
    if value.replace(".", "", 1).isdigit():
        return float(value)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {raw!r} (write 2027-01-01, 2027-01-01T12:00:00Z or unix seconds)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _account_id(engine: Any, name: str | None) -> int | None:
    from dispatcher.accounts.account import find_account

    if name is None:
        return None
    found = find_account(engine, name)
    if found is None:
        raise LookupError(f"account: no account named {name!r}")
    return found.id


def _money(minor: int | None, numeric: int) -> str | None:
    return None if minor is None else format_minor(minor, numeric)


def _alpha(numeric: int) -> str | int:
    cur = by_numeric(numeric)
    return cur.alpha if cur else numeric


# -- prices --------------------------------------------------------------------------------------


def cmd_prices_set(args: argparse.Namespace) -> int:
    """Add a price to an account's list or to the platform default."""
    from dispatcher.store.prices import NewPrice, PriceListError

    engine = open_engine()
    try:
        account_id = _account_id(engine, args.account)
        new = NewPrice(args.destination, args.price, args.currency, args.valid_from)
        with transaction(engine) as conn:
            entry = audited.add_price(
                conn, account_id, args.account, new, cli_actor(args), time.time()
            )
    except (LookupError, PriceListError) as exc:
        return fail(str(exc), args)
    finally:
        engine.dispose()
    out = {
        "list": args.account or "default",
        "destination": entry.destination,
        "pricePerPart": format_minor(entry.price, entry.currency),
        "currency": _alpha(entry.currency),
        "validFrom": entry.valid_from,
    }
    emit(args, out)
    return 0


def cmd_prices_list(args: argparse.Namespace) -> int:
    """Show a price list, every entry with its date."""
    from dispatcher.store.prices import entries_view, list_entries

    engine = open_engine()
    try:
        account_id = _account_id(engine, args.account)
        with reading(engine) as conn:
            entries = list_entries(conn, account_id)
    except LookupError as exc:
        return fail(str(exc), args)
    finally:
        engine.dispose()
    emit(args, {"list": args.account or "default", "entries": entries_view(entries)})
    return 0


def cmd_prices_remove(args: argparse.Namespace) -> int:
    """Remove a destination (every date) from a list."""
    from dispatcher.store.prices import PriceListError

    engine = open_engine()
    try:
        account_id = _account_id(engine, args.account)
        with transaction(engine) as conn:
            removed = audited.remove_price(
                conn, account_id, args.account, args.destination, cli_actor(args), time.time()
            )
    except (LookupError, PriceListError) as exc:
        return fail(str(exc), args)
    finally:
        engine.dispose()
    if not removed:
        return fail(f"destination: {args.destination} is not in this price list", args)
    emit(args, {"removed": removed})
    return 0


def cmd_prices_quote(args: argparse.Namespace) -> int:
    """What a message to a number costs an account now (or at ``--at``)."""
    from dispatcher.billing.pricebook import PriceBook
    from dispatcher.config import Settings
    from dispatcher.sms import InvalidPhoneNumber, normalize
    from dispatcher.store.prices import load_entries

    engine = open_engine()
    try:
        account_id = _account_id(engine, args.account)
        phone = normalize(args.phone, Settings.from_env().default_region or None)
        with reading(engine) as conn:
            book = PriceBook(load_entries(conn))
    except LookupError as exc:
        return fail(str(exc), args)
    except InvalidPhoneNumber as exc:
        return fail(f"phone: {exc.message}", args)
    finally:
        engine.dispose()
    assert account_id is not None
    quote = book.quote(account_id, phone, args.at or time.time())
    if quote is None:
        return fail(f"phone: no price for {phone} in the account's list or the default one", args)
    emit(
        args,
        {
            "phone": phone,
            "matched": quote.entry.destination,
            "list": "account" if quote.entry.account_id is not None else "default",
            "pricePerPart": format_minor(quote.price, quote.currency),
            "parts": args.parts,
            "price": format_minor(quote.price * args.parts, quote.currency),
            "currency": _alpha(quote.currency),
        },
    )
    return 0


# -- balance -------------------------------------------------------------------------------------


def _show(conn: Any, account_id: int, name: str) -> dict[str, Any]:
    from dispatcher.store.balances import balance_of

    b = balance_of(conn, account_id)
    if b is None:
        return {"account": name, "balance": None, "note": "no balance: top up to start"}
    return {
        "account": name,
        "balance": format_minor(b.balance, b.currency),
        "currency": _alpha(b.currency),
        "creditLimit": _money(b.credit_limit, b.currency) if b.credit_limit is not None else None,
        "unlimited": b.credit_limit is None,
        "available": _money(b.available, b.currency),
        "lowBalance": _money(b.low_balance, b.currency),
    }


def cmd_balance_show(args: argparse.Namespace) -> int:
    """An account's balance, credit limit and what it can still spend."""
    engine = open_engine()
    try:
        account_id = _account_id(engine, args.account)
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
        account_id = _account_id(engine, args.account)
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
        account_id = _account_id(engine, args.account)
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
        account_id = _account_id(engine, args.account)
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
            "currency": _alpha(r["currency"]),
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
        account_id = _account_id(engine, args.account)
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


# -- usage ---------------------------------------------------------------------------------------


def cmd_usage(args: argparse.Namespace) -> int:
    """Usage per account, UTC day, country and connection, as CSV."""
    from dispatcher.store.usage import usage, usage_csv

    engine = open_engine()
    try:
        account_id = _account_id(engine, args.account)
        date_to = args.date_to or time.time()
        date_from = args.date_from or date_to - 31 * 86_400
        with reading(engine) as conn:
            rows = usage(conn, date_from, date_to, account_id, carrier_costs())
    except LookupError as exc:
        return fail(str(exc), args)
    finally:
        engine.dispose()
    sys.stdout.write(usage_csv(rows))
    return 0


def carrier_costs() -> dict[str, tuple[int, int]]:
    """Connection name → (cost per part, currency) from the connections file, where set."""
    from dispatcher.config import Settings
    from dispatcher.routing import current_table

    config = current_table(Settings.from_env()).config
    return {
        c.name: (c.cost_per_part, c.cost_currency)
        for c in config.connections
        if c.cost_per_part is not None
    }


def _time_arg(raw: str) -> float:
    return parse_time(raw)


def register(sub: Any) -> None:
    """Add ``prices``, ``balance`` and ``usage`` to the ``smsdispatch`` sub-parsers."""
    p = sub.add_parser("prices", help="price lists: per account and the platform default")
    ps = p.add_subparsers(dest="prices_command", required=True)
    s = ps.add_parser("set", help="add a price per part for a destination")
    s.add_argument("destination", help="+4850 (prefix), PL (country) or * (everything else)")
    s.add_argument("price", help="per part, in major units: 0.07")
    s.add_argument("--currency", required=True, help="ISO 4217: PLN or 985")
    s.add_argument("--account", metavar="NAME", help="the account's list (default: platform)")
    s.add_argument(
        "--from",
        dest="valid_from",
        type=_time_arg,
        help="effective from (2027-01-01, ISO time or unix seconds; default now)",
    )
    s.add_argument("--by", help="who sets it (default cli:<user>)")
    s.set_defaults(func=cmd_prices_set)
    ls = ps.add_parser("list", help="a price list with its dates")
    ls.add_argument("--account", metavar="NAME", help="the account's list (default: platform)")
    ls.set_defaults(func=cmd_prices_list)
    rm = ps.add_parser("remove", help="remove a destination from a list (every date)")
    rm.add_argument("destination")
    rm.add_argument("--account", metavar="NAME")
    rm.set_defaults(func=cmd_prices_remove)
    q = ps.add_parser("quote", help="what a message to a number costs an account")
    q.add_argument("phone")
    q.add_argument("--account", metavar="NAME", required=True)
    q.add_argument("--parts", type=int, default=1)
    q.add_argument("--at", type=_time_arg, help="at this time (default now)")
    q.set_defaults(func=cmd_prices_quote)

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

    u = sub.add_parser("usage", help="usage per account, day, country, connection (CSV)")
    u.add_argument("--account", metavar="NAME")
    u.add_argument("--from", dest="date_from", type=_time_arg, help="default: 31 days ago")
    u.add_argument("--to", dest="date_to", type=_time_arg, help="default: now")
    u.set_defaults(func=cmd_usage)
