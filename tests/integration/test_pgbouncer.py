"""Every process behind a real PgBouncer in transaction mode (``DATABASE_URL=…?pooler=pgbouncer``).

Debian's pgbouncer, started by ``scripts/ensure-services.sh pgbouncer`` on 127.0.0.1:6432
(``SMSD_TEST_PGBOUNCER_URL``) in front of the test PostgreSQL. Each test makes a fresh database
directly and reaches it through PgBouncer. In transaction mode each transaction may run on
another server connection: a startup ``options`` is refused, and psycopg's prepared statements
go missing or collide; the first test shows both with the URL an operator would write without
the setting, the others that with it every process works and claims are still planned for the
table as it is.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError

from dispatcher.store.db import make_engine, split_pooler
from dispatcher.store.progress import SendProgress, claim
from tests.support.services import backend, fresh_database
from tests.support.stack import Stack, running_stack, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(backend() != "postgres", reason="PgBouncer pools PostgreSQL connections"),
]

PGBOUNCER = os.environ.get("SMSD_TEST_PGBOUNCER_URL", "postgresql://postgres@127.0.0.1:6432")
GROW = (
    "INSERT INTO messages (id, account_id, submission_id, external_id, phone, sender, body, "
    "parts, encoding, flash, lane, status, created_at, status_at, valid_until, attempts) "
    "SELECT gen_random_uuid()::text, 1, 's', '', '+48500100200', 'S', 'b', 1, 'gsm', false, "
    "'bulk', 'queued', 0, 0, 1e12, 0 FROM generate_series(1, 20000)"
)


def via_pgbouncer(url: str, pooler: bool = True) -> str:
    """The database of ``url`` reached through PgBouncer (with ``?pooler=pgbouncer`` unless
    ``pooler`` is False: the URL an operator would write without the setting)."""
    database = make_url(split_pooler(url)[0]).database or ""
    target = make_url(PGBOUNCER).set(database=database, drivername="postgresql+psycopg")
    if pooler:
        target = target.update_query_dict({"pooler": "pgbouncer"})
    return target.render_as_string(hide_password=False)


@contextmanager
def engine(url: str, **kw: Any) -> Iterator[Engine]:
    e = make_engine(url, **kw)
    try:
        yield e
    finally:
        e.dispose()


def _run_alternately(engines: list[Engine], times: int) -> None:
    """The same statement, one transaction at a time from each engine in turn: as an API
    process's requests take whichever pooled connection is free. PgBouncer hands the idle
    server connection to whoever asks, so both clients' statements land on the same one."""
    for _ in range(times):
        for e in engines:
            with e.begin() as conn:
                conn.execute(text("SELECT count(*) FROM messages WHERE status = :s"), {"s": "x"})


def test_without_the_setting_workers_are_refused_and_prepared_statements_collide() -> None:
    with fresh_database() as url:
        plain = via_pgbouncer(url, pooler=False)
        refused = pytest.raises(OperationalError, match="unsupported startup parameter: options")
        with engine(plain, pool_size=1, plan_each_run=True) as worker, refused:
            worker.connect().close()
        collided = pytest.raises(ProgrammingError, match="prepared statement")
        with engine(plain, pool_size=1) as a, engine(plain, pool_size=1) as b, collided:
            _run_alternately([a, b], 10)


def test_engines_prepare_nothing_behind_pgbouncer() -> None:
    with fresh_database() as url:
        bounced = via_pgbouncer(url)
        with (
            engine(bounced, pool_size=1, plan_each_run=True) as worker,
            engine(bounced, pool_size=1) as api,
        ):
            _run_alternately([worker, api], 10)  # what failed above, now without an error
            for e in (worker, api):
                with e.begin() as conn:  # one transaction: one server connection throughout
                    for _ in range(10):
                        conn.execute(text("SELECT count(*) FROM messages"))
                    prepared = conn.execute(text("SELECT count(*) FROM pg_prepared_statements"))
                    assert prepared.scalar() == 0


def test_a_pools_readiness_probe_reaches_the_database_through_pgbouncer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from workers.observability import readiness

    with fresh_database() as url:
        monkeypatch.setenv("DATABASE_URL", via_pgbouncer(url))
        assert readiness()["database"] == "ok"


