"""``smsdispatch senders …``: the operator's side of sender names (docs/senders.md).

    smsdispatch senders list [--account NAME] [--state pending|approved|rejected]
    smsdispatch senders request ACCOUNT NAME
    smsdispatch senders approve ACCOUNT NAME [--by OPERATOR]
    smsdispatch senders reject ACCOUNT NAME --reason TEXT [--by OPERATOR]
    smsdispatch senders policy ACCOUNT [registered|open]

Output and errors go through :mod:`dispatcher.cli.output`; a refusal exits with 1.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from dispatcher.cli.accounts import audit_cli, cli_actor, fail, open_engine
from dispatcher.cli.output import emit
from dispatcher.config import Settings
from dispatcher.store import accounts as stored_accounts
from dispatcher.store import audit
from dispatcher.store.db import reading, transaction
from dispatcher.store.senders import NameState, SenderName, SenderPolicy


class _Refused(Exception):
    """What the operator asked for cannot be done; the message says why."""


def _command(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    @functools.wraps(run)
    def wrapped(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except _Refused as exc:
            return fail(str(exc), args)

    return wrapped


@contextmanager
def _account(name: str) -> Iterator[tuple[Any, int]]:
    """A transaction and the id of the account called ``name``."""
    engine = open_engine()
    try:
        with transaction(engine) as conn:
            found = stored_accounts.account_id(conn, name)
            if found is None:
                raise _Refused(f"no account named {name!r}")
            yield conn, found
    finally:
        engine.dispose()


def _view(entry: SenderName, account: str) -> dict[str, Any]:
    return {
        "id": entry.id,
        "account": account,
        "sender": entry.name,
        "state": str(entry.state),
        "requested_at": entry.requested_at,
        "requested_by": entry.requested_by,
        "decided_at": entry.decided_at,
        "decided_by": entry.decided_by,
        "reason": entry.reason,
    }


@_command
def cmd_list(args: argparse.Namespace) -> int:
    """Sender names of one account or of all, optionally in one state (oldest first)."""
    from dispatcher.store.senders import list_names

    if args.account:
        with _account(args.account) as (conn, account_id):
            entries = list_names(conn, account_id, args.state)
            names = {account_id: args.account}
    else:
        engine = open_engine()
        try:
            with reading(engine) as conn:
                entries = list_names(conn, None, args.state)
                names = stored_accounts.account_names(conn)
        finally:
            engine.dispose()
    emit(args, [_view(e, names.get(e.account_id, "?")) for e in entries], indent=2)
    return 0


@_command
def cmd_request(args: argparse.Namespace) -> int:
    """Request a name on an account's behalf (it is pending until approved)."""
    from dispatcher.sms import InvalidSender
    from dispatcher.store.audited import request_sender

    with _account(args.account) as (conn, account_id):
        try:  # the panel's audit log shows the CLI's actions too
            entry = request_sender(conn, account_id, args.sender, cli_actor(args), time.time())
        except InvalidSender as exc:
            raise _Refused(f"invalid sender name {args.sender!r}: {exc.message}") from None
    emit(args, _view(entry, args.account), indent=2)
    return 0


def _decide(args: argparse.Namespace, state: NameState) -> int:
    from dispatcher.store.senders import approve, find_name, reject

    with _account(args.account) as (conn, account_id):
        entry = find_name(conn, account_id, args.sender)
        if entry is None:
            raise _Refused(
                f"account {args.account!r} has not requested {args.sender!r} "
                "(smsdispatch senders request ACCOUNT NAME asks on its behalf)"
            )
        now = time.time()
        if state == NameState.APPROVED:
            entry = approve(conn, entry.id, cli_actor(args), now)
        else:
            entry = reject(conn, entry.id, cli_actor(args), args.reason, now)
        verdict = "sender.approve" if state == NameState.APPROVED else "sender.reject"
        audit.record(conn, account_id, cli_actor(args), verdict, entry.name, entry.reason, now=now)
    out = _view(entry, args.account)
    out["note"] = "API processes apply the decision at once to new sends"
    emit(args, out, indent=2)
    return 0


@_command
def cmd_approve(args: argparse.Namespace) -> int:
    """Approve a requested name: a registered account may send from it."""
    return _decide(args, NameState.APPROVED)


@_command
def cmd_reject(args: argparse.Namespace) -> int:
    """Reject a requested name (or withdraw an approval), with the reason the customer sees."""
    if not args.reason.strip():
        raise _Refused("--reason must say why: the customer sees it")
    return _decide(args, NameState.REJECTED)


@_command
def cmd_policy(args: argparse.Namespace) -> int:
    """Show or set which names an account may send from."""
    from dispatcher.store.senders import get_policy, set_policy

    with _account(args.account) as (conn, account_id):
        if args.policy and args.policy != get_policy(conn, account_id):
            set_policy(conn, account_id, args.policy)
            audit_cli(conn, account_id, "sender.policy", args.account, args.policy, args)
        policy = get_policy(conn, account_id)
    ttl = Settings.from_env().auth_cache_ttl_s
    emit(
        args,
        {
            "account": args.account,
            "sender_policy": str(policy),
            "note": "registered: only approved names and dedicated numbers may send; "
            f"open: any valid name. API processes apply a change within {ttl:g} s",
        },
        indent=2,
    )
    return 0


def register(sub: Any) -> None:
    """Add ``senders`` and its commands to the top-level sub-parsers."""
    p = sub.add_parser("senders", help="sender names: requests, approval, account policy")
    cmds = p.add_subparsers(dest="senders_command", required=True)

    lst = cmds.add_parser("list", help="list sender names (the approval queue: --state pending)")
    lst.add_argument("--account", help="only this account's names")
    lst.add_argument("--state", choices=[str(s) for s in NameState])
    lst.set_defaults(func=cmd_list)

    req = cmds.add_parser("request", help="request a sender name on an account's behalf")
    req.add_argument("account")
    req.add_argument("sender")
    req.add_argument("--by", help="who asks (default cli:<user>)")
    req.set_defaults(func=cmd_request)

    ok = cmds.add_parser("approve", help="approve a requested sender name")
    ok.add_argument("account")
    ok.add_argument("sender")
    ok.add_argument("--by", help="the approving operator (default cli:<user>)")
    ok.set_defaults(func=cmd_approve)

    no = cmds.add_parser("reject", help="reject a sender name (or withdraw its approval)")
    no.add_argument("account")
    no.add_argument("sender")
    no.add_argument("--reason", required=True, help="why (the customer sees it)")
    no.add_argument("--by", help="the rejecting operator (default cli:<user>)")
    no.set_defaults(func=cmd_reject)

    pol = cmds.add_parser("policy", help="show or set an account's sender policy")
    pol.add_argument("account")
    pol.add_argument("policy", nargs="?", choices=[str(s) for s in SenderPolicy])
    pol.set_defaults(func=cmd_policy)
