"""Accounts and their API key pairs as stored: the rows behind
:mod:`dispatcher.accounts.account` (which issues keys and authenticates) and the account
names the panel and the CLI show. Only hashes of keys are stored, never the keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, func, insert, or_, select, update

from dispatcher.store.schema import accounts, api_keys, panel_users


@dataclass(frozen=True)
class KeyInfo:
    """A key pair as the panel lists it (only hashes are stored: never the keys)."""

    id: int
    name: str | None
    created_at: float
    created_by: str | None
    last_used_at: float | None
    expires_at: float | None
    revoked_at: float | None

    def live(self, now: float) -> bool:
        """Whether the pair still authenticates."""
        return self.expires_at is None or self.expires_at > now


def insert_account(
    conn: Connection, name: str, priority: bool, sender_policy: str, now: float
) -> int:
    """A new account's id."""
    return int(
        conn.execute(
            insert(accounts)
            .values(
                name=name, priority_enabled=priority, created_at=now, sender_policy=sender_policy
            )
            .returning(accounts.c.id)
        ).scalar_one()
    )


def insert_key(
    conn: Connection,
    account_id: int,
    app_key_hash: str,
    secret_hash: str,
    now: float,
    name: str | None,
    by: str,
) -> None:
    """Store a key pair's hashes."""
    conn.execute(
        insert(api_keys).values(
            account_id=account_id,
            app_key_hash=app_key_hash,
            secret_hash=secret_hash,
            created_at=now,
            name=name,
            created_by=by[:64],
        )
    )


def list_keys(conn: Connection, account_id: int) -> list[KeyInfo]:
    """The account's key pairs, newest first (expired and revoked ones included)."""
    k = api_keys.c
    rows = conn.execute(
        select(k.id, k.name, k.created_at, k.created_by, k.last_used_at, k.expires_at, k.revoked_at)
        .where(k.account_id == account_id)
        .order_by(k.id.desc())
    )
    return [KeyInfo(*r) for r in rows]


def revoke(conn: Connection, account_id: int, key_id: int, now: float) -> None:
    """Stop one of the account's key pairs now."""
    conn.execute(
        update(api_keys)
        .where(and_(api_keys.c.id == key_id, api_keys.c.account_id == account_id))
        .values(expires_at=now, revoked_at=now)
    )


def expire_key(conn: Connection, key_id: int, until: float) -> None:
    """Let one key pair work until ``until``."""
    conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(expires_at=until))


def expire_keys(conn: Connection, account_id: int, until: float) -> None:
    """Let every pair of the account work until ``until`` at most (one expiring sooner keeps
    its expiry)."""
    conn.execute(
        update(api_keys)
        .where(
            and_(
                api_keys.c.account_id == account_id,
                or_(api_keys.c.expires_at.is_(None), api_keys.c.expires_at > until),
            )
        )
        .values(expires_at=until)
    )


def touch_key(conn: Connection, key_id: int, now: float) -> None:
    """Record that a key pair was used."""
    conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=now))


def live_key(conn: Connection, app_key_hash: str, now: float) -> Any:
    """The live key pair of ``app_key_hash`` joined with its account's columns (``key_id``,
    ``key_name``, ``secret_hash``, ``expires_at`` and the account's), or ``None``."""
    k = api_keys.c
    return conn.execute(
        select(
            k.id.label("key_id"),
            k.name.label("key_name"),
            k.secret_hash,
            k.expires_at,
            accounts.c.id,
            accounts.c.name,
            accounts.c.priority_enabled,
            accounts.c.api_rate_per_s,
            accounts.c.daily_cap,
            accounts.c.sender_policy,
            accounts.c.link_lifetime_s,
            accounts.c.send_window,
        )
        .join(accounts, accounts.c.id == k.account_id)
        .where(
            and_(k.app_key_hash == app_key_hash, or_(k.expires_at.is_(None), k.expires_at > now))
        )
    ).first()


def account_row(conn: Connection, *, name: str | None = None, account_id: int | None = None) -> Any:
    """The account's row, by name or by id; ``None`` when there is none."""
    where = accounts.c.name == name if account_id is None else accounts.c.id == account_id
    return conn.execute(select(accounts).where(where)).first()


def account_id(conn: Connection, name: str) -> int | None:
    """The id of the account called ``name``."""
    found = conn.execute(select(accounts.c.id).where(accounts.c.name == name)).scalar()
    return None if found is None else int(found)


def account_name(conn: Connection, account_id: int) -> str | None:
    """The name of account ``account_id``."""
    found = conn.execute(select(accounts.c.name).where(accounts.c.id == account_id)).scalar()
    return None if found is None else str(found)


def account_names(conn: Connection, ids: Iterable[int] | None = None) -> dict[int, str]:
    """Names by id: of ``ids``, or of every account."""
    query = select(accounts.c.id, accounts.c.name).order_by(accounts.c.name)
    if ids is not None:
        query = query.where(accounts.c.id.in_(list(ids)))
    return {int(r.id): str(r.name) for r in conn.execute(query)}


def update_account(conn: Connection, account_id: int, **values: Any) -> None:
    """Set columns of one account (its limits, webhook settings, link settings)."""
    conn.execute(update(accounts).where(accounts.c.id == account_id).values(**values))


def account_summaries(conn: Connection, now: float) -> list[dict[str, Any]]:
    """Every account with its settings and its counts of live key pairs and panel users, by
    name (the operator's accounts page)."""
    a, k, u = accounts.c, api_keys.c, panel_users.c
    keys: dict[int, int] = dict(
        conn.execute(
            select(k.account_id, func.count())
            .where((k.expires_at.is_(None)) | (k.expires_at > now))
            .group_by(k.account_id)
        ).all()
    )
    users: dict[int, int] = dict(
        conn.execute(select(u.account_id, func.count()).group_by(u.account_id)).all()
    )
    return [
        {**r._mapping, "keys": keys.get(r.id, 0), "users": users.get(r.id, 0)}
        for r in conn.execute(
            select(
                a.id, a.name, a.created_at, a.priority_enabled, a.sender_policy,
                a.api_rate_per_s, a.daily_cap, a.bulk_weight,
            ).order_by(a.name)
        )
    ]  # fmt: skip