def _claim_plan(e: Engine, now: float) -> str:
    """The plan PostgreSQL executed the workers' claim with (auto_explain, as notices, in the
    claim's own transaction: the one place a session setting is safe behind PgBouncer)."""
    notices: list[str] = []
    with e.begin() as conn:
        raw = conn.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)
        raw.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        conn.execute(text("LOAD 'auto_explain'"))
        conn.execute(text("SET LOCAL auto_explain.log_min_duration = 0"))
        conn.execute(text("SET LOCAL auto_explain.log_level = notice"))
        claim(conn, [str(uuid.uuid4())], "default", now)
    return "\n".join(notices)


def test_worker_claims_behind_pgbouncer_are_planned_for_the_grown_log() -> None:
    """The fix ``plan_cache_mode`` carried (test_plan_each_run.py) holds without it: statements
    that are never prepared are planned at each run with their values. The claim runs as the
    workers run it (autocommitted, a dozen times on an empty log), the log grows by 20,000
    rows, and the next claim uses the primary key."""
    with fresh_database() as url, engine(via_pgbouncer(url), pool_size=1, plan_each_run=True) as e:
        progress = SendProgress(e)
        now = time.time()
        for _ in range(12):  # past psycopg's 5 runs before preparing, PostgreSQL's 5 custom plans
            assert progress.claim([str(uuid.uuid4())], "default", now) == {}
        with e.begin() as conn:
            conn.execute(text(GROW))
        plan = _claim_plan(e, now)
    assert "messages_pkey" in plan, plan
    assert "Seq Scan" not in plan, plan


def test_api_workers_and_scheduler_serve_concurrent_traffic_behind_pgbouncer() -> None:
    """The API under concurrent requests (the traffic that failed about one transaction in
    ten), priority and bulk pools, the scheduler and the delivery reports, all through
    PgBouncer: every request answered 200, every message sent once and given its final report, no
    database error logged."""
    with (
        fresh_database() as url,
        running_stack(
            workers={"priority": 1, "bulk": 1, "dlr": 1},
            database_url=via_pgbouncer(url),
            carrier_callback_token="t" * 32,
        ) as stack,
    ):
        client = stack.account()

        def burst(n: int) -> list[tuple[int, list[str]]]:
            out = []
            for i in range(25):
                priority = i % 2 == 0
                numbers = [f"+48601{n:02d}{i:02d}{k:02d}" for k in range(1 if priority else 3)]
                body = {"sender": "ACME", "message": f"m{i}", "phoneNumbers": numbers}
                r = client.send({**body, "priority": True} if priority else body)
                ids = [m["id"] for m in r.json().get("data", [])] if r.status_code == 200 else []
                for m in ids:  # a read between writes, as clients poll
                    client.http.get(f"/v2.1/sms/{m}")
                out.append((r.status_code, ids))
            return out

        with ThreadPoolExecutor(8) as pool:
            results = [x for part in pool.map(burst, range(8)) for x in part]
        assert [code for code, _ in results if code != 200] == []
        ids = [m for _, got in results for m in got]
        assert len(ids) == 8 * (13 * 1 + 12 * 3)
        _all_reported(stack, ids)
        logs = stack.logs()
        for needle in ("prepared statement", "StoreUnavailable", "unsupported startup"):
            assert needle not in logs, needle


def _all_reported(stack: Stack, ids: list[str]) -> None:
    counts: dict[str, int] = {}
    with engine(stack.database_url, pool_size=1) as e:

        def reported() -> bool:
            with e.connect() as conn:
                rows = conn.execute(text("SELECT status, count(*) FROM messages GROUP BY status"))
                counts.clear()
                counts.update({str(r[0]): int(r[1]) for r in rows})
            # The simulator's report mix: mostly DELIVRD, some UNDELIV and EXPIRED.
            final = set(counts) <= {"delivered", "undelivered", "expired"}
            return final and sum(counts.values()) == len(ids)

        try:
            wait_until(reported, 60, interval=0.5, what="a final report for every message")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; statuses: {counts}") from None
    submits = [s["ref"] for s in stack.sim_submits()]
    assert sorted(submits) == sorted(ids)  # each submitted exactly once
