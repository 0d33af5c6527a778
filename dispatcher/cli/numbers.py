"""``smsdispatch numbers add|list|remove``: dedicated numbers for two-way SMS.

Register with :func:`register` on the ``smsdispatch`` sub-parsers. Output is JSON on stdout;
errors are JSON on stderr with exit code 1.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from dispatcher.cli.accounts import audit_cli
from dispatcher.cli.exits import Exit
from dispatcher.cli.output import emit, fail
from dispatcher.config import Settings
from dispatcher.ops.logs import configure
from dispatcher.sms import InvalidPhoneNumber, normalize
from dispatcher.store.db import reading, transaction
from dispatcher.store.numbers import NumberKind, NumberTaken, add_number, list_numbers
from dispatcher.store.numbers import remove_number as store_remove_number

SHORT_CODE_DIGITS = (3, 8)
_SEPARATORS = str.maketrans("", "", " -().")


def dedicated_number(raw: str, kind: str | None, region: str | None) -> tuple[str, NumberKind]:
    """The stored form and kind of a number an operator typed; ``ValueError`` if unusable.

    Without ``kind``: 3-8 digits (no ``+``) is a short code, anything else a long number.
    Short codes are kept as digits; long numbers are normalised to E.164.
    """
    compact = raw.strip().translate(_SEPARATORS)
    low, high = SHORT_CODE_DIGITS
    looks_short = compact.isdigit() and low <= len(compact) <= high
    chosen = NumberKind(kind) if kind else (NumberKind.SHORT_CODE if looks_short else None)
    if chosen is NumberKind.SHORT_CODE:
        if not looks_short:
            raise ValueError(f"a short code is {low}-{high} digits")
        return compact, chosen
    try:
        return normalize(raw, region), NumberKind.LONG_NUMBER
    except InvalidPhoneNumber as exc:
        raise ValueError(exc.message) from None


def _engine_and_settings() -> tuple[Any, Settings]:
    from dispatcher.store.db import make_engine

    s = Settings.from_env()
    configure(s.log_level, s.log_format)
    return make_engine(s.database_url, pool_size=1), s


def cmd_numbers_add(args: argparse.Namespace) -> int:
    """Assign a number to an account."""
    from dispatcher.accounts.account import find_account

    engine, settings = _engine_and_settings()
    try:
        try:
            number, kind = dedicated_number(args.number, args.kind, settings.default_region or None)
        except ValueError as exc:
            return fail(args, f"{args.number!r}: {exc}", Exit.INPUT)
        account = find_account(engine, args.account)
        if account is None:
            return fail(args, f"no account named {args.account!r}")
        with transaction(engine) as conn:
            add_number(conn, number, account.id, kind, time.time())
            audit_cli(conn, account.id, "number.add", number, kind.value)
    except NumberTaken as exc:
        return fail(args, str(exc))
    finally:
        engine.dispose()
    emit(args, {"number": number, "kind": kind.value, "account": account.name})
    return 0


def cmd_numbers_list(args: argparse.Namespace) -> int:
    """List numbers, of one account or of all."""
    from dispatcher.accounts.account import find_account

    engine, _ = _engine_and_settings()
    try:
        account_id = None
        if args.account:
            account = find_account(engine, args.account)
            if account is None:
                return fail(args, f"no account named {args.account!r}")
            account_id = account.id
        with reading(engine) as conn:
            rows = list_numbers(conn, account_id)
    finally:
        engine.dispose()
    out = [{"number": r["number"], "kind": r["kind"], "account": r["account"]} for r in rows]
    emit(args, out, indent=2)
    return 0


def cmd_numbers_remove(args: argparse.Namespace) -> int:
    """Unassign a number (inbound to it is then counted as unknown and not stored)."""
    engine, settings = _engine_and_settings()
    try:
        number, _ = dedicated_number(args.number, None, settings.default_region or None)
    except ValueError:
        number = args.number.strip()
    try:
        with transaction(engine) as conn:
            owner = store_remove_number(conn, number)
            if owner is not None:
                audit_cli(conn, owner, "number.remove", number)
    finally:
        engine.dispose()
    if owner is None:
        return fail(args, f"{number} is not assigned")
    emit(args, {"removed": number})
    return 0


def register(sub: Any) -> None:
    """Add ``numbers`` to the ``smsdispatch`` sub-parsers (``add_subparsers()`` result)."""
    p = sub.add_parser("numbers", help="dedicated numbers for two-way SMS")
    nsub = p.add_subparsers(dest="numbers_command", required=True)
    a = nsub.add_parser("add", help="assign a short code or long number to an account")
    a.add_argument("number")
    a.add_argument("--account", required=True, metavar="NAME")
    a.add_argument("--kind", choices=[k.value for k in NumberKind])
    a.set_defaults(func=cmd_numbers_add)
    ls = nsub.add_parser("list", help="list numbers")
    ls.add_argument("--account", metavar="NAME")
    ls.set_defaults(func=cmd_numbers_list)
    r = nsub.add_parser("remove", help="unassign a number")
    r.add_argument("number")
    r.set_defaults(func=cmd_numbers_remove)
