"""The carrier callback inbox on a real database (SQLite or PostgreSQL): the API commits
callbacks before answering, the dlr lane applies and deletes them, early reports wait as rows,
and rows whose wake-up task was lost come back through the scheduler (docs/reliability.md)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from dispatcher.api.app import build_context, create_app
from dispatcher.config import Settings
from dispatcher.contract import TASK_APPLY_INBOUND, TASK_APPLY_REPORTS, Lane, queue_name
from dispatcher.scheduler.loop import Scheduler
from dispatcher.store import callback_inbox
from dispatcher.store.db import make_engine
from dispatcher.store.schema import carrier_callbacks
from tests.support.log import queued_messages, set_status, status_of
from tests.support.services import backend, fresh_database, fresh_redis
from workers.connectors.callbacks import parse_smpp_style_report
from workers.reports import apply_stored

pytestmark = pytest.mark.integration
TOKEN = "cb-t0k3n"
REPORT = callback_inbox.REPORT


def _rows(engine: Engine) -> list[Any]:
    c = carrier_callbacks.c
    with engine.connect() as conn:
        return list(conn.execute(select(carrier_callbacks).order_by(c.id)).all())


def test_rows_are_leased_and_taken_again_only_when_due(engine: Engine) -> None:
    with engine.begin() as conn:
        ids = callback_inbox.add(conn, REPORT, "default", [[{"id": "a"}], [{"id": "b"}]], 100, 30)
        [inbound] = callback_inbox.add(conn, "inbound", "default", [[{"id": "m"}]], 100, 30)
    assert len(ids) == 2 and ids[0] < ids[1] < inbound
    with engine.begin() as conn:
        assert callback_inbox.take_due(conn, 129.0, 30) == []  # the API's lease still runs
        due = callback_inbox.take_due(conn, 130.0, 30)
        assert due == [(ids[0], "report"), (ids[1], "report"), (inbound, "inbound")]
        assert callback_inbox.take_due(conn, 130.0, 30) == []  # leased again by the take
        assert callback_inbox.waiting(conn) == {"report": (2, 100.0), "inbound": (1, 100.0)}
    with engine.begin() as conn:
        rows = callback_inbox.lock(conn, [*ids, inbound], REPORT)  # kind-filtered
        assert [(r.id, r.items, r.received_at, r.attempt) for r in rows] == [
            (ids[0], [{"id": "a"}], 100.0, 0),
            (ids[1], [{"id": "b"}], 100.0, 0),
        ]
        callback_inbox.postpone(conn, ids[0], [{"id": "a2"}], 140.0, 1)
        callback_inbox.finish(conn, [ids[1]])
    with engine.begin() as conn:
        assert callback_inbox.take_due(conn, 150.0, 30) == [(ids[0], "report")]
        [row] = callback_inbox.lock(conn, [ids[0]], REPORT)
        assert (row.items, row.attempt) == ([{"id": "a2"}], 1)
    with pytest.raises(ValueError), engine.begin() as conn:
        callback_inbox.add(conn, "other", "default", [[{}]], 1, 1)


def test_applying_deletes_rows_and_keeps_early_reports_as_rows(engine: Engine) -> None:
    sent, queued = queued_messages(engine, 2)
    set_status(engine, sent, "sent", "c-1")
    now = time.time()
    items = [
        {"id": "c-1", "stat": "DELIVRD"},
        {"ref": queued, "stat": "DELIVRD"},  # came before its submit was recorded
        {"id": "c-9", "stat": "NOPE"},  # unreadable: counted, dropped
    ]
    with engine.begin() as conn:
        [row_id] = callback_inbox.add(conn, REPORT, "default", [items], now, 30)
    with engine.begin() as conn:
        [out] = apply_stored(conn, parse_smpp_style_report, [row_id], now + 1, 600)
    assert out.result.applied == [sent] and out.early == 1 and out.unreadable == 1
    assert status_of(engine, sent) == "delivered"
    [row] = _rows(engine)
    assert json.loads(row.items) == [{"ref": queued, "stat": "DELIVRD"}]
    assert row.attempt == 1 and row.due_at == pytest.approx(now + 1 + 2)  # retry_delay(1)

    # Applied twice (a repeated task): nothing changes, nothing is lost.
    set_status(engine, queued, "sent", "c-2")
    with engine.begin() as conn:
        [again] = apply_stored(conn, parse_smpp_style_report, [row_id], now + 4, 600)
        assert apply_stored(conn, parse_smpp_style_report, [row_id], now + 4, 600) == []
    assert again.result.applied == [queued] and again.early == 0
    assert status_of(engine, queued) == "delivered" and _rows(engine) == []


def test_reports_early_past_the_retry_window_are_dropped_with_their_row(engine: Engine) -> None:
    [queued] = queued_messages(engine, 1)
    with engine.begin() as conn:
        [row_id] = callback_inbox.add(
            conn, REPORT, "default", [[{"ref": queued, "stat": "DELIVRD"}]], 100, 30
        )
    with engine.begin() as conn:
        [out] = apply_stored(conn, parse_smpp_style_report, [row_id], 100 + 601, 600)
    assert out.dropped == 1 and out.early == 0 and _rows(engine) == []
    assert status_of(engine, queued) == "queued"


def test_the_scheduler_wakes_due_rows_on_the_dlr_lane(engine: Engine) -> None:
    with engine.begin() as conn:
        [report] = callback_inbox.add(conn, REPORT, "default", [[{"id": "a"}]], 100, 30)
        [inbound] = callback_inbox.add(conn, "inbound", "default", [[{"id": "m"}]], 100, 30)
    published: list[tuple[str, dict[str, Any], Lane]] = []

    class Broker:
        def publish_task(self, name: str, payload: dict[str, Any], lane: Lane) -> None:
            published.append((name, payload, lane))

    with fresh_redis() as redis_url:
        client = redis.Redis.from_url(redis_url)
        sched = Scheduler(Settings.from_env({}), engine, Broker(), client)  # type: ignore[arg-type]
        assert sched._release_due_callbacks(120.0) == 0
        assert sched._release_due_callbacks(131.0) == 2
        assert sched._release_due_callbacks(131.0) == 0  # leased: not published twice
        client.close()
    assert published == [
        (TASK_APPLY_REPORTS, {"ids": [report]}, Lane.DLR),
        (TASK_APPLY_INBOUND, {"ids": [inbound]}, Lane.DLR),
    ]


def test_the_smpp_holder_wakes_receipts_once_settled_and_inbound_at_once(engine: Engine) -> None:
    # An SMSC reports within milliseconds of its submit_sm_resp, before the send lane recorded
    # the submit: the holder commits at once (then answers the deliver_sm) but wakes the dlr
    # lane only after the settling time, many rows per task, and rows taken along must have
    # settled too.
    from workers.smpp.process import Committer

    url = engine.url.render_as_string(hide_password=False)
    committer = Committer(Settings.from_env({}, database_url=url, smpp_receipt_settle_s=0.3))
    woken: list[tuple[str, list[int], float | None]] = []
    committer._wake = lambda kind, ids, fresh_before=None: woken.append(  # type: ignore[method-assign]
        (kind, ids, fresh_before)
    )
    try:
        committer(REPORT, "op", [{"id": "a", "stat": "DELIVRD"}])
        committer(REPORT, "op", [{"id": "b", "stat": "DELIVRD"}])
        committer("inbound", "op", [{"id": "m"}])
        assert [(k, len(ids)) for k, ids, _ in woken] == [("inbound", 1)]
        assert len(_rows(engine)) == 3  # stored before the deliver_sm is answered
        assert committer.wake_due() == 0 and committer.holding
        time.sleep(0.35)
        assert committer.wake_due() == 2 and not committer.holding
        kind, ids, fresh_before = woken[-1]
        assert kind == REPORT and len(ids) == 2
        assert fresh_before is not None and fresh_before <= time.time() - 0.3
        committer(REPORT, "op", [{"id": "c", "stat": "DELIVRD"}])
        assert committer.wake_due(everything=True) == 1  # on the way out: no waiting
    finally:
        committer.close()
    if backend() != "postgres":
        return  # rows are taken along on PostgreSQL only
    with engine.begin() as conn:
        old = callback_inbox.add(conn, REPORT, "op", [[{"id": "x"}]], 100.0, 30)
        new = callback_inbox.add(conn, REPORT, "op", [[{"id": "y"}]], 200.0, 30)
        taken = callback_inbox.lock_fresh(conn, REPORT, ids, 50, received_before=150.0)
        assert [r.id for r in taken] == old
        assert new[0] in [r.id for r in callback_inbox.lock_fresh(conn, REPORT, ids, 50)]


def _app(db_url: str, redis_url: str) -> TestClient:
    settings = Settings.from_env(
        {}, database_url=db_url, redis_url=redis_url, carrier_callback_token=TOKEN
    )
    return TestClient(
        create_app(settings, build_context(settings)),
        headers={"Authorization": f"Bearer {TOKEN}"},
    )


def test_the_api_commits_callbacks_then_wakes_the_dlr_lane() -> None:
    with fresh_database() as db_url, fresh_redis() as redis_url:
        engine = make_engine(db_url)
        with _app(db_url, redis_url) as http:
            r = http.post("/carrier/default/reports", json=[{"id": "c-1", "stat": "DELIVRD"}])
            assert r.status_code == 200, r.text
            assert r.json()["accepted"] == 1
            r = http.post("/carrier/default/inbound", json={"id": "m-1", "from": "+1", "to": "2"})
            assert r.status_code == 200, r.text
        rows = _rows(engine)
        assert [(row.kind, row.connection, json.loads(row.items)) for row in rows] == [
            ("report", "default", [{"id": "c-1", "stat": "DELIVRD"}]),
            ("inbound", "default", [{"id": "m-1", "from": "+1", "to": "2"}]),
        ]
        client = redis.Redis.from_url(redis_url)
        tasks = [json.loads(raw) for raw in client.lrange(queue_name(Lane.DLR), 0, -1)]
        client.close()
        woken = sorted(
            (t["headers"]["task"], json.loads(base64.b64decode(t["body"]))[0][0]["ids"])
            for t in tasks
        )
        assert woken == [
            (TASK_APPLY_INBOUND, [rows[1].id]),
            (TASK_APPLY_REPORTS, [rows[0].id]),
        ]
        engine.dispose()


def test_with_redis_down_a_callback_is_still_stored_and_answered() -> None:
    with fresh_database() as db_url:
        engine = make_engine(db_url)
        with _app(db_url, "redis://127.0.0.1:1/0") as http:  # nothing listens there
            r = http.post("/carrier/default/reports", json={"id": "c-1", "stat": "DELIVRD"})
        assert r.status_code == 200, r.text
        [row] = _rows(engine)
        assert row.kind == "report" and row.due_at > time.time()  # the scheduler's, later
        engine.dispose()


def test_with_the_database_down_the_carrier_is_told_to_retry() -> None:
    with fresh_redis() as redis_url:
        with _app("postgresql+psycopg://postgres@127.0.0.1:1/none", redis_url) as http:
            r = http.post("/carrier/default/reports", json={"id": "c-1", "stat": "DELIVRD"})
        assert r.status_code == 503, r.text
        assert r.json()["errors"][0]["code"] == "service_unavailable"


@pytest.mark.skipif(backend() != "postgres", reason="several dlr processes need PostgreSQL")
def test_a_task_takes_fresh_rows_along_but_not_early_ones_or_held_ones(engine: Engine) -> None:
    """A burst of one-report callbacks is one row each: a task applies the rows never tried yet
    with its own (one transaction for many), leaves early reports to their backoff, and skips
    rows another worker holds."""
    a, b, c, d = queued_messages(engine, 4)
    for mid, cid in ((a, "c-a"), (b, "c-b"), (c, "c-c")):
        set_status(engine, mid, "sent", cid)
    now = time.time()
    with engine.begin() as conn:
        mine, _fresh, held = (
            callback_inbox.add(
                conn, REPORT, "default", [[{"id": cid, "stat": "DELIVRD"}]], now, 30
            )[0]
            for cid in ("c-a", "c-b", "c-c")
        )
        [early] = callback_inbox.add(
            conn, REPORT, "default", [[{"ref": d, "stat": "DELIVRD"}]], now, 30
        )
        callback_inbox.postpone(conn, early, [{"ref": d, "stat": "DELIVRD"}], now + 60, 1)
    with engine.connect() as other:
        other.begin()
        assert [r.id for r in callback_inbox.lock(other, [held], REPORT)] == [held]
        with engine.begin() as conn:
            [out] = apply_stored(conn, parse_smpp_style_report, [mine], now + 1, 600)
        other.rollback()
    assert sorted(out.result.applied) == sorted([a, b]) and out.rows == 2
    assert out.received == {a: pytest.approx(now), b: pytest.approx(now)}
    assert [status_of(engine, m) for m in (a, b, c, d)] == [
        "delivered",
        "delivered",
        "sent",
        "queued",
    ]
    assert sorted(r.id for r in _rows(engine)) == [held, early]  # untouched, for their own turn
