"""Every Redis client of every process is built here, from the one setting ``REDIS_URL``.

Two forms of the URL (docs/operations.md, "Redis with Sentinel"):

- ``redis://[[user]:password@]host:port/db`` (also ``rediss://``, ``unix://``): one server,
  handed to redis-py's ``from_url`` unchanged.
- ``redis+sentinel://[[user]:password@]host:port[,host:port…]/<master>[/<db>]`` with optional
  query options ``sentinel_password`` and ``sentinel_username``: the Sentinels to ask, the name
  of the monitored primary and the logical database. The user and password are the data
  servers' (primary and replicas); the Sentinels' own credentials, when they have any, are the
  query options.

With Sentinel a client's pool asks the Sentinels for the primary's address each time it opens a
connection, and redis-py's Sentinel-managed connections drop a connection that finds a replica
(``READONLY``) or a dead server, so after a failover the next command reaches the new primary
without restarting the process. Lua scripts are called through ``register_script`` objects, which
load the script again when a new primary answers ``NOSCRIPT``.

Nothing else in the project constructs a Redis client (tests/unit/test_redis_clients.py
enforces it), so a new client cannot quietly ignore Sentinel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel

__all__ = [
    "SENTINEL_SCHEME",
    "SentinelTarget",
    "async_client",
    "celery_broker",
    "is_sentinel",
    "parse_sentinel_url",
    "sync_client",
]

SENTINEL_SCHEME = "redis+sentinel"
_DEFAULT_SENTINEL_PORT = 26379
_QUERY_OPTIONS = {"sentinel_password", "sentinel_username"}
# How long asking one Sentinel may take: a dead Sentinel must not hold a reconnect for long, the
# next one in the list is asked instead.
_SENTINEL_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class SentinelTarget:
    """A ``redis+sentinel://`` URL, parsed."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None

    def sentinel_kwargs(self) -> dict[str, Any]:
        """Connection options for the Sentinels themselves."""
        kw: dict[str, Any] = {
            "socket_timeout": _SENTINEL_TIMEOUT_S,
            "socket_connect_timeout": _SENTINEL_TIMEOUT_S,
        }
        if self.sentinel_username:
            kw["username"] = self.sentinel_username
        if self.sentinel_password:
            kw["password"] = self.sentinel_password
        return kw

    def server_kwargs(self) -> dict[str, Any]:
        """Connection options for the primary (credentials and database)."""
        kw: dict[str, Any] = {"db": self.db}
        if self.username:
            kw["username"] = self.username
        if self.password:
            kw["password"] = self.password
        return kw


def is_sentinel(url: str) -> bool:
    """Whether ``url`` names a Sentinel-managed primary."""
    return url.split("://", 1)[0].lower() == SENTINEL_SCHEME


def _bad(reason: str) -> ValueError:
    return ValueError(
        f"REDIS_URL: {reason}; expected redis+sentinel://[[user]:password@]host:port"
        "[,host:port…]/<master>[/<db>][?sentinel_password=…]"
    )


