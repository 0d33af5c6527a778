"""Support-panel users: argon2id password hashes, one account and one role each.

Passwords are hashed with argon2-cffi's defaults (argon2id, RFC 9106 low-memory profile); a
hash made with older parameters is re-hashed at the next successful login.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, select, update
from sqlalchemy.exc import IntegrityError

from dispatcher.store.schema import panel_users

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256
MAX_USERNAME_LENGTH = 64
_HASHER = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    # Verified against when the username is unknown, so a miss costs as long as a wrong
    # password (response time does not tell which usernames exist). Made on first use, not at
    # import: every CLI command imports this module.
    return _HASHER.hash("not a real password: timing equaliser")


class Role(enum.StrEnum):
    """What a panel user may do (docs/panel.md): support reads its account (OTP codes masked);
    admin manages its account (keys, webhooks, sender names, campaigns, suppression list);
    operator runs the platform (every account: creates accounts, decides sender names, sets
    limits) and is an admin of the account it belongs to."""

    SUPPORT = "support"
    ADMIN = "admin"
    OPERATOR = "operator"


class UserExists(Exception):
    """The username is taken (usernames are unique across accounts)."""


@dataclass(frozen=True)
class PanelUser:
    """A panel user as the panel needs it (never the hash)."""

    id: int
    account_id: int
    username: str
    role: Role


def hash_password(password: str) -> str:
    """The argon2id PHC string for ``password``."""
    return _HASHER.hash(password)


def create_user(
    conn: Connection, account_id: int, username: str, password: str, role: Role, now: float
) -> PanelUser:
    """Insert a user; :class:`UserExists` when the username is taken."""
    try:
        new_id = conn.execute(
            panel_users.insert()
            .values(
                account_id=account_id,
                username=username,
                password_hash=hash_password(password),
                role=str(role),
                created_at=now,
                disabled=False,
            )
            .returning(panel_users.c.id)
        ).scalar_one()
    except IntegrityError:
        raise UserExists(f"the username {username!r} is taken") from None
    return PanelUser(int(new_id), account_id, username, role)


def authenticate(conn: Connection, username: str, password: str) -> PanelUser | None:
    """The user when ``password`` is right and the user is enabled, else ``None``."""
    row = conn.execute(select(panel_users).where(panel_users.c.username == username)).first()
    stored = row.password_hash if row is not None else _dummy_hash()
    try:
        _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or row.disabled:
        return None
    if _HASHER.check_needs_rehash(stored):
        conn.execute(
            update(panel_users)
            .where(panel_users.c.id == row.id)
            .values(password_hash=hash_password(password))
        )
    return PanelUser(int(row.id), int(row.account_id), str(row.username), Role(row.role))


def load_user(conn: Connection, user_id: int) -> PanelUser | None:
    """The enabled user with this id (sessions re-check it on every request)."""
    row = conn.execute(
        select(panel_users).where(panel_users.c.id == user_id, panel_users.c.disabled.is_(False))
    ).first()
    if row is None:
        return None
    return PanelUser(int(row.id), int(row.account_id), str(row.username), Role(row.role))
