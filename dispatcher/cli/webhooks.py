"""``smsdispatch accounts webhook NAME …``: an account's webhook URLs, options and secret.

Prints the account's webhook settings as JSON; the signing secret only when it is created,
rotated, or asked for with ``--show-secret``. URLs are checked as the sender checks them
(http/https, no private or metadata addresses unless ``SMSDISPATCH_WEBHOOK_ALLOW_PRIVATE``).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from sqlalchemy import Engine

from dispatcher.cli.accounts import cli_actor
from dispatcher.cli.exits import Exit
from dispatcher.cli.output import emit, fail
from dispatcher.config import Settings
from dispatcher.store import audited, webhook_settings
from dispatcher.store.db import transaction
from dispatcher.webhooks.urls import UrlRefused, check_url

URL_FLAGS = {
    "url": "--url",
    "secondary": "--secondary",
    "inbound_url": "--inbound-url",
    "inbound_secondary": "--inbound-secondary",
}


def add_account_webhook_parser(accounts_subparsers: Any) -> argparse.ArgumentParser:
    """Add ``webhook`` to the ``accounts`` sub-commands."""
    p: argparse.ArgumentParser = accounts_subparsers.add_parser(
        "webhook",
        help="show or change an account's webhooks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", help="account name")
    p.add_argument("--url", metavar="URL", help="default webhook URL ('' clears it)")
    p.add_argument("--secondary", metavar="URL", help="used when the main URL fails")
    p.add_argument("--inbound-url", metavar="URL", help="URL for inbound messages")
    p.add_argument("--inbound-secondary", metavar="URL", help="fallback for inbound messages")
    p.add_argument(
        "--on-sent",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also send a webhook when the carrier accepts a message (status sent)",
    )
    p.add_argument("--rotate-secret", action="store_true", help="issue a new signing secret")
    p.add_argument(
        "--overlap-hours",
        type=float,
        default=24.0,
        metavar="H",
        help="with --rotate-secret: hours the old secret stays valid (default 24)",
    )
    p.add_argument("--show-secret", action="store_true", help="print the current secret")
    p.add_argument(
        "--resume",
        action="store_true",
        help="reactivate suspended/disabled endpoints and resend what failed because of them",
    )
    p.set_defaults(func=cmd_accounts_webhook)
    return p


def apply(engine: Engine, settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """Do what ``args`` asks in one transaction; the JSON-able result.

    Raises :class:`~dispatcher.store.webhook_settings.AccountNotFound` or
    :class:`~dispatcher.webhooks.urls.UrlRefused` (nothing is changed then).
    """
    urls: dict[str, str | None] = {}
    for key, flag in URL_FLAGS.items():
        value = getattr(args, key, None)
        if value is None:
            continue
        if value:
            try:  # stored in the form the webhooks lane connects to
                value = check_url(value, allow_private=settings.webhook_allow_private)
            except UrlRefused as exc:
                raise UrlRefused(exc.code, f"{flag}: {exc.reason}") from exc
        urls[key] = value
    now = time.time()
    out: dict[str, Any] = {}
    actor = cli_actor(args)
    with transaction(engine) as conn:
        acct = webhook_settings.account_id(conn, args.name)
        create = not args.rotate_secret and (any(urls.values()) or args.show_secret)
        secret = audited.set_webhooks(
            conn, acct, urls, args.on_sent, actor, now, create_secret=create
        )
        if args.rotate_secret:
            overlap_s = args.overlap_hours * 3600
            secret = audited.rotate_webhook_secret(conn, acct, overlap_s, actor, now)
        if args.show_secret and secret is None:
            secret = webhook_settings.current_secret(conn, acct)
        if args.resume:
            window_s = settings.webhook_retry_window_h * 3600
            done = audited.resume_webhooks(conn, acct, window_s, actor, now)
            out["resumed"] = {"endpoints": done.endpoints, "requeued": done.requeued}
        out = {**webhook_settings.view(conn, acct, now), **out}
    if secret is not None:
        out["secret"] = secret
    return out


def cmd_accounts_webhook(args: argparse.Namespace) -> int:
    """Entry point of ``smsdispatch accounts webhook``."""
    from dispatcher.ops.logs import configure
    from dispatcher.store.db import make_engine

    settings = Settings.from_env()
    configure(settings.log_level, settings.log_format)
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        result = apply(engine, settings, args)
    except webhook_settings.AccountNotFound:
        return fail(args, {"error": "account_not_found", "account": args.name})
    except UrlRefused as exc:
        return fail(args, {"error": exc.code, "message": exc.reason}, Exit.INPUT)
    finally:
        engine.dispose()
    emit(args, result, indent=2)
    return 0
