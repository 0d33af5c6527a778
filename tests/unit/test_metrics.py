"""Metric objects and helpers: names, labels, classification, the API middleware, the exporter's
parsing, and multiprocess aggregation across forked children (without Celery)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from typing import Any

import fakeredis
import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY, Metric
from prometheus_client.parser import text_string_to_metric_families

from dispatcher.api import metrics as api_metrics
from dispatcher.contract import queue_name
from dispatcher.contract.celery_wire import published_at, queue_keys
from dispatcher.ids import new_message_id, uuid7_time
from dispatcher.ops import metrics_dir
from dispatcher.ops.exporter import BrokerCollector
from tests.support.stack import ROOT
from workers import metrics as wm
from workers import observability


def sample(name: str, **labels: str) -> float:
    """A sample's current value in this process's default registry (0 when absent)."""
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


# -- names and labels ----------------------------------------------------------------------------
def _families() -> list[Metric]:
    out: list[Metric] = []
    for mod in (api_metrics, wm):
        for obj in vars(mod).values():
            describe = getattr(obj, "describe", None)
            if callable(describe) and hasattr(obj, "_labelnames"):
                out.extend(describe())
    return out


UNBOUNDED = {"id", "message_id", "phone", "to", "account", "url", "batch", "path", "code"}


def test_every_metric_follows_the_naming_conventions() -> None:
    families = _families()
    assert len(families) >= 20
    for fam in families:
        assert fam.name.startswith("smsdispatch_"), fam.name
        assert fam.documentation, fam.name
        if fam.type == "histogram":
            assert fam.name.endswith("_seconds"), fam.name
        if fam.type == "counter":
            assert not fam.name.endswith("_total"), "prometheus-client appends _total"


def test_no_metric_has_an_unbounded_label() -> None:
    for mod in (api_metrics, wm):
        for obj in vars(mod).values():
            labels = getattr(obj, "_labelnames", None)
            if labels is not None:
                assert not set(labels) & UNBOUNDED, (obj, labels)


def test_otp_latency_buckets_are_fine_below_one_second() -> None:
    below = [b for b in wm.LATENCY_BUCKETS if b < 1]
    assert wm.LATENCY_BUCKETS[0] == 0.005 and wm.LATENCY_BUCKETS[-1] == 10.0
    assert len(below) >= 10 and 0.1 in below and 1.0 in wm.LATENCY_BUCKETS


# -- worker-side helpers ---------------------------------------------------------------------------
def test_record_sent_counts_and_measures_from_due_at_or_the_uuid7_id() -> None:
    before = sample("smsdispatch_messages_sent_total", lane="priority", connection="t1")
    count0 = sample("smsdispatch_send_latency_seconds_count", lane="priority")
    sum0 = sample("smsdispatch_send_latency_seconds_sum", lane="priority")
    now = time.time()
    msgs: list[dict[str, Any]] = [
        {"id": "x", "due_at": now - 0.25},  # explicit clock start
        {"id": new_message_id()},  # accepted "now": its UUIDv7 carries the time
        {"id": "not-a-uuid"},  # no clock: counted, not timed
    ]
    wm.record_sent("priority", "t1", msgs, now + 0.0)
    assert sample("smsdispatch_messages_sent_total", lane="priority", connection="t1") == before + 3
    assert sample("smsdispatch_send_latency_seconds_count", lane="priority") == count0 + 2
    added = sample("smsdispatch_send_latency_seconds_sum", lane="priority") - sum0
    assert 0.25 <= added < 0.5
    le_01 = sample("smsdispatch_send_latency_seconds_bucket", lane="priority", le="0.1")
    assert le_01 >= 1


def test_uuid7_time_reads_our_ids() -> None:
    t = time.time()
    got = uuid7_time(new_message_id())
    assert got is not None and abs(got - t) < 0.05
    assert uuid7_time("5b3e2a36-6a53-4c1e-9a5e-0d0d3c1c2b1a") is None  # v4
    assert uuid7_time("nonsense") is None


@dataclass
class F:
    status: str
    code: str
    http_status: int | None = None


def test_failures_split_into_retries_by_reason_and_final_statuses() -> None:
    def get(name: str, **labels: str) -> float:
        return sample(name, lane="bulk", connection="t2", **labels)

    wm.record_failures(
        "bulk",
        "t2",
        [
            F("retrying", "carrier_throttled", 429),
            F("retrying", "internal", 500),  # the carrier's own code: never a label value
            F("retrying", "carrier_timeout"),
            F("rejected", "unknown_subscriber", 400),
            F("failed", "carrier_http_503", 503),
            F("expired", "validity_expired"),
        ],
    )
    wm.record_expired("bulk", "t2", 2)
    assert get("smsdispatch_retries_total", reason="throttled") == 1
    assert get("smsdispatch_retries_total", reason="server_error") == 1
    assert get("smsdispatch_retries_total", reason="timeout") == 1
    assert get("smsdispatch_messages_failed_total", status="rejected") == 1
    assert get("smsdispatch_messages_failed_total", status="failed") == 1
    assert get("smsdispatch_messages_failed_total", status="expired") == 3


@pytest.mark.parametrize(
    ("code", "http", "reason"),
    [
        ("carrier_unreachable", None, "unreachable"),
        ("carrier_disconnected", None, "connection_lost"),
        ("carrier_bad_response", 200, "bad_response"),
        ("whatever", 408, "timeout"),
        ("whatever", None, "other"),
    ],
)
def test_retry_reasons_are_a_closed_set(code: str, http: int | None, reason: str) -> None:
    assert wm.retry_reason(code, http) == reason


@dataclass
class R:
    http_status: int | None
    latency_ms: float
    error: Any = None


@dataclass
class E:
    code: str


def test_carrier_requests_are_timed_by_outcome_once_per_request() -> None:
    def count(endpoint: str, outcome: str) -> float:
        return sample(
            "smsdispatch_carrier_request_duration_seconds_count",
            connection="t3",
            endpoint=endpoint,
            outcome=outcome,
        )

    wm.record_carrier_call("t3", "batch", [R(200, 12.0), R(200, 12.0, E("unknown_subscriber"))])
    wm.record_carrier_call("t3", "single", [R(429, 3.0, E("carrier_throttled"))])
    wm.record_carrier_call("t3", "single", [R(None, 1000.0, E("carrier_timeout"))])
    wm.record_carrier_call("t3", "single", [R(None, 0.0, E("claim_expired"))])  # not sent
    wm.record_carrier_call("t3", "single", [R(503, 5.0, E("x"))])
    wm.record_carrier_call("t3", "single", [R(400, 5.0, E("x"))])
    assert count("batch", "ok") == 1
    assert count("single", "throttled") == 1
    assert count("single", "timeout") == 1
    assert count("single", "server_error") == 1
    assert count("single", "rejected") == 1
    total = sum(
        count(e, o)
        for e in ("single", "batch")
        for o in ("ok", "throttled", "timeout", "server_error", "rejected", "connection_lost")
    )
    assert total == 5
    assert (
        sample(
            "smsdispatch_carrier_request_duration_seconds_sum",
            connection="t3",
            endpoint="batch",
            outcome="ok",
        )
        == 0.012
    )


def test_rate_limiter_hooks() -> None:
    wm.record_rate_wait("t4", 0.25)
    wm.record_rate_wait("t4", 0.5)
    wm.record_granted("t4", [1, 2, 3])
    wm.set_rate_limit("t4", 1000)
    wm.record_deferred("bulk", "t4", 7)
    assert sample("smsdispatch_rate_limit_waits_total", connection="t4") == 2
    assert sample("smsdispatch_rate_limit_wait_seconds_total", connection="t4") == 0.75
    assert sample("smsdispatch_rate_limit_granted_parts_total", connection="t4") == 6
    assert sample("smsdispatch_rate_limit_parts_per_second", connection="t4") == 1000
    assert (
        sample("smsdispatch_rate_limit_deferred_messages_total", lane="bulk", connection="t4") == 7
    )


@pytest.mark.parametrize(
    ("status", "error", "called", "result"),
    [
        (204, None, True, "delivered"),
        (410, "http_410", True, "http_4xx"),
        (429, "http_429", True, "http_429"),
        (502, "http_502", True, "http_5xx"),
        (None, "timeout", True, "timeout"),
        (None, "connect_error", True, "connect_error"),
        (None, "url_refused", False, "refused"),
        (None, "endpoint_suspended", False, "skipped"),
        (None, "something_new", True, "error"),
    ],
)
def test_webhook_results_are_a_closed_set(
    status: int | None, error: str | None, called: bool, result: str
) -> None:
    assert wm.webhook_result(status, error, called) == result
    assert result in wm.WEBHOOK_RESULTS


def test_webhook_outcomes_count_attempts_and_time_deliveries() -> None:
    from dispatcher.webhooks.records import AttemptRecord, Claimed, Outcome
    from workers.webhooks.classify import Verdict

    claim = Claimed("d1", 1, "message.status", "https://a", "https://b", "{}", 1, 100.0, [])
    first = AttemptRecord("https://a", 101.0, Verdict.RETRY, 503, 5.0, "http_503")
    second = AttemptRecord("https://b", 101.5, Verdict.DELIVERED, 200, 4.0)
    skipped = AttemptRecord(
        "https://a", 102.0, Verdict.REFUSED, error="endpoint_suspended", called=False
    )
    ok = Outcome(claim, "delivered", [first, second], delivered_at=102.5)
    pending = Outcome(claim, "pending", [skipped], next_attempt_at=200.0)

    def counts() -> dict[str, float]:
        return {
            r: sample("smsdispatch_webhook_attempts_total", result=r) for r in wm.WEBHOOK_RESULTS
        }

    before = counts()
    lag0 = sample("smsdispatch_webhook_lag_seconds_sum")
    wm.record_webhook_outcomes([ok, pending])
    after = counts()
    assert {r: after[r] - before[r] for r in after if after[r] != before[r]} == {
        "http_5xx": 1,
        "delivered": 1,
        "skipped": 1,
    }
    assert sample("smsdispatch_webhook_lag_seconds_sum") - lag0 == 2.5


def test_reports_are_counted_from_the_log(tmp_path: Any) -> None:
    from sqlalchemy import insert

    from dispatcher.store.db import make_engine
    from dispatcher.store.migrate import upgrade
    from dispatcher.store.schema import messages

    url = f"sqlite:///{tmp_path}/log.sqlite"
    upgrade(url)
    engine = make_engine(url)
    now = time.time()
    rows = [
        _message_row("m1", "priority", "delivered", created=now - 3),
        _message_row("m2", "priority", "undelivered", created=now - 3),
        _message_row("m3", "bulk", "delivered", created=now - 100, scheduled=now - 10),
    ]
    with engine.begin() as conn:
        conn.execute(insert(messages), rows)
    d0 = sample("smsdispatch_delivery_latency_seconds_count", lane="priority")
    wm.record_reports(engine, "t5", ["m1", "m2", "m3"], received_at=now - 0.2, now=now)
    engine.dispose()
    reported = "smsdispatch_messages_reported_total"
    assert sample(reported, lane="priority", connection="t5", status="delivered") == 1
    assert sample(reported, lane="priority", connection="t5", status="undelivered") == 1
    assert sample(reported, lane="bulk", connection="t5", status="delivered") == 1
    assert sample("smsdispatch_report_lag_seconds_count", connection="t5") == 3
    assert sample("smsdispatch_delivery_latency_seconds_count", lane="priority") == d0 + 1
    # The scheduled message's clock starts at its scheduled time, not at acceptance.
    assert sample("smsdispatch_delivery_latency_seconds_bucket", lane="bulk", le="10.0") >= 1


def _message_row(
    mid: str, lane: str, status: str, created: float, scheduled: float | None = None
) -> dict[str, Any]:
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
        "lane": lane,
        "status": status,
        "created_at": created,
        "status_at": created,
        "scheduled_at": scheduled,
        "valid_until": created + 3600,
    }


# -- the API ---------------------------------------------------------------------------------------
class RefusePosts:
    """Stands in for the request guard: answers POSTs with 413 before routing."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            await send({"type": "http.response.start", "status": 413, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await self.app(scope, receive, send)


