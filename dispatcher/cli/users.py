"""``smsdispatch users create USERNAME --account NAME --role support|admin``: panel users.

The password never comes from argv (it would show in ``ps`` and shell history): it is read
from ``--password-file FILE``, from standard input when it is not a terminal, or from a prompt
asked twice. Register with :func:`register` on the ``smsdispatch`` sub-parsers.
"""

from __future__ import annotations

import argparse
import getpass
import re
import sys
import time
from typing import Any

from dispatcher.cli.accounts import audit_cli
from dispatcher.cli.exits import Exit
from dispatcher.cli.output import emit, fail
from dispatcher.config import Settings
from dispatcher.ops.logs import configure
from dispatcher.store.db import transaction
from dispatcher.store.users import (
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    Role,
    UserExists,
    create_user,
)

_USERNAME = re.compile(r"^[A-Za-z0-9._@+-]{3,64}$")


def read_password(path: str | None) -> str:
    """The new password from a file, piped stdin, or an interactive prompt (asked twice)."""
    if path:
        with open(path, encoding="utf-8") as fh:
            return fh.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != first:
        raise ValueError("the passwords do not match")
    return first


def cmd_users_create(args: argparse.Namespace) -> int:
    """Create a panel user of an account."""
    from dispatcher.accounts.account import find_account
    from dispatcher.store.db import make_engine

    if not _USERNAME.match(args.username):
        return fail(args, "username: 3-64 characters of letters, digits and . _ @ + -", Exit.INPUT)
    try:
        password = read_password(args.password_file)
    except (OSError, ValueError) as exc:
        return fail(args, f"password: {exc}", Exit.INPUT)
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        return fail(
            args, f"password: {MIN_PASSWORD_LENGTH}-{MAX_PASSWORD_LENGTH} characters", Exit.INPUT
        )
    settings = Settings.from_env()
    configure(settings.log_level, settings.log_format)
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        account = find_account(engine, args.account)
        if account is None:
            return fail(args, f"no account named {args.account!r}")
        with transaction(engine) as conn:
            user = create_user(
                conn, account.id, args.username, password, Role(args.role), time.time()
            )
            audit_cli(conn, account.id, "user.create", user.username, str(user.role))
    except UserExists as exc:
        return fail(args, str(exc))
    finally:
        engine.dispose()
    emit(args, {"user": user.username, "account": account.name, "role": str(user.role)})
    return 0


def register(sub: Any) -> None:
    """Add ``users`` to the ``smsdispatch`` sub-parsers (``add_subparsers()`` result)."""
    p = sub.add_parser("users", help="support panel users")
    usub = p.add_subparsers(dest="users_command", required=True)
    c = usub.add_parser("create", help="create a panel user (password from prompt/stdin/file)")
    c.add_argument("username")
    c.add_argument("--account", required=True, metavar="NAME")
    c.add_argument("--role", required=True, choices=[r.value for r in Role])
    c.add_argument(
        "--password-file", metavar="FILE", help="read the password from FILE's first line"
    )
    c.set_defaults(func=cmd_users_create)
