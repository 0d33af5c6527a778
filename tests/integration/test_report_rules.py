"""Delivery-report rules on a real database: forward only, duplicates ignored, early retried."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine, text

from dispatcher.contract import Status
from dispatcher.store.db import make_engine
from dispatcher.store.reports import REPORT_TIMEOUT, ReportUpdate, apply_reports, expire_unreported
from tests.support.log import queued_messages, set_status, status_of
from tests.support.services import fresh_database

pytestmark = pytest.mark.integration


def _setup(url: str, n: int) -> tuple[Engine, list[str]]:
    engine = make_engine(url, pool_size=1)
    return engine, queued_messages(engine, n)


def rep(cid: str | None, status: str, stat: str, ref: str | None = None) -> ReportUpdate:
    return ReportUpdate(cid, ref, status, stat, None, None)


def test_forward_only_duplicates_and_early() -> None:
    with fresh_database() as url:
        engine, ids = _setup(url, 4)
        a, b, c, _ = ids
        set_status(engine, a, Status.SENT, "c-a")
        set_status(engine, b, Status.SENT, "c-b")
        set_status(engine, c, Status.SENDING)  # submit not yet recorded
        now = time.time()
        with engine.begin() as conn:
            r = apply_reports(
                conn,
                "default",
                [
                    rep("c-a", Status.DELIVERED, "DELIVRD"),
                    rep("c-a", Status.DELIVERED, "DELIVRD"),  # duplicate in the same batch
                    rep("c-b", "", "ACCEPTD"),  # intermediate: no change
                    rep(None, Status.DELIVERED, "DELIVRD", ref=c),  # early
                    rep("c-unknown", Status.DELIVERED, "DELIVRD"),  # early (unknown carrier id)
                ],
                now,
            )
        assert r.applied == [a] and r.duplicates == 1 and r.intermediate == 1
        assert r.early == [3, 4]
        assert status_of(engine, a) == "delivered" and status_of(engine, b) == "sent"
        with engine.begin() as conn:  # a late conflicting report does not move it back
            r = apply_reports(conn, "default", [rep("c-a", Status.UNDELIVERED, "UNDELIV")], now)
        assert r.ignored == 1 and status_of(engine, a) == "delivered"
        set_status(engine, c, Status.SENT, "c-c")  # the submit is recorded: the retry applies
        with engine.begin() as conn:
            r = apply_reports(conn, "default", [rep(None, Status.UNDELIVERED, "UNDELIV", c)], now)
        assert r.applied == [c] and status_of(engine, c) == "undelivered"
        engine.dispose()  # type: ignore[attr-defined]


def test_no_report_expires_then_a_real_report_still_wins() -> None:
    with fresh_database() as url:
        engine, ids = _setup(url, 1)
        set_status(engine, ids[0], Status.SENT, "c-x")
        far = time.time() + 10 * 86400
        with engine.begin() as conn:
            assert expire_unreported(conn, far, time.time()) == [ids[0]]
        with engine.connect() as conn:
            code = conn.execute(text("SELECT error_code FROM messages")).scalar_one()
        assert status_of(engine, ids[0]) == "expired" and code == REPORT_TIMEOUT
        with engine.begin() as conn:
            r = apply_reports(
                conn, "default", [rep("c-x", Status.DELIVERED, "DELIVRD")], time.time()
            )
        assert r.applied == ids and status_of(engine, ids[0]) == "delivered"
        engine.dispose()  # type: ignore[attr-defined]