def _app() -> FastAPI:
    """Wired as dispatcher/api/app.py is: the guard, then the metrics middleware outermost."""
    app = FastAPI()

    @app.get("/v2.1/sms/{message_id}")
    async def one(message_id: str) -> dict[str, str]:
        return {"id": message_id}

    @app.post("/v2.1/sms")
    async def send() -> dict[str, str]:
        return {}

    app.add_route("/metrics", api_metrics.metrics_endpoint, include_in_schema=False)
    app.add_middleware(RefusePosts)
    app.add_middleware(api_metrics.MetricsMiddleware)
    return app


async def _requests(app: FastAPI) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return [
            await client.get("/v2.1/sms/abc"),
            await client.get("/v2.1/sms/def"),
            await client.get("/nowhere"),
            await client.post("/v2.1/sms", json={}),
            await client.get("/metrics"),
        ]


def test_api_requests_are_labelled_by_route_template() -> None:
    import asyncio

    def get(route: str, method: str, status: str) -> float:
        return sample("smsdispatch_api_requests_total", route=route, method=method, status=status)

    one0 = get("/v2.1/sms/{message_id}", "GET", "200")
    miss0 = get("unmatched", "GET", "404")
    guard0 = get("/v2.1/sms", "POST", "413")
    replies = asyncio.run(_requests(_app()))
    assert [r.status_code for r in replies] == [200, 200, 404, 413, 200]
    assert get("/v2.1/sms/{message_id}", "GET", "200") == one0 + 2
    assert get("unmatched", "GET", "404") == miss0 + 1
    assert get("/v2.1/sms", "POST", "413") == guard0 + 1  # answered before routing
    text = replies[-1].text
    assert "smsdispatch_api_requests_total" in text
    assert "smsdispatch_api_request_duration_seconds_bucket" in text


