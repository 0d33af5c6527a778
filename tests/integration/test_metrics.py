"""Metrics over real processes: the exporter on a real Redis and log, and a running stack whose
counters, histograms and queue gauges move by exactly what was sent, summed across the prefork
children of a pool. Every scrape also passes ``promtool check metrics`` when promtool is there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, insert, select

from dispatcher.contract import (
    HEADER_PUBLISHED_AT,
    TASK_APPLY_REPORTS,
    TASK_SEND_CHUNK,
    Chunk,
    Lane,
    queue_name,
)
from dispatcher.ids import new_message_id
from dispatcher.intake.broker import Broker
from dispatcher.ops.exporter import BrokerCollector
from dispatcher.store import callback_inbox, dead_letters
from dispatcher.store.db import make_engine
from dispatcher.store.messages import insert_batches
from dispatcher.store.records import Batch
from dispatcher.store.schema import messages, webhook_deliveries, webhook_endpoints
from tests.support.celery_reference import reference_app
from tests.support.services import free_port, fresh_database, fresh_redis
from tests.support.stack import Stack, running_stack, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.pgbouncer]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


# -- helpers ---------------------------------------------------------------------------------------
def parse(text: str) -> Samples:
    """Exposition text → {(sample name, sorted labels): value}."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))


def promtool_check(text: str, what: str) -> None:
    """``promtool check metrics`` on a real scrape (skipped without promtool)."""
    tool = shutil.which("promtool")
    if tool is None:
        return
    result = subprocess.run(
        [tool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"{what}: {result.stdout}{result.stderr}"


def scrape(url: str, what: str) -> Samples:
    r = httpx.get(url, timeout=10)
    assert r.status_code == 200, (url, r.status_code, r.text[:500])
    promtool_check(r.text, what)
    return parse(r.text)


# -- the exporter on a real Redis and a real log ---------------------------------------------------
def _message_row(mid: str, status: str, next_at: float, now: float) -> dict[str, Any]:
    return {
        "id": mid,
        "account_id": 1,
        "submission_id": "s",
        "external_id": mid,
        "phone": "+48111222333",
        "sender": "ACME",
        "body": "x",
        "parts": 1,
        "encoding": "gsm7",
        "flash": False,
        "lane": "bulk",
        "status": status,
        "created_at": now - 600,
        "status_at": now - 600,
        "next_attempt_at": next_at,
        "valid_until": now + 3600,
    }


def test_exporter_reads_kombu_messages_and_the_log() -> None:
    """The ages hold whether the publisher stamps its header or not (the payload's own clock is
    the fallback): everything is published at ``t0`` and the scrape happens "40 s later"."""
    with fresh_redis() as redis_url, fresh_database() as db_url:
        t0 = time.time()  # after the database exists: creating it takes a second or more
        now = t0 + 40.0
        broker = Broker(redis_url)
        engine = make_engine(db_url)
        client = redis.Redis.from_url(redis_url)
        try:
            # Three bulk chunks published by the real producer (kombu's own message format).
            batches = [Batch(new_message_id(), "bulk", [{"id": "m"}]) for _ in range(3)]
            done, error = broker.publish(batches)
            assert error is None and len(done) == 3
            # A priority task stamped 7 s before (by Celery itself), and a report task.
            reference_app(redis_url).send_task(
                TASK_SEND_CHUNK,
                args=[Chunk(new_message_id(), Lane.PRIORITY, []).encode()],
                queue=queue_name(Lane.PRIORITY),
                headers={HEADER_PUBLISHED_AT: t0 - 7.0},
            )
            broker.publish_task(
                TASK_APPLY_REPORTS,
                {"ids": []},
                Lane.DLR,
            )
            # On a loaded machine publishing takes a while: the producer's own stamps lie
            # between t0 and this, so their ages between 40 s and 40 s minus that while.
            published = time.time()
            with engine.begin() as conn:
                conn.execute(
                    insert(messages),
                    [
                        _message_row("h1", "scheduled", now - 50, now),
                        _message_row("h2", "scheduled", now - 5, now),
                        _message_row("h3", "retrying", now - 2, now),
                        _message_row("h4", "retrying", now + 500, now),  # not due yet
                    ],
                )
                insert_batches(conn, [Batch("b-unpublished", "bulk", [])], now - 12)
                callback_inbox.add(conn, "report", "default", [[{"id": "c"}], [{}]], now - 9, 30)
                callback_inbox.add(conn, "report", "default", [[{"id": "d"}]], now - 3, 30)
                [poison] = callback_inbox.add(conn, "report", "default", [[{}]], now - 1, 30)
                assert dead_letters.record_failure(conn, poison, "DataError", now, 1)  # set aside
                conn.execute(
                    insert(webhook_endpoints),
                    [
                        {
                            "account_id": 1,
                            "url": "https://a",
                            "state": "suspended",
                            "changed_at": now,
                        },
                        {"account_id": 1, "url": "https://b", "state": "active", "changed_at": now},
                    ],
                )
                conn.execute(
                    insert(webhook_deliveries),
                    [
                        {
                            "id": "w1",
                            "account_id": 1,
                            "event": "message.status",
                            "url": "https://a",
                            "payload": "{}",
                            "state": "pending",
                            "created_at": now - 300,
                            "next_attempt_at": now - 30,
                        },
                        {
                            "id": "w2",
                            "account_id": 1,
                            "event": "message.status",
                            "url": "https://a",
                            "payload": "{}",
                            "state": "dead",
                            "created_at": now - 300,
                            "next_attempt_at": now - 30,
                        },
                    ],
                )
            registry = CollectorRegistry()
            registry.register(BrokerCollector(client, engine, clock=lambda: now))
            text = generate_latest(registry).decode()
        finally:
            broker.close()
            client.close()
            engine.dispose()
    promtool_check(text, "exporter")
    got = parse(text)

    def g(name: str, **labels: str) -> float:
        return got[(name, tuple(sorted(labels.items())))]

    assert g("smsdispatch_queue_depth", lane="bulk") == 3
    stamped = (now - published - 0.01, now - t0 + 0.01)
    assert stamped[0] <= g("smsdispatch_queue_oldest_age_seconds", lane="bulk") <= stamped[1]
    assert g("smsdispatch_queue_depth", lane="priority") == 1
    assert g("smsdispatch_queue_oldest_age_seconds", lane="priority") == pytest.approx(47)
    assert stamped[0] <= g("smsdispatch_queue_oldest_age_seconds", lane="dlr") <= stamped[1]
    assert g("smsdispatch_queue_depth", lane="webhooks") == 0
    assert g("smsdispatch_queue_oldest_age_seconds", lane="webhooks") == 0
    assert g("smsdispatch_scheduled_due_messages", status="scheduled") == 2
    assert g("smsdispatch_scheduled_due_delay_seconds", status="scheduled") == pytest.approx(50)
    assert g("smsdispatch_scheduled_due_messages", status="retrying") == 1
    assert g("smsdispatch_outbox_unpublished_batches") == 1
    assert g("smsdispatch_outbox_oldest_age_seconds") == pytest.approx(12)
    assert g("smsdispatch_webhook_pending_deliveries") == 1
    assert g("smsdispatch_webhook_due_delay_seconds") == pytest.approx(30)
    assert g("smsdispatch_webhook_oldest_pending_age_seconds") == pytest.approx(300)
    assert g("smsdispatch_webhook_endpoints", state="suspended") == 1
    assert g("smsdispatch_webhook_endpoints", state="active") == 1
    assert g("smsdispatch_callback_inbox_rows", kind="report") == 3
    assert g("smsdispatch_callback_inbox_oldest_age_seconds", kind="report") == pytest.approx(9)
    assert g("smsdispatch_callback_inbox_rows", kind="inbound") == 0
    assert g("smsdispatch_callback_inbox_oldest_age_seconds", kind="inbound") == 0
    assert g("smsdispatch_dead_letters", kind="report") == 1
    assert g("smsdispatch_dead_letters", kind="inbound") == 0
    assert g("smsdispatch_dead_letters", kind="webhook") == 1
    assert g("smsdispatch_exporter_source_up", source="redis") == 1
    assert g("smsdispatch_exporter_source_up", source="database") == 1


# -- a running stack -------------------------------------------------------------------------------
@contextmanager
def metrics_stack(**settings: Any) -> Iterator[tuple[Stack, str]]:
    """A stack with no worker pool yet, an exporter, and a metrics directory we can inspect."""
    with (
        tempfile.TemporaryDirectory(prefix="smsd-metrics-") as metrics_dir,
        running_stack(workers={}, metrics_dir=metrics_dir, **settings) as st,
    ):
        port = free_port()
        st.env["SMSDISPATCH_EXPORTER_PORT"] = str(port)
        st.spawn("exporter", [sys.executable, "-m", "dispatcher.cli", "exporter"])
        exporter = f"http://127.0.0.1:{port}"
        wait_until(lambda: _ok(exporter + "/readyz"), 30, what="exporter ready")
        yield st, exporter


def start_pool(st: Stack, lane: str, concurrency: int) -> str:
    """Start a pool on its own metrics port; its base URL."""
    port = free_port()
    st.env["SMSDISPATCH_WORKER_METRICS_PORT"] = str(port)
    st.start_worker(lane, concurrency)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _ok(url + "/readyz"), 30, what=f"{lane} pool ready")
    return url


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def count_status(st: Stack, status: str) -> int:
    engine = st.db()
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(messages).where(messages.c.status == status)
                ).scalar_one()
            )
    finally:
        engine.dispose()


