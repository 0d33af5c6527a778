"""``smsdispatch config check|docs``, and how every command reports invalid settings.

A bad setting stops any command before it does anything: :func:`invalid` prints the variables
and what they accept (one line each, or one JSON object with ``--json``) and returns exit code 4
(``Exit.INPUT``), the same as an invalid connections file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from dispatcher.cli.exits import Exit
from dispatcher.cli.output import emit, wants_json
from dispatcher.config import ConfigError, Settings
from dispatcher.config_env import unknown


def register(sub: Any) -> None:
    """Add ``config`` to the ``smsdispatch`` sub-parsers."""
    p = sub.add_parser("config", help="check the settings, print their documentation")
    cmds = p.add_subparsers(dest="config_cmd", required=True)
    cmds.add_parser(
        "check",
        help="validate the environment's settings; unknown SMSDISPATCH_* variables are errors",
    ).set_defaults(func=cmd_check)
    cmds.add_parser(
        "docs", help="print docs/configuration.md (generated from the settings)"
    ).set_defaults(func=cmd_docs)


def invalid(args: argparse.Namespace | None, exc: ConfigError) -> int:
    """Report invalid settings on stderr; returns the exit code."""
    if wants_json(args):
        payload = {"error": "invalid_configuration", "problems": exc.problems}
        print(json.dumps(payload), file=sys.stderr)
    else:
        print("smsdispatch: invalid configuration", file=sys.stderr)
        for line in exc.problems:
            print(f"  {line}", file=sys.stderr)
    return int(Exit.INPUT)


def cmd_check(args: argparse.Namespace) -> int:
    """Validate every setting (raising :class:`ConfigError` to ``main``) and refuse unknown
    ``SMSDISPATCH_*`` variables, which processes only warn about."""
    Settings.from_env(dict(os.environ))
    strangers = unknown(Settings, os.environ)
    if strangers:
        raise ConfigError(
            [
                f"{name} is not a setting" + (f" (did you mean {close}?)" if close else "")
                for name, close in strangers
            ]
        )
    emit(args, {"valid": True})
    return int(Exit.OK)


def cmd_docs(_args: argparse.Namespace) -> int:
    """Print the generated configuration reference."""
    from dispatcher.config_docs import render_configuration

    sys.stdout.write(render_configuration())
    return int(Exit.OK)
