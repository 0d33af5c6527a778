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
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Connection, Engine

from dispatcher.ids import alphanumeric_token
from dispatcher.store import accounts as stored
from dispatcher.store.accounts import KeyInfo, list_keys
from dispatcher.store.db import StoreUnavailable, reading, transaction
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
    # How the audit log names the caller: the key pair it authenticated with, by id and name
    # (never a key); "api" for an account not loaded through a key. Not part of equality: the
    # same account through two keys is the same account.
    actor: str = field(default="api", compare=False)


def key_actor(key_id: int, key_name: str | None) -> str:
    """The audit log's ``actor`` for a call made with this key pair: ``api:key#<id> <name>``."""
    return f"api:key#{key_id}" + (f" {key_name}" if key_name else "")


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
    with transaction(engine) as conn:
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
    account_id = stored.insert_account(conn, name, priority, policy, now)
    pair = _add_key(conn, account_id, now, "first key" if by != "cli" else None, by)
    return Account(account_id, name, priority, sender_policy=policy), pair


def add_key(engine: Engine, account_id: int) -> KeyPair:
    """Issue another key pair for an account (the old ones keep working)."""
    with transaction(engine) as conn:
        return _add_key(conn, account_id, time.time())


def _add_key(
    conn: Connection, account_id: int, now: float, name: str | None = None, by: str = "cli"
) -> KeyPair:
    pair = KeyPair(
        alphanumeric_token(APPLICATION_KEY_LENGTH), alphanumeric_token(AUTHORIZATION_LENGTH)
    )
    stored.insert_key(
        conn,
        account_id,
        key_hash(pair.application_key),
        key_hash(pair.authorization),
        now,
        name,
        by,
    )
    return pair


class UnknownKey(LookupError):
    """No such key pair in this account (or it no longer works)."""


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
    stored.revoke(conn, account_id, key_id, now)
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
        stored.expire_key(conn, key_id, until)
    return info, _add_key(conn, account_id, now, info.name, by)


def find_account(engine: Engine, name: str) -> Account | None:
    """Look an account up by name."""
    with reading(engine) as conn:
        return load_account(conn, name=name)


def load_account(
    conn: Connection, *, name: str | None = None, account_id: int | None = None
) -> Account | None:
    """:func:`find_account` on the caller's connection, by name or by id."""
    row = stored.account_row(conn, name=name, account_id=account_id)
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
    conn: Connection, account: Account, sender: str
) -> tuple[Account, SenderName | None]:
    """The account with its sender policy and names as stored now, and its entry for
    ``sender``. A send refused for its sender name checks again with this before answering,
    so an approval counts at once, not only after the API's key cache expires."""
    now = load_account(conn, account_id=account.id)
    if now is None:
        return account, None
    return replace(now, actor=account.actor), find_name(conn, account.id, sender)


def rotate_key(engine: Engine, account_id: int, overlap_s: float) -> KeyPair:
    """Issue a new key pair; every older pair stops working ``overlap_s`` seconds from now.

    A pair that already expires sooner keeps its earlier expiry (rotating twice never extends
    a leaked key's life). ``overlap_s=0`` revokes the old pairs at once.
    """
    with transaction(engine) as conn:
        return rotate_key_in(conn, account_id, overlap_s, time.time())


def rotate_key_in(conn: Connection, account_id: int, overlap_s: float, now: float) -> KeyPair:
    """:func:`rotate_key` in the caller's transaction (with its audit entry)."""
    if overlap_s < 0:
        raise ValueError("overlap must not be negative")
    stored.expire_keys(conn, account_id, now + overlap_s)
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
    with transaction(engine) as conn:
        set_limits_in(conn, account_id, api_rate_per_s, daily_cap)


def set_limits_in(
    conn: Connection, account_id: int, api_rate_per_s: float | None, daily_cap: int | None
) -> None:
    """:func:`set_limits` in the caller's transaction."""
    if (api_rate_per_s is not None and api_rate_per_s < 0) or (
        daily_cap is not None and daily_cap < 0
    ):
        raise ValueError("limits must not be negative")
    stored.update_account(conn, account_id, api_rate_per_s=api_rate_per_s, daily_cap=daily_cap)


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
            with transaction(self.engine) as conn:
                stored.touch_key(conn, key_id, time.time())
        except StoreUnavailable:
            pass

    def _load(self, app_hash: str) -> tuple[str, Account | None, float | None, int | None]:
        now = time.time()
        with reading(self.engine) as conn:
            row = stored.live_key(conn, app_hash, now)
            if row is None:
                return "", None, None, None
            account = replace(_account(conn, row), actor=key_actor(int(row.key_id), row.key_name))
            return row.secret_hash, account, row.expires_at, int(row.key_id)