def per_process_sent(pool_dir: str) -> dict[int, float]:
    """``smsdispatch_messages_sent_total`` as each process of a pool wrote it."""
    out: dict[int, float] = {}
    for name in os.listdir(pool_dir):
        if not (name.startswith("counter_") and name.endswith(".db")):
            continue
        pid = int(name[len("counter_") : -len(".db")])
        with tempfile.TemporaryDirectory() as one:
            shutil.copy(os.path.join(pool_dir, name), one)
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=one)
            got = parse(generate_latest(registry).decode())
        out[pid] = total(got, "smsdispatch_messages_sent_total")
    return out


BULK = 40
CHUNK = 5
OTPS = 3


@pytest.mark.slow
def test_counters_histograms_and_queue_gauges_move_by_what_was_sent() -> None:
    """Pending wiring: needs the instrumentation calls, ``smsdispatch exporter`` and the API's
    ``/metrics`` (see docs/operations.md, "Metrics")."""
    with metrics_stack(chunk_size=CHUNK, carrier_tps=2000) as (st, exporter):
        priority = start_pool(st, "priority", 1)
        client = st.account()
        api0 = scrape(st.api_url + "/metrics", "api")
        base = total(
            api0, "smsdispatch_api_requests_total", route="/v2.1/sms", method="POST", status="200"
        )

        # OTPs first: the priority pool sends them at once.
        otp_ids = []
        for i in range(OTPS):
            r = client.send(
                {
                    "sender": "Bank",
                    "message": f"Code {i}",
                    "phoneNumbers": [f"+4850000000{i}"],
                    "priority": True,
                }
            )
            assert r.status_code == 200 and r.json()["meta"]["lane"] == "priority", r.text
            otp_ids.append(r.json()["data"][0]["id"])
        wait_until(lambda: count_status(st, "sent") == OTPS, 30, what="OTPs sent")

        # A bulk backlog while no bulk pool runs: 8 chunks. The fair lane's admitter keeps
        # the Redis queue shallow (SMSDISPATCH_FAIR_MIN_TASKS, 2, when nothing drains it); the
        # rest waits in the log, reported per account (docs/campaigns.md).
        for half in range(2):
            numbers = [f"+486010{half}{i:04d}" for i in range(BULK // 2)]
            r = client.send({"sender": "Shop", "message": "Sale", "phoneNumbers": numbers})
            assert r.status_code == 200 and r.json()["meta"]["sentSms"] == BULK // 2, r.text
        chunks, in_redis = BULK // CHUNK, 2
        waiting = wait_until(
            lambda: (
                (s := scrape(exporter + "/metrics", "exporter"))
                and total(s, "smsdispatch_queue_depth", lane="bulk") == in_redis
                and total(s, "smsdispatch_queue_oldest_age_seconds", lane="bulk") >= 1.0
                and total(s, "smsdispatch_bulk_waiting_messages") == BULK - in_redis * CHUNK
                and total(s, "smsdispatch_bulk_waiting_oldest_age_seconds") >= 1.0
                and s
            ),
            30,
            what="bulk backlog seen by the exporter",
        )
        assert total(waiting, "smsdispatch_outbox_unpublished_batches") == 0
        assert total(waiting, "smsdispatch_queue_depth", lane="priority") == 0
        assert total(waiting, "smsdispatch_exporter_source_up") == 2

        # Each chunk takes a while at the carrier, so the three children share the work.
        st.sim_config(latency_ms=150)
        bulk = start_pool(st, "bulk", 3)
        wait_until(lambda: count_status(st, "sent") == OTPS + BULK, 60, what="bulk sent")
        drained = wait_until(
            lambda: (
                (s := scrape(exporter + "/metrics", "exporter"))
                and total(s, "smsdispatch_queue_depth", lane="bulk") == 0
                and s
            ),
            30,
            what="bulk queue drained",
        )
        assert total(drained, "smsdispatch_queue_oldest_age_seconds", lane="bulk") == 0

        # The API: requests by route template and status, messages accepted by lane.
        api = scrape(st.api_url + "/metrics", "api")
        posts = total(
            api, "smsdispatch_api_requests_total", route="/v2.1/sms", method="POST", status="200"
        )
        assert posts - base == OTPS + 2
        assert total(api, "smsdispatch_messages_accepted_total", lane="bulk") == BULK
        assert total(api, "smsdispatch_messages_accepted_total", lane="priority") == OTPS
        assert total(api, "smsdispatch_accept_duration_seconds_count", lane="priority") == OTPS

        # The pools: counts, latency histograms, carrier requests, limiter, tasks, slots.
        w_bulk = scrape(bulk + "/metrics", "bulk pool")
        w_prio = scrape(priority + "/metrics", "priority pool")
        assert total(w_bulk, "smsdispatch_messages_sent_total", lane="bulk") == BULK
        assert total(w_prio, "smsdispatch_messages_sent_total", lane="priority") == OTPS
        assert total(w_bulk, "smsdispatch_send_latency_seconds_count", lane="bulk") == BULK
        # Every bulk message waited over a second in Redis before a pool existed.
        assert total(w_bulk, "smsdispatch_send_latency_seconds_bucket", lane="bulk", le="1.0") == 0
        assert total(w_bulk, "smsdispatch_send_latency_seconds_sum", lane="bulk") >= BULK
        assert total(w_prio, "smsdispatch_send_latency_seconds_count", lane="priority") == OTPS
        assert (
            total(w_prio, "smsdispatch_send_latency_seconds_bucket", lane="priority", le="+Inf")
            == OTPS
        )
        stats = st.sim_stats()
        batch_requests = total(
            w_bulk, "smsdispatch_carrier_request_duration_seconds_count", endpoint="batch"
        )
        assert batch_requests == stats["batches"] == chunks
        assert (
            total(w_prio, "smsdispatch_carrier_request_duration_seconds_count", outcome="ok")
            == OTPS
        )
        granted = total(w_bulk, "smsdispatch_rate_limit_granted_parts_total") + total(
            w_prio, "smsdispatch_rate_limit_granted_parts_total"
        )
        assert granted == stats["submits"] == OTPS + BULK
        assert total(w_bulk, "smsdispatch_rate_limit_parts_per_second") == 2000
        assert (
            total(
                w_bulk,
                "smsdispatch_worker_tasks_total",
                task="smsdispatch.send_chunk",
                state="SUCCESS",
            )
            == chunks
        )
        assert total(w_bulk, "smsdispatch_worker_slots", lane="bulk") == 3
        assert total(w_bulk, "smsdispatch_worker_slots", lane="bulk", state="busy") == 0
        assert total(w_bulk, "smsdispatch_worker_concurrency", lane="bulk") == 3
        assert total(w_bulk, "smsdispatch_messages_failed_total") == 0

        # The sum above is made of several children's own counts.
        pool_dir = os.path.join(
            st.env["SMSDISPATCH_METRICS_DIR"], f"worker-{st.procs['worker-bulk'].pid}"
        )
        per_pid = per_process_sent(pool_dir)
        workers_used = {pid for pid, n in per_pid.items() if n}
        assert len(workers_used) >= 2, per_pid
        assert sum(per_pid.values()) == BULK
        assert st.procs["worker-bulk"].pid not in workers_used  # the main process sends nothing

        for url in (bulk, priority):
            assert httpx.get(url + "/healthz", timeout=5).status_code == 200
            ready = httpx.get(url + "/readyz", timeout=5)
            assert ready.status_code == 200 and ready.json()["checks"]["redis"] == "ok"


@pytest.mark.slow
def test_delivery_reports_are_counted_and_timed() -> None:
    """Pending wiring, as above, plus ``metrics.record_reports`` in the dlr task."""
    n = 12
    with metrics_stack(carrier_callback_token="metrics-test-token") as (st, _exporter):
        priority = start_pool(st, "priority", 1)
        dlr = start_pool(st, "dlr", 1)
        client = st.account()
        for i in range(n):
            r = client.send(
                {
                    "sender": "Bank",
                    "message": "Code",
                    "phoneNumbers": [f"+4851000{i:04d}"],
                    "priority": True,
                }
            )
            assert r.status_code == 200, r.text

        def finals() -> int:
            return sum(
                count_status(st, s) for s in ("delivered", "undelivered", "expired", "rejected")
            )

        wait_until(lambda: finals() == n, 60, what="every report applied")
        delivered = count_status(st, "delivered")
        w_dlr = wait_until(
            lambda: (
                (s := scrape(dlr + "/metrics", "dlr pool"))
                and total(s, "smsdispatch_messages_reported_total") == n
                and s
            ),
            20,
            what="reports counted",
        )
        assert total(w_dlr, "smsdispatch_messages_reported_total", lane="priority") == n
        assert total(w_dlr, "smsdispatch_messages_reported_total", status="delivered") == delivered
        assert total(w_dlr, "smsdispatch_report_lag_seconds_count", connection="default") == n
        assert (
            total(w_dlr, "smsdispatch_delivery_latency_seconds_count", lane="priority") == delivered
        )
        assert total(w_dlr, "smsdispatch_worker_tasks_total", task="smsdispatch.apply_reports") >= 1
        assert (
            total(scrape(priority + "/metrics", "priority pool"), "smsdispatch_messages_sent_total")
            == n
        )
