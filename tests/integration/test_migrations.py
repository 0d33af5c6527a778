"""The migrations build exactly the schema the code describes, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from dispatcher.store.db import make_engine
from dispatcher.store.migrate import MIGRATION_LOCK_KEY
from dispatcher.store.schema import metadata
from tests.support.services import PG_URL, backend, fresh_database
from tests.support.stack import wait_until


# Not the migration-lock test: a session's advisory lock needs a direct connection, which is
# what `smsdispatch migrate` must use (docs/operations.md), not PgBouncer in transaction mode.
@pytest.mark.pgbouncer
def test_migrated_schema_matches_the_code() -> None:
    with fresh_database() as url:
        engine = make_engine(url, pool_size=1)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        engine.dispose()
    assert diff == []


@contextmanager
def _empty_postgres_database() -> Iterator[str]:
    import psycopg

    name = "smsd_t_" + uuid.uuid4().hex[:12]
    admin = PG_URL.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _migrate(url: str) -> subprocess.Popen[str]:
    env = {**os.environ, "DATABASE_URL": url}
    return subprocess.Popen(
        [sys.executable, "-m", "dispatcher.cli", "--json", "migrate"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _waiting_on_the_lock(conn: Any) -> int:
    return int(
        conn.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND objid = :k AND database = (SELECT oid FROM pg_database "
                "WHERE datname = current_database())"
            ),
            {"k": MIGRATION_LOCK_KEY},
        ).scalar_one()
    )


def _tables(url: str) -> set[str]:
    engine = make_engine(url, pool_size=1)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


@pytest.mark.skipif(backend() != "postgres", reason="the advisory lock is PostgreSQL's")
def test_pods_starting_together_migrate_one_at_a_time() -> None:
    """Every new pod runs `smsdispatch migrate` first (deploy/k8s init containers): several at
    once on an empty database all succeed, one migrating while the others wait for its lock."""
    with _empty_postgres_database() as url:
        # While someone holds the lock, a migrator waits and changes nothing.
        engine = make_engine(url, pool_size=1)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as holder:
            holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            waiting = _migrate(url)
            together = [_migrate(url) for _ in range(2)]
            # All three queue on the lock (seen in pg_locks), none has touched the schema.
            wait_until(lambda: _waiting_on_the_lock(holder) == 3 or None, 90, what="three waiters")
            assert waiting.poll() is None
            assert "alembic_version" not in _tables(url)
            holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
        engine.dispose()
        for proc in [waiting, *together]:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            assert json.loads(out) == {"migrated": True}
        engine = make_engine(url, pool_size=1)
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
            heads = conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one()
        engine.dispose()
        assert heads == 1
