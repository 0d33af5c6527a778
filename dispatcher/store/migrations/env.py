"""Alembic environment: migrations run against the URL the caller puts in the config."""

from __future__ import annotations

from alembic import context

from dispatcher.store.db import make_engine
from dispatcher.store.schema import metadata

config = context.config
url = config.get_main_option("sqlalchemy.url") or ""
engine = make_engine(url, pool_size=1)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
