"""``smsdispatch connections list [--config FILE]``: the carrier connections and what they
serve, after validation (an invalid file is reported with its file and key, exit code 4:
:class:`dispatcher.cli.exits.Exit`).

Register with :func:`register` on the ``smsdispatch`` sub-parsers. Output goes through
:mod:`dispatcher.cli.output`; secrets are never printed, only whether each is set.
"""

from __future__ import annotations

import argparse
from typing import Any

from dispatcher.cli.exits import Exit
from dispatcher.cli.output import emit, fail
from dispatcher.config import Settings
from dispatcher.routing import ConfigError, ConnectionConfig, RoutingConfig, load
from dispatcher.routing.model import SmppConfig

CONFIG_ERROR_EXIT = Exit.INPUT


def describe(c: ConnectionConfig) -> dict[str, Any]:
    """A connection as the operator reads it (secrets reduced to set / not set)."""
    creds = c.credentials
    return {
        "name": c.name,
        "type": c.type,
        "url": c.url,
        "tps": c.tps,
        "max_in_flight": c.max_in_flight,
        "batch_size": c.batch_size,
        "timeout_s": c.timeout_s,
        "destinations": list(c.destinations),
        "fallback": c.fallback,
        "lookups": c.lookups,
        "weight": c.weight,
        "preference": c.preference,
        "lanes": list(c.lanes) or ["priority", "bulk"],
        "accounts": list(c.accounts) or "all",
        **({"smpp": describe_smpp(c.smpp)} if c.smpp is not None else {}),
        "secrets": {
            k: bool(getattr(creds, k))
            for k in (
                "api_key",
                "application_key",
                "authorization",
                "callback_token",
                "webhook_secret",
            )
        },
    }


def describe_smpp(s: SmppConfig) -> dict[str, Any]:
    """The SMPP keys of a connection (the password reduced to set / not set)."""
    return {
        "host": s.host,
        "port": s.port,
        "tls": s.tls,
        "system_id": s.system_id,
        "password": bool(s.password),
        "system_type": s.system_type,
        "bind_mode": s.bind_mode,
        "binds": s.binds,
        "window": s.window,
        "priority_window": s.priority_window,
        "enquire_link_s": s.enquire_link_s,
        "query_sm": s.query_sm,
        "default_alphabet": s.default_alphabet,
        "concat": s.concat,
        "registered_delivery": s.registered_delivery,
        "source_ton_npi": {kind: [ton, npi] for kind, ton, npi in s.source_ton_npi},
        "dest_ton_npi": list(s.dest_ton_npi),
        "service_type": s.service_type,
        "send_validity": s.send_validity,
    }


def listing(config: RoutingConfig) -> dict[str, Any]:
    """The whole configuration as JSON-ready data."""
    b = config.breaker
    return {
        "source": config.source or "implicit (SMSDISPATCH_CONNECTIONS not set)",
        "connections": [describe(c) for c in config.connections],
        "breaker": {
            "failure_threshold": b.failure_threshold,
            "error_ratio": b.error_ratio,
            "window_s": b.window_s,
            "min_calls": b.min_calls,
            "cooldown_s": b.cooldown_s,
            "probes": b.probes,
            "wait_s": b.wait_s,
        },
    }


def checked(
    settings: Settings, path: str | None = None, args: argparse.Namespace | None = None
) -> RoutingConfig | None:
    """The routing configuration, or ``None`` after printing why it is unusable (stderr)."""
    try:
        return load(settings, path)
    except ConfigError as exc:
        fail(args, {"error": "invalid_connections", "message": str(exc)}, CONFIG_ERROR_EXIT)
        return None


def cmd_list(args: argparse.Namespace) -> int:
    """Print the validated connections."""
    config = checked(Settings.from_env(), args.config, args)
    if config is None:
        return CONFIG_ERROR_EXIT
    emit(args, listing(config), indent=2)
    return 0


def register(sub: Any) -> None:
    """Add ``connections`` to the ``smsdispatch`` sub-parsers."""
    p = sub.add_parser("connections", help="carrier connections and routes")
    p_sub = p.add_subparsers(dest="connections_command", required=True)
    ls = p_sub.add_parser("list", help="validate and list the configured connections")
    ls.add_argument("--config", metavar="FILE", help="connections file (default: env)")
    ls.set_defaults(func=cmd_list)
