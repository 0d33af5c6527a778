"""Accounts and their API key pairs (stored as SHA-256 hashes, compared in constant time).

Keys are letters and digits only, as the original API's are (some of its clients send a key
only when it is alphanumeric): an ``Application-Key`` of 32 characters (190 bits) and an
``Authorization`` of 128 (762 bits), as long as the original's. Pairs issued before that (URL-safe
base64 with ``-`` and ``_``) keep working: only their hashes are stored and compared. Random
tokens that long leave nothing to brute-force, so a fast hash is enough; a slow password hash
would cost milliseconds on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, insert, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from dispatcher.ids import alphanumeric_token
from dispatcher.store.schema import accounts, api_keys
from dispatcher.store.senders import SenderName, SenderPolicy, approved_names, find_name

AUTH_CACHE_TTL_S = 30.0
APPLICATION_KEY_LENGTH = 32
AUTHORIZATION_LENGTH = 128


def key_hash(value: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class Account:
    """The caller, as the API sees it."""

    id: int
    name: str
    priority_enabled: bool
    # Per-account limits: ``None`` = the settings' default, 0 = unlimited.
    api_rate_per_s: float | None = None
    daily_cap: int | None = None
    # Which sender names it may send from (docs/senders.md); ``senders`` is loaded for a
    # ``registered`` account only (approved names and dedicated numbers, see sender_key).
    sender_policy: str = SenderPolicy.OPEN
    senders: frozenset[str] = frozenset()
    # How long its short links redirect (docs/short-links.md); ``None`` = the settings' default.
    link_lifetime_s: float | None = None
    # Quiet hours (docs/campaigns.md): its default send window, "HH:MM-HH:MM"; None: none.
    send_window: str | None = None


@dataclass(frozen=True)
class KeyPair:
    """Printed once at creation; only hashes are stored."""

    application_key: str
    authorization: str


def create_account(
    engine: Engine,
    name: str,
    priority: bool = False,
    sender_policy: SenderPolicy | str = SenderPolicy.REGISTERED,
) -> tuple[Account, KeyPair]:
    """Create an account and its first key pair. New accounts send only from approved sender
    names, as in the original API, unless ``sender_policy`` is ``open``."""
    with engine.begin() as conn:
        return create_account_in(conn, name, priority, sender_policy, time.time())


def create_account_in(
    conn: Connection,
    name: str,
    priority: bool,
    sender_policy: SenderPolicy | str,
    now: float,
    by: str = "cli",
) -> tuple[Account, KeyPair]:
    """:func:`create_account` in the caller's transaction (the panel's operator page)."""
    policy = SenderPolicy(sender_policy)
    account_id = conn.execute(
        insert(accounts)
        .values(name=name, priority_enabled=priority, created_at=now, sender_policy=policy)
        .returning(accounts.c.id)
    ).scalar_one()
    pair = _add_key(conn, account_id, now, "first key" if by != "cli" else None, by)
    return Account(account_id, name, priority, sender_policy=policy), pair


def add_key(engine: Engine, account_id: int) -> KeyPair:
    """Issue another key pair for an account (the old ones keep working)."""
    with engine.begin() as conn:
        return _add_key(conn, account_id, time.time())


def _add_key(
    conn: Connection, account_id: int, now: float, name: str | None = None, by: str = "cli"
) -> KeyPair:
    pair = KeyPair(
        alphanumeric_token(APPLICATION_KEY_LENGTH), alphanumeric_token(AUTHORIZATION_LENGTH)
    )
    conn.execute(
        insert(api_keys).values(
            account_id=account_id,
            app_key_hash=key_hash(pair.application_key),
            secret_hash=key_hash(pair.authorization),
            created_at=now,
            name=name,
            created_by=by[:64],
        )
    )
    return pair


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


class UnknownKey(LookupError):
    """No such key pair in this account (or it no longer works)."""


def list_keys(conn: Connection, account_id: int) -> list[KeyInfo]:
    """The account's key pairs, newest first (expired and revoked ones included)."""
    k = api_keys.c
    rows = conn.execute(
        select(k.id, k.name, k.created_at, k.created_by, k.last_used_at, k.expires_at, k.revoked_at)
        .where(k.account_id == account_id)
        .order_by(k.id.desc())
    )
    return [KeyInfo(*r) for r in rows]


def create_named_key(conn: Connection, account_id: int, name: str, by: str, now: float) -> KeyPair:
    """Issue a named key pair (the panel's "Create key"); the old ones keep working."""
    return _add_key(conn, account_id, now, name, by)


def _live_key(conn: Connection, account_id: int, key_id: int, now: float) -> KeyInfo:
    for info in list_keys(conn, account_id):
        if info.id == key_id and info.live(now):
            return info
    raise UnknownKey(key_id)


def revoke_key(conn: Connection, account_id: int, key_id: int, now: float) -> KeyInfo:
    """Stop one key pair now (API processes drop it within :data:`AUTH_CACHE_TTL_S`).
    :class:`UnknownKey` for a key of another account or one that already stopped."""
    info = _live_key(conn, account_id, key_id, now)
    conn.execute(
        update(api_keys)
        .where(and_(api_keys.c.id == key_id, api_keys.c.account_id == account_id))
        .values(expires_at=now, revoked_at=now)
    )
    return info


