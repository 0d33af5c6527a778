"""``smsdispatch links`` (the redirect service) and ``smsdispatch accounts links`` (an account's
link lifetime and click webhooks). See docs/short-links.md."""

from __future__ import annotations

import argparse
import os
from typing import Any

from dispatcher.cli.accounts import audit_cli, fail, open_engine, parse_duration
from dispatcher.cli.output import emit
from dispatcher.config import Settings
from dispatcher.ops.logs import configure
from dispatcher.store import accounts as stored_accounts
from dispatcher.store.db import transaction
from dispatcher.store.links import ClickWebhooks

APP = "dispatcher.links.redirect:create_app"


def cmd_links(args: argparse.Namespace) -> int:
    """Serve the redirect service (one process per ``--workers``, as the API)."""
    from dispatcher.api.serve import ServeOptions, serve

    s = Settings.from_env()
    configure(s.log_level, s.log_format)
    os.environ.setdefault("PGAPPNAME", "smsdispatch-links")
    workers = args.workers or 1
    if workers > 1:
        from dispatcher.ops.metrics_dir import use_multiprocess_dir

        use_multiprocess_dir("links")
    options = ServeOptions(host=args.host or s.links_host, port=args.port or s.links_port, app=APP)
    return serve(options, workers)


def _lifetime(raw: str) -> float | None:
    if raw.lower() == "default":
        return None
    seconds = parse_duration(raw)
    if seconds <= 0:
        raise argparse.ArgumentTypeError("must be longer than 0 (or 'default')")
    return seconds


def cmd_account_links(args: argparse.Namespace) -> int:
    """Show or set an account's link lifetime and which clicks send webhooks."""
    engine = open_engine()
    try:
        with transaction(engine) as conn:
            row = stored_accounts.account_row(conn, name=args.name)
            if row is None:
                return fail(f"no account named {args.name!r}", args)
            values: dict[str, Any] = {}
            if args.lifetime is not ...:
                values["link_lifetime_s"] = args.lifetime
            if args.click_webhooks is not None:
                values["click_webhooks"] = args.click_webhooks
            lifetime = values.get("link_lifetime_s", row.link_lifetime_s)
            hooks = values.get("click_webhooks", row.click_webhooks)
            if values:
                stored_accounts.update_account(conn, row.id, **values)
                shown = "default" if lifetime is None else f"{lifetime:g} s"
                detail = f"link lifetime {shown}, click webhooks {hooks}"
                audit_cli(conn, row.id, "account.links", args.name, detail)
    finally:
        engine.dispose()
    s = Settings.from_env()
    emit(
        args,
        {
            "account": args.name,
            "link_lifetime_s": lifetime,
            "effective_link_lifetime_s": s.short_link_lifetime_s if lifetime is None else lifetime,
            "click_webhooks": hooks,
            "note": "the lifetime applies to links created from now on; API processes "
            "apply it within 30 s",
        },
        indent=2,
    )
    return 0


def register(sub: Any, accounts_sub: Any) -> None:
    """Add ``links`` to the top-level commands and ``links`` to ``accounts``."""
    p = sub.add_parser("links", help="serve the short-link redirect service")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int)
    p.set_defaults(func=cmd_links)

    a = accounts_sub.add_parser(
        "links", help="show or set the account's short-link lifetime and click webhooks"
    )
    a.add_argument("name")
    a.add_argument(
        "--lifetime",
        type=_lifetime,
        default=...,
        help="how long new short links redirect (e.g. 7d, 12h; 'default' = "
        "SMSDISPATCH_SHORT_LINK_LIFETIME_S)",
    )
    a.add_argument(
        "--click-webhooks",
        choices=ClickWebhooks.CHOICES,
        help="which clicks send message.click: first (per message, default), all, none",
    )
    a.set_defaults(func=cmd_account_links)
