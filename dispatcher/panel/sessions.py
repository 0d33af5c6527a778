"""Panel sessions, CSRF tokens and the login rate limit, kept in Redis.

Sessions are server-side: the cookie holds a random token, Redis holds
``sha256(token) → {user id, CSRF token}`` with an idle expiry, so logging out (or deleting the
key) ends a session at once and a Redis dump holds no usable cookie. Each session has its own
synchroniser CSRF token that every state-changing form posts back.

Failed logins are counted per username and per client address in keys that expire with the
window; reaching either limit refuses further attempts, right or wrong, until the window ends.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from dispatcher.accounts import key_hash as _digest  # sha256 hex, as for API keys

PREFIX = "smsd:panel:"


class SessionsUnavailable(Exception):
    """Redis did not answer: the panel cannot check sessions or login attempts."""


@dataclass(frozen=True)
class Session:
    """A logged-in browser: whose it is and its CSRF token."""

    token_hash: str
    user_id: int
    csrf: str

    def csrf_ok(self, posted: str | None) -> bool:
        """Whether a form posted this session's CSRF token (constant-time compare)."""
        return bool(posted) and hmac.compare_digest(self.csrf, str(posted))


class SessionStore:
    """Create, load (refreshing the idle expiry) and end sessions."""

    def __init__(self, redis: Redis, ttl_s: float) -> None:
        self.redis = redis
        self.ttl_s = int(ttl_s)

    async def create(self, user_id: int) -> tuple[str, Session]:
        """A new session for ``user_id``: the cookie value and the session."""
        token = secrets.token_urlsafe(32)
        session = Session(_digest(token), user_id, secrets.token_urlsafe(32))
        data = orjson.dumps({"uid": user_id, "csrf": session.csrf})
        try:
            await self.redis.set(PREFIX + "s:" + session.token_hash, data, ex=self.ttl_s)
        except RedisError as exc:
            raise SessionsUnavailable(str(exc)) from None
        return token, session

    async def load(self, token: str | None) -> Session | None:
        """The session of this cookie value, or ``None``; extends its idle expiry."""
        if not token or len(token) > 128:
            return None
        key = PREFIX + "s:" + _digest(token)
        try:
            raw = await self.redis.getex(key, ex=self.ttl_s)
        except RedisError as exc:
            raise SessionsUnavailable(str(exc)) from None
        if raw is None:
            return None
        data = orjson.loads(raw)
        return Session(_digest(token), int(data["uid"]), str(data["csrf"]))

    async def end(self, session: Session) -> None:
        """Log out: the cookie stops working now."""
        try:
            await self.redis.delete(PREFIX + "s:" + session.token_hash)
        except RedisError as exc:
            raise SessionsUnavailable(str(exc)) from None


class LoginLimiter:
    """At most ``per_user`` failed logins per username and ``per_ip`` per address per window."""

    def __init__(self, redis: Redis, per_user: int, per_ip: int, window_s: float) -> None:
        self.redis = redis
        self.per_user = per_user
        self.per_ip = per_ip
        self.window_s = max(1, int(window_s))

    def _keys(self, username: str, ip: str) -> tuple[str, str]:
        # Hashed: usernames typed by strangers do not end up readable in Redis.
        return (PREFIX + "fail:u:" + _digest(username.lower())[:32], PREFIX + "fail:ip:" + ip)

    async def blocked_for(self, username: str, ip: str) -> int:
        """Seconds until another attempt is allowed (0: allowed now)."""
        ukey, ikey = self._keys(username, ip)
        try:
            async with self.redis.pipeline(transaction=False) as p:
                for command in (p.get, p.ttl):
                    command(ukey)
                    command(ikey)
                ufail, ifail, uttl, ittl = await p.execute()  # get, get, ttl, ttl
        except RedisError as exc:
            raise SessionsUnavailable(str(exc)) from None
        wait = 0
        if ufail is not None and int(ufail) >= self.per_user:
            wait = max(wait, int(uttl), 1)
        if ifail is not None and int(ifail) >= self.per_ip:
            wait = max(wait, int(ittl), 1)
        return wait

    async def failed(self, username: str, ip: str) -> None:
        """Count a failed attempt; the window starts at the first failure."""
        try:
            async with self.redis.pipeline(transaction=True) as p:
                for key in self._keys(username, ip):
                    p.set(key, 0, ex=self.window_s, nx=True)
                    p.incr(key)
                await p.execute()
        except RedisError as exc:
            raise SessionsUnavailable(str(exc)) from None

    async def succeeded(self, username: str) -> None:
        """A right password clears the username's count (not the address's)."""
        try:
            await self.redis.delete(self._keys(username, "")[0])
        except RedisError as exc:
            raise SessionsUnavailable(str(exc)) from None
