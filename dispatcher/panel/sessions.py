"""Panel sessions, CSRF tokens and the login rate limit, kept in Redis.

Sessions are server-side: the cookie holds a random token, Redis holds
``sha256(token) → {user id, CSRF token}`` with an idle expiry, so logging out (or deleting the
key) ends a session at once and a Redis dump holds no usable cookie. Each session has its own
synchroniser CSRF token that every state-changing form posts back.

Failed logins are counted per username and per client address in keys that expire with the
window; reaching either limit refuses further attempts, right or wrong, until the window ends.
Each attempt is checked and counted in one Redis script, before the password is verified.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from dispatcher.accounts.account import key_hash as _digest  # sha256 hex, as for API keys

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


# Check and count in one step: an attempt is counted as a failure before the password is
# verified, and refused if either count is already at its limit. Concurrent wrong passwords
# cannot all pass the check before any is counted.
_ATTEMPT = """
local wait = 0
for k = 1, 2 do
  local n = tonumber(redis.call('GET', KEYS[k]) or '0')
  if n >= tonumber(ARGV[k]) then
    wait = math.max(wait, redis.call('TTL', KEYS[k]), 1)
  end
end
if wait > 0 then return wait end
for k = 1, 2 do
  if redis.call('INCR', KEYS[k]) == 1 then redis.call('EXPIRE', KEYS[k], ARGV[3]) end
end
return 0
"""


class LoginLimiter:
    """At most ``per_user`` failed logins per username and ``per_ip`` per address per window.

    :meth:`attempt` reserves the try atomically (counted as a failure until
    :meth:`succeeded` says otherwise), so the limit holds under concurrent attempts.
    """

    def __init__(self, redis: Redis, per_user: int, per_ip: int, window_s: float) -> None:
        self.redis = redis
        self.per_user = per_user
        self.per_ip = per_ip
        self.window_s = max(1, int(window_s))
        self._attempt = redis.register_script(_ATTEMPT)

    def _keys(self, username: str, ip: str) -> tuple[str, str]:
        # Hashed: usernames typed by strangers do not end up readable in Redis.
        return (PREFIX + "fail:u:" + _digest(username.lower())[:32], PREFIX + "fail:ip:" + ip)

    async def attempt(self, username: str, ip: str) -> int:
        """Seconds until another attempt is allowed (the attempt is refused), or 0: allowed,
        and counted as failed until :meth:`succeeded`."""
        try:
            wait = await self._attempt(
                keys=list(self._keys(username, ip)),
                args=[self.per_user, self.per_ip, self.window_s],
            )
        except RedisError as exc:
            raise SessionsUnavailable(str(exc)) from None
        return int(wait)

    async def succeeded(self, username: str, ip: str) -> None:
        """A right password clears the username's count and gives the address back the try
        :meth:`attempt` counted."""
        user_key, ip_key = self._keys(username, ip)
        try:
            async with self.redis.pipeline(transaction=True) as p:
                p.delete(user_key)
                p.decr(ip_key)
                await p.execute()
        except RedisError as exc:
            raise SessionsUnavailable(str(exc)) from None
