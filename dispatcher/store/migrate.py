"""Apply the Alembic migrations programmatically (``smsdispatch migrate``).

Every new pod runs ``smsdispatch migrate`` before its process starts (deploy/k8s: an init
container), so several may run at once: on PostgreSQL a session advisory lock lets one migrate
while the others wait, then find the schema at head and change nothing. SQLite is one host's
file and takes no lock.
"""

from __future__ import annotations

import os

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from dispatcher.store.db import make_engine, normalize_url

MIGRATIONS_DIR = os.path.join(os.path.dirname(__file__), "migrations")
# pg_advisory_lock's key for migrations ("smsd" in ASCII); nothing else takes it.
MIGRATION_LOCK_KEY = 0x736D7364


def alembic_config(database_url: str) -> Config:
    """An Alembic config for our migrations against ``database_url``."""
    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS_DIR)
    cfg.set_main_option("sqlalchemy.url", normalize_url(database_url).replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema at ``database_url`` up to ``revision`` (one migrator at a time)."""
    if not normalize_url(database_url).startswith("postgresql"):
        command.upgrade(alembic_config(database_url), revision)
        return
    engine = make_engine(database_url, pool_size=1)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            # Held by this session while Alembic migrates on its own connection; released
            # when the session ends, whatever happens (a killed pod included).
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            try:
                command.upgrade(alembic_config(database_url), revision)
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
    finally:
        engine.dispose()