def test_api_processes_share_a_fresh_directory(tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # restored after the test
    dead = tmp_path / f"api-{2**22 + 1}"  # above Linux's pid_max: no such process
    dead.mkdir()
    mine = tmp_path / f"api-{os.getpid()}"
    mine.mkdir()
    (mine / "counter_1.db").write_bytes(b"old")
    path = metrics_dir.use_multiprocess_dir("api", base=str(tmp_path))
    assert path == str(mine) and os.environ["PROMETHEUS_MULTIPROC_DIR"] == path
    assert not dead.exists() and os.listdir(path) == []


@dataclass
class M:
    status: str


def test_accepted_messages_by_lane_and_status() -> None:
    q0 = sample("smsdispatch_messages_accepted_total", lane="bulk", status="queued")
    s0 = sample("smsdispatch_messages_accepted_total", lane="bulk", status="scheduled")
    n0 = sample("smsdispatch_accept_duration_seconds_count", lane="bulk")
    api_metrics.record_accepted("bulk", [M("queued"), M("queued"), M("scheduled")], 0.004)
    assert sample("smsdispatch_messages_accepted_total", lane="bulk", status="queued") == q0 + 2
    assert sample("smsdispatch_messages_accepted_total", lane="bulk", status="scheduled") == s0 + 1
    assert sample("smsdispatch_accept_duration_seconds_count", lane="bulk") == n0 + 1


# -- the exporter's reading of kombu messages ----------------------------------------------------
def kombu_message(payload: dict[str, Any], headers: dict[str, Any] | None = None) -> bytes:
    """A Celery protocol 2 message as kombu's Redis transport stores it."""
    body = base64.b64encode(json.dumps([[payload], {}, {}]).encode()).decode()
    return json.dumps(
        {
            "body": body,
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {"task": "smsdispatch.send_chunk", "id": "t", **(headers or {})},
            "properties": {"body_encoding": "base64", "delivery_tag": "d", "priority": 0},
        }
    ).encode()


def test_published_at_prefers_the_header_then_the_payload_clock() -> None:
    batch = new_message_id()
    t_batch = uuid7_time(batch)
    assert published_at(kombu_message({"batch": batch}, {"smsd_published_at": 123.5})) == 123.5
    assert published_at(kombu_message({"batch": batch})) == t_batch
    assert published_at(kombu_message({"ids": ["a"]})) is None
    assert published_at(b"not json") is None
    assert published_at(None) is None


def test_collector_sums_priority_sub_lists_and_takes_the_oldest_tail(tmp_path: Any) -> None:
    from dispatcher.store.db import make_engine
    from dispatcher.store.migrate import upgrade

    url = f"sqlite:///{tmp_path}/log.sqlite"
    upgrade(url)
    engine = make_engine(url)
    client = fakeredis.FakeRedis()
    now = 1_900_000_000.0
    main, sub3 = queue_keys(queue_name("bulk"))[0], queue_keys(queue_name("bulk"))[3]
    assert sub3 == "smsd.bulk\x06\x163"
    # LPUSH newest-first, as kombu does: the tail (index -1) is the oldest.
    client.lpush(main, kombu_message({"ids": []}, {"smsd_published_at": now - 30}))
    client.lpush(main, kombu_message({"ids": []}, {"smsd_published_at": now - 2}))
    client.lpush(sub3, kombu_message({"ids": []}, {"smsd_published_at": now - 45}))
    client.lpush("smsd.priority", kombu_message({"ids": []}))  # no clock at all
    collector = BrokerCollector(client, engine, clock=lambda: now)
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in collector.collect()
        for s in fam.samples
    }
    engine.dispose()
    assert got[("smsdispatch_queue_depth", (("lane", "bulk"),))] == 3
    assert got[("smsdispatch_queue_oldest_age_seconds", (("lane", "bulk"),))] == 45
    assert got[("smsdispatch_queue_depth", (("lane", "priority"),))] == 1
    assert ("smsdispatch_queue_oldest_age_seconds", (("lane", "priority"),)) not in got
    assert got[("smsdispatch_queue_oldest_age_seconds", (("lane", "dlr"),))] == 0
    assert got[("smsdispatch_exporter_source_up", (("source", "redis"),))] == 1
    assert got[("smsdispatch_exporter_source_up", (("source", "database"),))] == 1
    assert got[("smsdispatch_webhook_endpoints", (("state", "suspended"),))] == 0


