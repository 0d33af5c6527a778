"""The message log out of reach, at every process that uses it: one error, one answer each.

Every database error leaves ``dispatcher/store/`` as ``StoreUnavailable``; the API answers it
from one handler (503, ``service_unavailable``, ``Retry-After``), the panel with its 503 page,
the CLI with exit code 1, and the scheduler and the worker pools log it and try again without
dying. The log here is a PostgreSQL URL on a loopback port nothing listens on (on SQLite and
PostgreSQL runs alike); ``test_redis_down.py`` also cuts a real PostgreSQL under a running
stack.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient
from structlog.testing import capture_logs

from dispatcher.accounts.account import Authenticator, KeyPair, create_account
from dispatcher.api.app import build_context, create_app
from dispatcher.config import Settings
from dispatcher.contract import TASK_SEND_CHUNK, Chunk, Lane
from dispatcher.intake.broker import Broker
from dispatcher.scheduler.loop import Scheduler
from dispatcher.store.db import StoreUnavailable, make_engine
from tests.support.services import free_port, fresh_database, fresh_redis
from tests.support.stack import ROOT, Stack, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def dead_db() -> str:
    """A database URL nothing answers at (a free loopback port)."""
    return f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/gone"


@pytest.fixture
def redis_url() -> Iterator[str]:
    with fresh_redis() as url:
        yield url


def _unavailable(r: object) -> None:
    status = getattr(r, "status_code", None)
    text = getattr(r, "text", "")
    assert status == 503, text
    body = json.loads(text)
    assert [e["code"] for e in body["errors"]] == ["service_unavailable"], body
    assert body["errors"][0]["message"] == "the message log is unreachable"
    assert getattr(r, "headers", {}).get("retry-after") == "5"


def test_every_api_route_answers_503_when_the_log_is_away(dead_db: str, redis_url: str) -> None:
    """Keys authenticated from a live copy (as from the API's key cache during an outage);
    every other read and write of the request meets the dead server."""
    with fresh_database() as live_url:
        live = make_engine(live_url)
        _account, pair = create_account(live, "shop", sender_policy="open")
        keys = {"Application-Key": pair.application_key, "Authorization": pair.authorization}
        settings = Settings.from_env({}, database_url=dead_db, redis_url=redis_url)
        ctx = build_context(settings)
        ctx.auth = Authenticator(live)
        with TestClient(create_app(settings, ctx), headers=keys) as http:
            body = {"sender": "Shop", "message": "hello", "phoneNumbers": ["+48500100200"]}
            for r in (
                http.post("/v2.1/sms", json=body),
                http.get("/v2.1/sms"),
                http.get("/v2.1/sms/0123456789abcdef"),
                http.get("/v2.1/sms/inbound"),
                http.get("/v2.1/sms/senders"),
                http.post("/v2.1/sms/senders", json={"sender": "Shop"}),
            ):
                _unavailable(r)
        live.dispose()


def test_authentication_against_a_dead_log_is_a_503_and_readyz_names_the_error(
    dead_db: str, redis_url: str
) -> None:
    settings = Settings.from_env({}, database_url=dead_db, redis_url=redis_url)
    keys = KeyPair("a" * 32, "b" * 128)
    headers = {"Application-Key": keys.application_key, "Authorization": keys.authorization}
    with TestClient(create_app(settings, build_context(settings)), headers=headers) as http:
        _unavailable(http.post("/v2.1/sms", json={"sender": "S", "message": "m"}))
        _unavailable(http.get("/v2.1/sms"))
        ready = http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"database": "OperationalError", "redis": "ok"}
        page = http.get("/panel/login")
        assert page.status_code == 200  # no database needed to show the form
        token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        form = {"username": "u", "password": "p" * 12, "csrf_token": token}
        login = http.post("/panel/login", data=form)
        assert login.status_code == 503, login.text
        assert "Temporarily unavailable" in login.text


def test_the_scheduler_logs_and_keeps_ticking(dead_db: str, redis_url: str) -> None:
    settings = Settings.from_env(
        {}, database_url=dead_db, redis_url=redis_url, scheduler_interval_s=0.05
    )
    engine = make_engine(dead_db)
    client = redis.Redis.from_url(redis_url)
    broker = Broker(redis_url)
    sched = Scheduler(settings, engine, broker, client)
    stop = threading.Event()
    with capture_logs() as logs:
        loop = threading.Thread(target=sched.run, args=(stop,), daemon=True)
        loop.start()
        wait_until(
            lambda: sum(e["event"] == "scheduler.tick_failed" for e in logs) >= 3,
            30,
            what="three failed ticks",
        )
        assert loop.is_alive(), "the scheduler died with the log away"
        stop.set()
        loop.join(10)
    assert not loop.is_alive()
    failed = [e for e in logs if e["event"] == "scheduler.tick_failed"]
    assert {e["error"] for e in failed} == {"StoreUnavailable"}
    with pytest.raises(StoreUnavailable) as err:
        sched.tick()
    assert err.value.outage and str(err.value) == "OperationalError"
    broker.close()
    client.close()
    engine.dispose()


def test_a_worker_pool_retries_a_chunk_and_stays_up(dead_db: str, redis_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSDISPATCH_")}
    env.update(
        {
            "DATABASE_URL": dead_db,
            "REDIS_URL": redis_url,
            "PYTHONPATH": ROOT,
            "SMSDISPATCH_LOG_LEVEL": "INFO",
            "SMSDISPATCH_LOG_FORMAT": "json",
            "SMSDISPATCH_CARRIER_URL": f"http://127.0.0.1:{free_port()}",
        }
    )
    with tempfile.TemporaryDirectory(prefix="smsd-store-down-") as logdir:
        stack = Stack(env, dead_db, "", "", logdir)
        stack.start_worker("bulk", concurrency=1)
        try:
            message = {
                "id": "m-store-down",
                "account": 1,
                "to": "+48500100200",
                "sender": "Shop",
                "text": "hello",
                "parts": 1,
                "flash": False,
                "valid_until": time.time() + 3600,
                "attempt": 0,
            }
            broker = Broker(redis_url)
            chunk = Chunk("b-store-down", Lane.BULK, [message])  # type: ignore[list-item]
            broker.publish_task(TASK_SEND_CHUNK, chunk.encode(), Lane.BULK)
            broker.close()

            def retries() -> list[dict[str, object]]:
                return [
                    e
                    for e in map(_json, stack.log("worker-bulk").splitlines())
                    if e.get("event") == "chunk.retry"
                ]

            # The first try, then the retry five seconds later: both refused, the pool alive.
            wait_until(lambda: len(retries()) >= 2, 60, what="the chunk tried twice")
            assert {e["error"] for e in retries()} == {"StoreUnavailable"}
            assert stack.procs["worker-bulk"].poll() is None, "the pool exited"
        finally:
            stack.stop("worker-bulk")


def _json(line: str) -> dict[str, object]:
    try:
        out = json.loads(line)
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}


def test_the_cli_reports_an_unreachable_database_with_exit_code_1(dead_db: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSDISPATCH_")}
    env.update({"DATABASE_URL": dead_db, "PYTHONPATH": ROOT})
    done = subprocess.run(
        [sys.executable, "-m", "dispatcher.cli", "accounts", "limits", "shop", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 1, done.stderr
    error = json.loads(done.stderr.strip().splitlines()[-1])
    assert error == {
        "error": "database_unreachable",
        "message": "the database: OperationalError",
    }
