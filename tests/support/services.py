"""Real services for tests: a fresh database (SQLite or PostgreSQL) and a Redis database."""

from __future__ import annotations

import os
import random
import socket
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

# With ``?pooler=pgbouncer`` (the PgBouncer pass of `make test`), every connection of the tests
# and of the processes they start goes through PgBouncer, creating and dropping databases too.
PG_URL = os.environ.get("SMSD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_BASE = os.environ.get("SMSD_TEST_REDIS", "redis://127.0.0.1:6379")


def backend() -> str:
    """Which database the suite runs on: ``sqlite`` (default) or ``postgres``."""
    return os.environ.get("SMSD_TEST_DB", "sqlite")


def pg_url(database: str, pooler: bool = True) -> str:
    """:data:`PG_URL` naming ``database``; without ``pooler``, in the form libpq accepts."""
    from sqlalchemy.engine import make_url

    from dispatcher.store.db import split_pooler

    bare, kind = split_pooler(PG_URL)
    url = make_url(bare).set(database=database)
    if pooler and kind:
        url = url.update_query_dict({"pooler": kind})
    return url.render_as_string(hide_password=False)


_issued: set[int] = set()
_pick = random.SystemRandom()


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free loopback port, never the same one twice in this process.

    A port found by binding to port 0 is released before the server binds it, so the kernel may
    give it to the next caller as well (a stack's simulator and API once got the same one) or to
    an outgoing connection. Ports are therefore drawn at random below the kernel's ephemeral
    range, which outgoing connections never use, and remembered.
    """
    high = min(_ephemeral_low(), 32768)
    for _ in range(500):
        port = _pick.randrange(15000, high)
        if port in _issued:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _issued.add(port)
        return port
    raise RuntimeError("no free loopback port found")


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new, migrated, empty database; dropped afterwards."""
    from dispatcher.store.migrate import upgrade

    if backend() == "postgres":
        import psycopg

        name = "smsd_t_" + uuid.uuid4().hex[:12]
        admin = pg_url("postgres", pooler=False)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = pg_url(name)
        upgrade(url)
        try:
            yield url
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        with tempfile.TemporaryDirectory(prefix="smsd-db-") as d:
            url = f"sqlite:///{d}/log.sqlite"
            upgrade(url)
            yield url


LEASE_KEY = "smsdispatch:test-redis-db:{}"


def _lease_db(admin: redis.Redis, timeout: float = 120.0) -> int:
    """Claim a logical database 1-13 no other test process is using (a lease in db 0)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for n in range(1, 14):  # 14: benchmarks; 15: rate-limit tests (no flush)
            if admin.set(LEASE_KEY.format(n), os.getpid(), nx=True, ex=3600):
                return n
        time.sleep(0.5)
    raise RuntimeError("no free Redis logical database for tests (1-13 all in use)")


@contextmanager
def fresh_redis() -> Iterator[str]:
    """A flushed Redis logical database of the shared server, leased for this test's life.

    Concurrent test runs (two developers, CI and a benchmark) never share a database.
    """
    admin = redis.Redis.from_url(f"{REDIS_BASE}/0")
    n = _lease_db(admin)
    url = f"{REDIS_BASE}/{n}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()
        admin.delete(LEASE_KEY.format(n))
        admin.close()