def test_bulk_waiting_per_account_has_a_bounded_label_set(tmp_path: Any) -> None:
    """Top N accounts plus the opt-in ones by id, everyone else summed as "other"; batches
    waiting for fair admission are not reported as unpublished outbox batches."""
    from sqlalchemy import insert

    from dispatcher.store.db import make_engine
    from dispatcher.store.migrate import upgrade
    from dispatcher.store.schema import dispatch_batches

    url = f"sqlite:///{tmp_path}/log.sqlite"
    upgrade(url)
    engine = make_engine(url)
    now = 1_900_000_000.0
    rows = [  # account id → (batches of 500, oldest age)
        {"id": f"b{a}-{i}", "lane": "bulk", "size": 500, "created_at": now - age + i,
         "enqueued_at": None, "account_id": a}
        for a, (batches, age) in {1: (40, 10), 2: (20, 300), 3: (2, 50), 4: (1, 700)}.items()
        for i in range(batches)
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(dispatch_batches), rows)
    collector = BrokerCollector(
        fakeredis.FakeRedis(), engine, clock=lambda: now, top_accounts=2, named_accounts={9}
    )
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in collector.collect()
        for s in fam.samples
    }
    engine.dispose()

    def waiting(label: str) -> tuple[float, float]:
        key = (("account", label),)
        return (
            got[("smsdispatch_bulk_waiting_messages", key)],
            got[("smsdispatch_bulk_waiting_oldest_age_seconds", key)],
        )

    assert waiting("1") == (20_000, 10)
    assert waiting("2") == (10_000, 300)
    assert waiting("other") == (1_500, 700)  # accounts 3 and 4
    assert waiting("9") == (0, 0)  # opted in, idle
    labels = {k[1] for k in got if k[0] == "smsdispatch_bulk_waiting_messages"}
    assert len(labels) == 4
    assert got[("smsdispatch_outbox_unpublished_batches", ())] == 0


