"""Workers plan each statement for ``messages`` as it is now (PostgreSQL only).

The pathology (scenario C): psycopg prepares a statement after five runs; PostgreSQL then keeps
a generic plan made for the table at that moment. The claim, planned while the log was nearly
empty, kept scanning the whole table after it had grown. Reproduced here in SQL: the same
prepared claim, run six times on an empty log, then explained after 20,000 rows arrived.
"""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import Engine

from dispatcher.store.db import make_engine
from tests.support.services import backend, fresh_database

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(backend() != "postgres", reason="a PostgreSQL planner setting"),
]

CLAIM = (
    "PREPARE claim(text[], float8) AS UPDATE messages SET status = 'sending', status_at = $2 "
    "WHERE id = ANY($1) AND status = 'queued' AND valid_until > $2 RETURNING id"
)
GROW = (
    "INSERT INTO messages (id, account_id, submission_id, external_id, phone, sender, body, "
    "parts, encoding, flash, lane, status, created_at, status_at, valid_until, attempts) "
    "SELECT gen_random_uuid()::text, 1, 's', '', '+48500100200', 'S', 'b', 1, 'gsm', false, "
    "'bulk', 'queued', 0, 0, 1e12, 0 FROM generate_series(1, 20000)"
)


def _execute(now: float) -> str:
    # EXECUTE takes no bound parameters: literals (a fresh uuid and a float, nothing external).
    return f"EXECUTE claim(ARRAY['{uuid.uuid4()}'], {now!r})"


def _plan_after_growth(engine: Engine) -> str:
    # Autocommitted, as the workers claim: each statement its own transaction.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(CLAIM)
        now = time.time()
        for _ in range(6):  # past PostgreSQL's five custom plans: a generic one is cached
            conn.exec_driver_sql(_execute(now))
        conn.exec_driver_sql(GROW)
        rows = conn.exec_driver_sql("EXPLAIN " + _execute(now)).fetchall()
    return "\n".join(r[0] for r in rows)


def _plan(plan_each_run: bool) -> str:
    with fresh_database() as url:  # each engine starts on an empty log
        engine = make_engine(url, pool_size=1, plan_each_run=plan_each_run)
        try:
            return _plan_after_growth(engine)
        finally:
            engine.dispose()


def test_a_worker_engine_claims_by_primary_key_once_the_log_has_grown() -> None:
    plan = _plan(plan_each_run=True)
    assert "messages_pkey" in plan, plan
    assert "Seq Scan" not in plan, plan
    # The same statement on an engine that caches plans keeps the empty-table plan, which
    # reads every queued row (a sequential scan, or the partial index of queued messages by
    # batch) instead of looking the ids up: the reason the setting exists.
    cached = _plan(plan_each_run=False)
    assert "messages_pkey" not in cached, cached
    assert "Seq Scan on messages" in cached or "ix_messages_batch" in cached, cached


def test_only_engines_that_ask_plan_each_run() -> None:
    with fresh_database() as url:
        for flag, mode in ((True, "force_custom_plan"), (False, "auto")):
            engine = make_engine(url, pool_size=1, plan_each_run=flag)
            try:
                with engine.connect() as conn:
                    assert conn.exec_driver_sql("SHOW plan_cache_mode").scalar() == mode
            finally:
                engine.dispose()
