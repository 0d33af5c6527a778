"""Apply the Alembic migrations programmatically (``smsdispatch migrate``)."""

from __future__ import annotations

import os

from alembic import command
from alembic.config import Config

from dispatcher.store.db import normalize_url

MIGRATIONS_DIR = os.path.join(os.path.dirname(__file__), "migrations")


def alembic_config(database_url: str) -> Config:
    """An Alembic config for our migrations against ``database_url``."""
    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS_DIR)
    cfg.set_main_option("sqlalchemy.url", normalize_url(database_url).replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema at ``database_url`` up to ``revision``."""
    command.upgrade(alembic_config(database_url), revision)
