"""Accounts and their API key pairs (stored as SHA-256 hashes, compared in constant time).

Keys are 256-bit random tokens, so a fast hash is enough (there is nothing to brute-force); a
slow password hash would cost milliseconds on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, and_, insert, or_, select

from dispatcher.ids import new_token
from dispatcher.store.schema import accounts, api_keys

AUTH_CACHE_TTL_S = 30.0


def key_hash(value: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class Account:
    """The caller, as the API sees it."""

    id: int
    name: str
    priority_enabled: bool


@dataclass(frozen=True)
class KeyPair:
    """Printed once at creation; only hashes are stored."""

    application_key: str
    authorization: str


def create_account(engine: Engine, name: str, priority: bool = False) -> tuple[Account, KeyPair]:
    """Create an account and its first key pair."""
    now = time.time()
    with engine.begin() as conn:
        account_id = conn.execute(
            insert(accounts)
            .values(name=name, priority_enabled=priority, created_at=now)
            .returning(accounts.c.id)
        ).scalar_one()
        pair = _add_key(conn, account_id, now)
    return Account(account_id, name, priority), pair


def add_key(engine: Engine, account_id: int) -> KeyPair:
    """Issue another key pair for an account (the old ones keep working)."""
    with engine.begin() as conn:
        return _add_key(conn, account_id, time.time())


def _add_key(conn: Connection, account_id: int, now: float) -> KeyPair:
    pair = KeyPair(new_token(24), new_token(32))
    conn.execute(
        insert(api_keys).values(
            account_id=account_id,
            app_key_hash=key_hash(pair.application_key),
            secret_hash=key_hash(pair.authorization),
            created_at=now,
        )
    )
    return pair


def find_account(engine: Engine, name: str) -> Account | None:
    """Look an account up by name."""
    with engine.connect() as conn:
        row = conn.execute(select(accounts).where(accounts.c.name == name)).first()
    return Account(row.id, row.name, bool(row.priority_enabled)) if row else None


def _verify(hit: tuple[float, str, Account | None], secret_hash: str) -> Account | None:
    _, stored, account = hit
    # Compare even when the key is unknown, so timing does not reveal which half was wrong.
    ok = hmac.compare_digest(stored or "0" * 64, secret_hash)
    return account if ok and account is not None else None


class Authenticator:
    """Resolves the two headers to an account, with a short in-process cache."""

    def __init__(self, engine: Engine, ttl_s: float = AUTH_CACHE_TTL_S) -> None:
        self.engine = engine
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, str, Account | None]] = {}
        self._lock = threading.Lock()

    MISS = object()

    def cached(self, application_key: str, authorization: str) -> Account | object | None:
        """Like :meth:`authenticate` from the cache alone; :attr:`MISS` when it must load."""
        app_hash = key_hash(application_key)
        hit = self._cache.get(app_hash)
        if hit is None or hit[0] < time.monotonic():
            return self.MISS
        return _verify(hit, key_hash(authorization))

    def authenticate(self, application_key: str, authorization: str) -> Account | None:
        """The account owning this key pair, or ``None`` (may query the database)."""
        app_hash = key_hash(application_key)
        now = time.monotonic()
        hit = self._cache.get(app_hash)
        if hit is None or hit[0] < now:
            stored, account = self._load(app_hash)
            hit = (now + self.ttl_s, stored, account)
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[app_hash] = hit
        return _verify(hit, key_hash(authorization))

    def _load(self, app_hash: str) -> tuple[str, Account | None]:
        now = time.time()
        with self.engine.connect() as conn:
            row = conn.execute(
                select(
                    api_keys.c.secret_hash,
                    accounts.c.id,
                    accounts.c.name,
                    accounts.c.priority_enabled,
                )
                .join(accounts, accounts.c.id == api_keys.c.account_id)
                .where(
                    and_(
                        api_keys.c.app_key_hash == app_hash,
                        or_(api_keys.c.expires_at.is_(None), api_keys.c.expires_at > now),
                    )
                )
            ).first()
        if row is None:
            return "", None
        return row.secret_hash, Account(row.id, row.name, bool(row.priority_enabled))
