"""The migrations build exactly the schema the code describes, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from dispatcher.store.db import make_engine
from dispatcher.store.schema import metadata
from tests.support.services import fresh_database

pytestmark = pytest.mark.pgbouncer


def test_migrated_schema_matches_the_code() -> None:
    with fresh_database() as url:
        engine = make_engine(url, pool_size=1)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        engine.dispose()
    assert diff == []