def rotate_one_key(
    conn: Connection, account_id: int, key_id: int, overlap_s: float, by: str, now: float
) -> tuple[KeyInfo, KeyPair]:
    """Replace one key pair: a new pair with the same name, the old one working for
    ``overlap_s`` more seconds (never longer than it already would)."""
    if overlap_s < 0:
        raise ValueError("overlap must not be negative")
    info = _live_key(conn, account_id, key_id, now)
    until = now + overlap_s
    if info.expires_at is None or info.expires_at > until:
        conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(expires_at=until))
    return info, _add_key(conn, account_id, now, info.name, by)


def find_account(engine: Engine, name: str) -> Account | None:
    """Look an account up by name."""
    with engine.connect() as conn:
        row = conn.execute(select(accounts).where(accounts.c.name == name)).first()
        return _account(conn, row) if row else None


def _account(conn: Connection, row: Any) -> Account:
    policy = SenderPolicy(row.sender_policy)
    return Account(
        row.id,
        row.name,
        bool(row.priority_enabled),
        None if row.api_rate_per_s is None else float(row.api_rate_per_s),
        None if row.daily_cap is None else int(row.daily_cap),
        policy,
        approved_names(conn, row.id) if policy == SenderPolicy.REGISTERED else frozenset(),
        None if row.link_lifetime_s is None else float(row.link_lifetime_s),
        row.send_window,
    )


def recheck_sender(
    engine: Engine, account: Account, sender: str
) -> tuple[Account, SenderName | None]:
    """The account with its sender policy and names as stored now, and its entry for
    ``sender``. A send refused for its sender name checks again with this before answering,
    so an approval counts at once, not only after the API's key cache expires."""
    with engine.connect() as conn:
        row = conn.execute(select(accounts).where(accounts.c.id == account.id)).first()
        if row is None:
            return account, None
        return _account(conn, row), find_name(conn, account.id, sender)


def rotate_key(engine: Engine, account_id: int, overlap_s: float) -> KeyPair:
    """Issue a new key pair; every older pair stops working ``overlap_s`` seconds from now.

    A pair that already expires sooner keeps its earlier expiry (rotating twice never extends
    a leaked key's life). ``overlap_s=0`` revokes the old pairs at once.
    """
    if overlap_s < 0:
        raise ValueError("overlap must not be negative")
    now = time.time()
    until = now + overlap_s
    with engine.begin() as conn:
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
        return _add_key(conn, account_id, now)


def set_limits(
    engine: Engine,
    account_id: int,
    api_rate_per_s: float | None,
    daily_cap: int | None,
) -> None:
    """Set an account's limits (``None`` = the settings' default, 0 = unlimited).

    API processes see the change within :data:`AUTH_CACHE_TTL_S`.
    """
    with engine.begin() as conn:
        set_limits_in(conn, account_id, api_rate_per_s, daily_cap)


def set_limits_in(
    conn: Connection, account_id: int, api_rate_per_s: float | None, daily_cap: int | None
) -> None:
    """:func:`set_limits` in the caller's transaction."""
    if (api_rate_per_s is not None and api_rate_per_s < 0) or (
        daily_cap is not None and daily_cap < 0
    ):
        raise ValueError("limits must not be negative")
    conn.execute(
        update(accounts)
        .where(accounts.c.id == account_id)
        .values(api_rate_per_s=api_rate_per_s, daily_cap=daily_cap)
    )


# (cache deadline on the monotonic clock, secret hash, account, key expiry on the wall clock,
# key id)
_Hit = tuple[float, str, Account | None, float | None, int | None]


def _verify(hit: _Hit, secret_hash: str) -> Account | None:
    _, stored, account, expires_at, _key_id = hit
    # Compare even when the key is unknown, so timing does not reveal which half was wrong.
    ok = hmac.compare_digest(stored or "0" * 64, secret_hash)
    # The cache may hold a pair past its rotation deadline: the deadline wins over the cache.
    live = expires_at is None or expires_at > time.time()
    return account if ok and live and account is not None else None


class Authenticator:
    """Resolves the two headers to an account, with a short in-process cache."""

    def __init__(self, engine: Engine, ttl_s: float = AUTH_CACHE_TTL_S) -> None:
        self.engine = engine
        self.ttl_s = ttl_s
        self._cache: dict[str, _Hit] = {}
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
        loaded = hit is None or hit[0] < now
        if hit is None or loaded:
            stored, account, expires_at, key_id = self._load(app_hash)
            hit = (now + self.ttl_s, stored, account, expires_at, key_id)
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[app_hash] = hit
        found = _verify(hit, key_hash(authorization))
        if loaded and found is not None and hit[4] is not None:
            self._touch(hit[4])
        return found

    def _touch(self, key_id: int) -> None:
        # "Last used" for the panel: written when the pair is loaded, at most once per cache
        # period per process, never on the cached path (no write per request). A failure
        # here must not refuse a valid key.
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=time.time())
                )
        except SQLAlchemyError:
            pass

    def _load(self, app_hash: str) -> tuple[str, Account | None, float | None, int | None]:
        now = time.time()
        with self.engine.connect() as conn:
            row = conn.execute(
                select(
                    api_keys.c.id.label("key_id"),
                    api_keys.c.secret_hash,
                    api_keys.c.expires_at,
                    accounts.c.id,
                    accounts.c.name,
                    accounts.c.priority_enabled,
                    accounts.c.api_rate_per_s,
                    accounts.c.daily_cap,
                    accounts.c.sender_policy,
                    accounts.c.link_lifetime_s,
                    accounts.c.send_window,
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
                return "", None, None, None
            return row.secret_hash, _account(conn, row), row.expires_at, int(row.key_id)