def parse_sentinel_url(url: str) -> SentinelTarget:
    """Parse a ``redis+sentinel://`` URL; :class:`ValueError` naming ``REDIS_URL`` if malformed.

    The error never repeats the URL: it may carry a password.
    """
    if not is_sentinel(url):
        raise _bad(f"the scheme must be {SENTINEL_SCHEME}")
    parts = urlsplit(url)
    # urlsplit cannot read a list of hosts: take the network location apart by hand.
    netloc = parts.netloc
    userinfo, _, hosts = netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, sep, pw = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if sep else None
    sentinels: list[tuple[str, int]] = []
    for item in hosts.split(","):
        item = item.strip()
        if not item:
            raise _bad("an empty Sentinel address")
        host, sep, port_s = item.rpartition(":") if item.count(":") == 1 else (item, "", "")
        if item.startswith("["):  # [ipv6]:port
            host, _, port_s = item[1:].partition("]")
            port_s = port_s.lstrip(":")
            sep = ":" if port_s else ""
        if not host:
            raise _bad("a Sentinel address without a host")
        try:
            port = int(port_s) if sep else _DEFAULT_SENTINEL_PORT
        except ValueError:
            raise _bad(f"Sentinel port {port_s!r} is not a number") from None
        if not 0 < port < 65536:
            raise _bad(f"Sentinel port {port} is out of range")
        sentinels.append((host, port))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise _bad("the master name is missing")
    if len(path) > 2:
        raise _bad("too many path segments")
    master = unquote(path[0])
    db = 0
    if len(path) == 2:
        try:
            db = int(path[1])
        except ValueError:
            raise _bad(f"database {path[1]!r} is not a number") from None
        if db < 0:
            raise _bad("the database must not be negative")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - _QUERY_OPTIONS)
    if unknown:
        raise _bad(f"unknown option(s) {', '.join(unknown)}")
    return SentinelTarget(
        sentinels=tuple(sentinels),
        master=master,
        db=db,
        username=username,
        password=password,
        sentinel_username=_last(query, "sentinel_username"),
        sentinel_password=_last(query, "sentinel_password"),
    )


def _last(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] or None if values else None


def sync_client(url: str, **options: Any) -> redis.Redis:
    """A blocking client for ``url``; ``options`` are redis-py connection options.

    Timeouts and ``retry`` given here apply to the data connections; the Sentinels are asked
    with short timeouts of their own.
    """
    if not is_sentinel(url):
        return redis.Redis.from_url(url, **options)
    t = parse_sentinel_url(url)
    sentinel = redis.sentinel.Sentinel(list(t.sentinels), sentinel_kwargs=t.sentinel_kwargs())
    return sentinel.master_for(t.master, redis_class=redis.Redis, **t.server_kwargs(), **options)


def async_client(
    url: str, wait_for_connection_s: float | None = None, **options: Any
) -> redis.asyncio.Redis:
    """An asyncio client for ``url``; same rules as :func:`sync_client`.

    With ``wait_for_connection_s`` (and ``max_connections``) a burst beyond the pool's size
    waits that long for a free connection instead of failing at once, as redis-py's default
    pool does. Sentinel-managed pools cannot wait: give them room (``max_connections``).
    """
    if not is_sentinel(url):
        if wait_for_connection_s is not None:
            pool = redis.asyncio.BlockingConnectionPool.from_url(
                url, timeout=wait_for_connection_s, **options
            )
            return redis.asyncio.Redis(connection_pool=pool)
        return redis.asyncio.Redis.from_url(url, **options)
    t = parse_sentinel_url(url)
    sentinel = redis.asyncio.sentinel.Sentinel(
        list(t.sentinels), sentinel_kwargs=t.sentinel_kwargs()
    )
    return sentinel.master_for(
        t.master, redis_class=redis.asyncio.Redis, **t.server_kwargs(), **options
    )


def celery_broker(url: str) -> tuple[str, dict[str, Any]]:
    """Celery's ``broker_url`` and the transport options it needs for ``url``.

    A plain URL is returned as it is. A Sentinel URL becomes kombu's ``sentinel://`` list (one
    entry per Sentinel, the data servers' credentials and the database on each) with
    ``master_name`` and the Sentinels' credentials as transport options.
    """
    if not is_sentinel(url):
        return url, {}
    t = parse_sentinel_url(url)
    userinfo = ""
    if t.username or t.password:
        userinfo = quote(t.username or "", safe="") + ":" + quote(t.password or "", safe="") + "@"
    broker = ";".join(f"sentinel://{userinfo}{_host(h)}:{p}/{t.db}" for h, p in t.sentinels)
    options: dict[str, Any] = {"master_name": t.master, "sentinel_kwargs": t.sentinel_kwargs()}
    return broker, options


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
