"""``smsdispatch accounts rotate-key|limits|send-window|weight``: key rotation, per-account API
limits, quiet hours and the account's weight in the fair bulk lane (docs/campaigns.md).

Register with :func:`register` on the ``accounts`` sub-parsers. Output and errors go through
:mod:`dispatcher.cli.output` (JSON for scripts, tables on a terminal); a refusal exits with 1.
"""

from __future__ import annotations

import argparse
import getpass
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from dispatcher.cli.exits import Exit
from dispatcher.cli.output import emit
from dispatcher.cli.output import fail as report
from dispatcher.config import Settings
from dispatcher.ops.logs import configure
from dispatcher.store import audit
from dispatcher.store.db import transaction

if TYPE_CHECKING:
    from dispatcher.accounts.account import Account

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(raw: str) -> float:
    """Seconds in ``30s``, ``15m``, ``24h``, ``2d`` or a bare number of seconds."""
    match = _DURATION.match(raw.lower())
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {raw!r} (use e.g. 90s, 15m, 24h, 2d)")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def _limit(kind: type) -> Any:
    def parse(raw: str) -> Any:
        if raw.lower() == "default":
            return None
        try:
            value = kind(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {raw!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError("must be >= 0 (0 = unlimited)")
        return value

    return parse


def open_engine() -> Any:
    """An engine on the configured database, logging configured (the operator commands')."""
    from dispatcher.store.db import make_engine

    s = Settings.from_env()
    configure(s.log_level, s.log_format)
    return make_engine(s.database_url, pool_size=1)


class NoSuchAccount(Exception):
    """No account has the name the command was given."""


@contextmanager
def named_account(name: str) -> Iterator[tuple[Connection, Account]]:
    """One transaction on the account called ``name`` (its row as loaded at the start);
    raises :class:`NoSuchAccount` when there is none. The engine is closed on the way out."""
    from dispatcher.accounts.account import load_account

    engine = open_engine()
    try:
        with transaction(engine) as conn:
            account = load_account(conn, name=name)
            if account is None:
                raise NoSuchAccount(name)
            yield conn, account
    finally:
        engine.dispose()


def fail(message: str, args: argparse.Namespace | None = None, code: int = Exit.FAILED) -> int:
    """Report ``message`` as an error (:func:`dispatcher.cli.output.fail`); exit code 1."""
    return report(args, message, code)


def cli_actor(args: argparse.Namespace | None = None) -> str:
    """How the audit log, the ledger and sender decisions name a CLI user: what ``--by``
    said, else ``cli:<login name>``."""
    by = getattr(args, "by", None)
    if by:
        return str(by)
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no user name in this environment (a bare container)
        return "cli"


def audit_cli(
    conn: Connection,
    account_id: int | None,
    action: str,
    target: str | None = None,
    detail: str | None = None,
    args: argparse.Namespace | None = None,
) -> None:
    """An entry of the audit log for a CLI command, in its transaction: the panel's log
    shows the CLI's actions too (``account_id`` ``None``: a platform action)."""
    audit.record(conn, account_id, cli_actor(args), action, target, detail, now=time.time())


def cmd_rotate_key(args: argparse.Namespace) -> int:
    """Issue a new key pair; the old pairs keep working until the overlap ends."""
    from dispatcher.accounts.account import rotate_key_in

    try:
        with named_account(args.name) as (conn, account):
            pair = rotate_key_in(conn, account.id, args.overlap, time.time())
            detail = f"every older pair works for {args.overlap:g} more seconds"
            audit_cli(conn, account.id, "key.rotate", "all keys", detail)
    except NoSuchAccount:
        return fail(f"no account named {args.name!r}", args)
    emit(
        args,
        {
            "account": account.name,
            "Application-Key": pair.application_key,
            "Authorization": pair.authorization,
            "old_keys_expire_in_s": args.overlap,
        },
        indent=2,
    )
    return 0


def cmd_limits(args: argparse.Namespace) -> int:
    """Show or set an account's request rate and daily cap."""
    from dispatcher.accounts.account import set_limits_in

    try:
        with named_account(args.name) as (conn, account):
            rate = account.api_rate_per_s if args.rate is ... else args.rate
            cap = account.daily_cap if args.daily_cap is ... else args.daily_cap
            if (rate, cap) != (account.api_rate_per_s, account.daily_cap):
                set_limits_in(conn, account.id, rate, cap)
                detail = f"rate {'default' if rate is None else rate}/s, daily cap "
                detail += "default" if cap is None else str(cap)
                audit_cli(conn, account.id, "account.limits", account.name, detail)
    except NoSuchAccount:
        return fail(f"no account named {args.name!r}", args)
    s = Settings.from_env()
    emit(
        args,
        {
            "account": account.name,
            "rate_per_s": rate,
            "daily_cap": cap,
            "effective_rate_per_s": s.api_rate_per_s if rate is None else rate,
            "effective_daily_cap": s.daily_cap if cap is None else cap,
            "note": "0 = unlimited, null = the settings' default; API processes apply "
            "changes within 30 s",
        },
        indent=2,
    )
    return 0


def _window(raw: str) -> str | None:
    from dispatcher.sms.quiet_hours import InvalidWindow, parse_window

    if raw.lower() == "none":
        return None
    try:
        return str(parse_window(raw))
    except InvalidWindow as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def cmd_send_window(args: argparse.Namespace) -> int:
    """Show or set an account's default send window (quiet hours, docs/campaigns.md)."""
    from dispatcher.store.accounts import update_account

    try:
        with named_account(args.name) as (conn, account):
            window = account.send_window
            if args.window is not ... and args.window != window:
                window = args.window
                update_account(conn, account.id, send_window=window)
                audit_cli(conn, account.id, "account.send_window", account.name, window or "none")
    except NoSuchAccount:
        return fail(f"no account named {args.name!r}", args)
    emit(
        args,
        {
            "account": account.name,
            "send_window": window,
            "note": "recipient's local time; bulk messages wait for it, priority ones do not "
            "(timeRestriction overrides per request); API processes apply changes within 30 s",
        },
        indent=2,
    )
    return 0


def _weight(raw: str) -> int:
    from dispatcher.store.admission import MAX_WEIGHT

    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {raw!r}") from None
    if not 1 <= value <= MAX_WEIGHT:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_WEIGHT}")
    return value


def cmd_weight(args: argparse.Namespace) -> int:
    """Show or set an account's weight in the fair bulk lane."""
    from dispatcher.store import admission

    try:
        with named_account(args.name) as (conn, account):
            before = admission.weight_of(conn, account.id)
            weight = before if args.weight is None else args.weight
            if weight != before:
                admission.set_weight(conn, account.id, weight)
                audit_cli(conn, account.id, "account.bulk_weight", account.name,
                          f"{before} -> {weight}")  # fmt: skip
    except NoSuchAccount:
        return fail(f"no account named {args.name!r}", args)
    emit(
        args,
        {
            "account": account.name,
            "bulk_weight": weight,
            "note": "its share of the bulk lane against the other accounts with work waiting; "
            "the scheduler applies a change at its next admission round",
        },
        indent=2,
    )
    return 0


def register(accounts_sub: Any) -> None:
    """Add ``rotate-key``, ``limits``, ``send-window`` and ``weight`` to ``accounts``."""
    r = accounts_sub.add_parser(
        "rotate-key", help="issue a new key pair; the old ones stop working after --overlap"
    )
    r.add_argument("name")
    r.add_argument(
        "--overlap",
        type=parse_duration,
        default=parse_duration("24h"),
        help="how long the old key pairs keep working (e.g. 0, 15m, 24h; default 24h)",
    )
    r.set_defaults(func=cmd_rotate_key)

    lim = accounts_sub.add_parser(
        "limits", help="show or set the account's request rate and daily send cap"
    )
    lim.add_argument("name")
    lim.add_argument(
        "--rate",
        type=_limit(float),
        default=...,
        help="API requests per second (0 = unlimited, 'default' = SMSDISPATCH_API_RATE_PER_S)",
    )
    lim.add_argument(
        "--daily-cap",
        type=_limit(int),
        default=...,
        help="messages per UTC day (0 = unlimited, 'default' = SMSDISPATCH_DAILY_CAP)",
    )
    lim.set_defaults(func=cmd_limits)

    sw = accounts_sub.add_parser(
        "send-window", help="show or set the account's quiet hours (default send window)"
    )
    sw.add_argument("name")
    sw.add_argument(
        "window",
        nargs="?",
        type=_window,
        default=...,
        help="HH:MM-HH:MM in the recipient's local time (e.g. 08:00-21:00), or none",
    )
    sw.set_defaults(func=cmd_send_window)
    w = accounts_sub.add_parser(
        "weight", help="show or set the account's share of the bulk lane (fair admission)"
    )
    w.add_argument("name")
    w.add_argument(
        "weight",
        nargs="?",
        type=_weight,
        help="1 (default) to 1000: with work waiting, accounts get the lane in these proportions",
    )
    w.set_defaults(func=cmd_weight)