def test_collector_hides_a_failing_source_instead_of_reporting_zero(tmp_path: Any) -> None:
    from dispatcher.store.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path}/empty.sqlite")  # no tables
    collector = BrokerCollector(fakeredis.FakeRedis(), engine)
    names = {s.name: s for fam in collector.collect() for s in fam.samples}
    engine.dispose()
    assert "smsdispatch_queue_depth" in names
    assert "smsdispatch_scheduled_due_messages" not in names
    ups = {
        s.labels["source"]: s.value
        for fam in collector.collect()
        for s in fam.samples
        if s.name == "smsdispatch_exporter_source_up"
    }
    assert ups == {"redis": 1, "database": 0}


# -- the worker's pool observability -------------------------------------------------------------
def test_lane_and_port_of_a_pool() -> None:
    assert observability.lane_of("bulk@host", ["smsd.bulk"]) == "bulk"
    assert observability.lane_of("priority@host", []) == "priority"
    assert observability.lane_of("x@host", ["other"]) == "unknown"
    assert observability.listen_address("priority", {}) == ("127.0.0.1", 9101)
    assert observability.listen_address("webhooks", {}) == ("127.0.0.1", 9104)
    env = {"SMSDISPATCH_WORKER_METRICS_PORT": "0", "SMSDISPATCH_WORKER_METRICS_HOST": "0.0.0.0"}
    assert observability.listen_address("bulk", env) == ("0.0.0.0", 0)


