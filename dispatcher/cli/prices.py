"""``smsdispatch prices|usage``: price lists and usage reports (balances: :mod:`.balance`).

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

from dispatcher.billing.money import by_numeric, format_minor
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


def account_id_of(engine: Any, name: str | None) -> int | None:
    """The id of the account called ``name`` (``None`` for ``None``: the platform);
    :class:`LookupError` naming the field when there is none."""
    from dispatcher.accounts.account import find_account

    if name is None:
        return None
    found = find_account(engine, name)
    if found is None:
        raise LookupError(f"account: no account named {name!r}")
    return found.id


def money_text(minor: int | None, numeric: int) -> str | None:
    """Minor units as major-unit text; ``None`` stays ``None``."""
    return None if minor is None else format_minor(minor, numeric)


def currency_alpha(numeric: int) -> str | int:
    """``PLN`` for 985; the number for a currency we do not know."""
    cur = by_numeric(numeric)
    return cur.alpha if cur else numeric


# -- prices --------------------------------------------------------------------------------------


def cmd_prices_set(args: argparse.Namespace) -> int:
    """Add a price to an account's list or to the platform default."""
    from dispatcher.store.prices import NewPrice, PriceListError

    engine = open_engine()
    try:
        account_id = account_id_of(engine, args.account)
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
        "currency": currency_alpha(entry.currency),
        "validFrom": entry.valid_from,
    }
    emit(args, out)
    return 0


def cmd_prices_list(args: argparse.Namespace) -> int:
    """Show a price list, every entry with its date."""
    from dispatcher.store.prices import entries_view, list_entries

    engine = open_engine()
    try:
        account_id = account_id_of(engine, args.account)
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
        account_id = account_id_of(engine, args.account)
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
        account_id = account_id_of(engine, args.account)
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
            "currency": currency_alpha(quote.currency),
        },
    )
    return 0


# -- usage ---------------------------------------------------------------------------------------


def cmd_usage(args: argparse.Namespace) -> int:
    """Usage per account, UTC day, country and connection, as CSV."""
    from dispatcher.store.usage import usage, usage_csv

    engine = open_engine()
    try:
        account_id = account_id_of(engine, args.account)
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
    """Add ``prices`` to the ``smsdispatch`` sub-parsers."""
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


def register_usage(sub: Any) -> None:
    """Add ``usage`` to the ``smsdispatch`` sub-parsers."""
    u = sub.add_parser("usage", help="usage per account, day, country, connection (CSV)")
    u.add_argument("--account", metavar="NAME")
    u.add_argument("--from", dest="date_from", type=_time_arg, help="default: 31 days ago")
    u.add_argument("--to", dest="date_to", type=_time_arg, help="default: now")
    u.set_defaults(func=cmd_usage)
