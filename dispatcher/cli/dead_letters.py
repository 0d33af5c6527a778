"""``smsdispatch dead-letters list|retry|drop``: what the workers set aside.

Carrier callbacks (kinds ``report``, ``inbound``) that failed to apply
``SMSDISPATCH_CALLBACK_MAX_FAILURES`` times, and webhook deliveries (kind ``webhook``) whose
results could not be recorded ``SMSDISPATCH_WEBHOOK_MAX_FAILURES`` times
(:mod:`dispatcher.store.dead_letters`). ``retry`` puts them back (after the cause is fixed),
``drop`` gives up on them. Output and errors go through :mod:`dispatcher.cli.output`.
``retry`` and ``drop`` write a platform entry to the audit log (``deadletter.retry``,
``deadletter.drop``, seen by operators) in their own transaction when they changed anything.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from dispatcher.cli.accounts import cli_actor
from dispatcher.cli.exits import Exit
from dispatcher.cli.output import emit, fail
from dispatcher.config import Settings
from dispatcher.ops.logs import configure
from dispatcher.store import audit, dead_letters
from dispatcher.store.db import reading, transaction
from dispatcher.webhooks.urls import safe_host

KINDS = ("report", "inbound", "webhook")


def register(sub: Any) -> None:
    """Add ``dead-letters`` to the ``smsdispatch`` sub-parsers."""
    p = sub.add_parser("dead-letters", help="callbacks and webhooks set aside after failing")
    cmds = p.add_subparsers(dest="dead_cmd", required=True)
    ls = cmds.add_parser("list", help="list them, oldest first")
    ls.add_argument("--kind", choices=KINDS)
    ls.add_argument("--limit", type=int, default=100)
    ls.add_argument(
        "--show-items", action="store_true", help="include the callbacks' items (may hold texts)"
    )
    ls.set_defaults(func=cmd_list)
    for name, help_text in (
        ("retry", "put them back to be applied again (after fixing the cause)"),
        ("drop", "give up on them (callbacks deleted, webhooks marked failed)"),
    ):
        c = cmds.add_parser(name, help=help_text)
        c.add_argument("--kind", choices=KINDS, required=True)
        c.add_argument("--by", help="who to name in the audit log (default: cli:<login name>)")
        which = c.add_mutually_exclusive_group(required=True)
        which.add_argument("ids", nargs="*", default=[], metavar="ID")
        which.add_argument("--all", action="store_true")
        c.set_defaults(func=cmd_retry if name == "retry" else cmd_drop)


def _engine() -> Any:
    from dispatcher.store.db import make_engine

    settings = Settings.from_env()
    configure(settings.log_level, settings.log_format)
    return make_engine(settings.database_url, pool_size=1)


def listing(conn: Any, kind: str | None, limit: int, show_items: bool) -> list[dict[str, Any]]:
    """The dead letters as the CLI prints them."""
    out: list[dict[str, Any]] = []
    if kind in (None, "report", "inbound"):
        for d in dead_letters.listing(conn, kind, limit):
            entry: dict[str, Any] = {
                "kind": d.kind,
                "id": d.id,
                "connection": d.connection,
                "items": d.items if show_items else len(d.items),
                "receivedAt": d.received_at,
                "failures": d.failures,
                "error": d.error,
                "deadAt": d.dead_at,
            }
            out.append(entry)
    if kind in (None, "webhook"):
        for w in dead_letters.dead_deliveries(conn, limit):
            out.append(
                {
                    "kind": "webhook",
                    "id": w["id"],
                    "accountId": w["account_id"],
                    "event": w["event"],
                    "endpoint": safe_host(w["url"]),
                    "failures": w["failures"],
                    "error": w["last_error"],
                    "createdAt": w["created_at"],
                }
            )
    return out


def change(conn: Any, action: str, kind: str, ids: list[str] | None, now: float, actor: str) -> int:
    """``retry`` or ``drop`` the dead letters ``ids`` (``None``: all) of ``kind``, with the
    audit entry when any changed (dead letters span accounts: a platform entry)."""
    if kind == "webhook":
        if action == "retry":
            n = dead_letters.retry_deliveries(conn, ids, now)
        else:
            n = dead_letters.drop_deliveries(conn, ids)
    else:
        numbers = None if ids is None else [int(i) for i in ids]
        if action == "retry":
            n = dead_letters.retry(conn, kind, numbers, now)
        else:
            n = dead_letters.drop(conn, kind, numbers)
    if n:
        done = "retried" if action == "retry" else "dropped"
        detail = f"{'all' if ids is None else 'ids ' + ', '.join(ids)}: {n} {done}"
        audit.record(conn, None, actor, f"deadletter.{action}", kind, detail, now=now)
    return n


def cmd_list(args: argparse.Namespace) -> int:
    """Entry point of ``dead-letters list``."""
    engine = _engine()
    try:
        with reading(engine) as conn:
            out = listing(conn, args.kind, args.limit, args.show_items)
    finally:
        engine.dispose()
    emit(args, out, indent=2, ensure_ascii=False)
    return 0


def _change(args: argparse.Namespace, action: str) -> int:
    ids = None if args.all else list(args.ids)
    if args.kind != "webhook" and ids is not None and not all(i.isdigit() for i in ids):
        return fail(args, "callback dead letters have numeric ids", Exit.INPUT)
    engine = _engine()
    try:
        with transaction(engine) as conn:
            n = change(conn, action, args.kind, ids, time.time(), cli_actor(args))
    finally:
        engine.dispose()
    emit(args, {action: n, "kind": args.kind})
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    """Entry point of ``dead-letters retry``."""
    return _change(args, "retry")


def cmd_drop(args: argparse.Namespace) -> int:
    """Entry point of ``dead-letters drop``."""
    return _change(args, "drop")