def test_the_celery_app_module_does_not_import_the_metrics() -> None:
    """Metric values created before the pool's multiprocess directory exists would stay in the
    main process: importing the app (where the signal handlers are connected) must not create
    any."""
    code = (
        "import sys, workers.app, workers.observability\n"
        "bad = [m for m in ('prometheus_client', 'workers.metrics') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


MULTIPROCESS_SCRIPT = textwrap.dedent(
    """
    import json, multiprocessing, os, signal, sys, time
    from workers import observability
    path = observability.prepare_multiprocess(sys.argv[1])
    observability.STATE.lane = "bulk"
    from workers import metrics   # after the directory exists, as in a pool
    from dispatcher.ids import new_message_id

    def child(n, hold):
        observability.on_process_init()
        observability.on_task_prerun(task_id="t")
        metrics.record_sent("bulk", "default", [{"id": new_message_id()} for _ in range(n)])
        if hold:
            time.sleep(60)    # killed while "busy"
        observability.on_task_postrun(task_id="t", state="SUCCESS")

    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=child, args=(n, False)) for n in (3, 5, 7)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    stuck = ctx.Process(target=child, args=(11, True))
    stuck.start()
    time.sleep(1.0)
    before = observability.render_metrics().decode()
    os.kill(stuck.pid, signal.SIGKILL)
    stuck.join()
    after = observability.render_metrics().decode()
    files = sorted(f for f in os.listdir(path) if f.startswith("counter_"))
    print(json.dumps({"before": before, "after": after, "files": files, "dir": path}))
    """
)


def _values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def test_counts_from_every_child_process_add_up(tmp_path: Any) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    out = subprocess.run(
        [sys.executable, "-c", MULTIPROCESS_SCRIPT, str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    before, after = _values(result["before"]), _values(result["after"])
    sent = ("smsdispatch_messages_sent_total", (("connection", "default"), ("lane", "bulk")))
    assert after[sent] == 3 + 5 + 7 + 11  # the killed child's counts stay: they happened
    assert after[("smsdispatch_send_latency_seconds_count", (("lane", "bulk"),))] == 26
    assert len(result["files"]) >= 4  # one file per child (and none needed from the parent)
    busy = ("smsdispatch_worker_slots", (("lane", "bulk"), ("state", "busy")))
    idle = ("smsdispatch_worker_slots", (("lane", "bulk"), ("state", "idle")))
    assert before[busy] == 1  # the stuck child; finished children are idle, not busy
    # Every child has exited (the last one killed mid-task): no slot is left busy or idle.
    assert after.get(busy, 0) == 0 and after.get(idle, 0) == 0
    done = (
        "smsdispatch_worker_tasks_total",
        (("lane", "bulk"), ("state", "SUCCESS"), ("task", "unknown")),
    )
    assert after[done] == 3
    assert os.path.basename(result["dir"]) == f"worker-{_pid_of(result['dir'])}"


def _pid_of(path: str) -> str:
    return os.path.basename(path).split("-", 1)[1]


def test_opt_in_account_list_is_checked_naming_the_setting() -> None:
    from dispatcher.ops.exporter import account_ids

    assert account_ids(" 7, 12,,") == [7, 12]
    assert account_ids("") == []
    with pytest.raises(ValueError, match="SMSDISPATCH_FAIR_METRICS_ACCOUNTS: 'acme'"):
        account_ids("7,acme")


def test_a_carrier_call_without_http_is_ok_when_accepted() -> None:
    # An SMPP submit has no HTTP status: accepted, it is "ok", not "connection_lost" (every
    # SMPP send was counted as a lost connection before).
    from workers.connectors.base import SubmitResult
    from workers.errors import AmbiguousCarrierError
    from workers.metrics import carrier_outcome

    assert carrier_outcome(SubmitResult("m1", "abc", None, 3.0)) == "ok"
    lost = AmbiguousCarrierError("carrier_disconnected", "dropped")
    assert carrier_outcome(SubmitResult("m1", None, None, 3.0, lost)) == "connection_lost"
    assert carrier_outcome(SubmitResult("m1", "abc", 200, 3.0)) == "ok"
