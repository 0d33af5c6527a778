"""Delivery-report rules on a real database: forward only, duplicates ignored, early retried."""

from __future__ import annotations

import time
from typing import Any

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


def test_a_report_for_a_paused_message_is_early_not_ignored() -> None:
    """A timed-out attempt the carrier took, its message paused before the retry: the report
    waits for the retry's look-up to record the submit (CI's chaos run: it was ignored, and the
    message stayed ``sent`` with no report for good)."""
    with fresh_database() as url:
        engine, (a,) = _setup(url, 1)
        set_status(engine, a, Status.PAUSED)
        now = time.time()
        with engine.begin() as conn:
            r = apply_reports(conn, "default", [rep(None, Status.DELIVERED, "DELIVRD", a)], now)
        assert r.early == [0] and r.ignored == 0 and status_of(engine, a) == "paused"
        set_status(engine, a, Status.SENT, "c-a")
        with engine.begin() as conn:
            r = apply_reports(conn, "default", [rep(None, Status.DELIVERED, "DELIVRD", a)], now)
        assert r.applied == [a] and status_of(engine, a) == "delivered"
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


def test_a_batch_writes_each_final_report_only_over_the_state_it_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The batch's statement is a compare and set per message: a message another batch moved
    meanwhile is counted as a duplicate, and the rest of the batch is still applied with the
    values of its own report (undelivered ones carry their error)."""
    from dispatcher.store import reports as store_reports

    with fresh_database() as url:
        engine, ids = _setup(url, 3)
        a, b, c = ids
        for mid, cid in ((a, "c-a"), (b, "c-b"), (c, "c-c")):
            set_status(engine, mid, Status.SENT, cid)
        read = store_reports._rows

        def read_then_race(conn: Any, connection: str, reports: Any) -> Any:
            rows = read(conn, connection, reports)  # what the batch saw: all three sent
            # Another batch makes c final between this batch's read and its write.
            conn.execute(text("UPDATE messages SET status = 'expired' WHERE id = :i"), {"i": c})
            return rows

        monkeypatch.setattr(store_reports, "_rows", read_then_race)
        now = time.time()
        with engine.begin() as conn:
            r = apply_reports(
                conn,
                "default",
                [
                    rep("c-a", Status.DELIVERED, "DELIVRD"),
                    ReportUpdate("c-b", None, Status.UNDELIVERED, "UNDELIV", "012", now - 1),
                    rep("c-c", Status.DELIVERED, "DELIVRD"),
                ],
                now,
            )
        assert r.applied == [a, b] and r.duplicates == 1
        assert [status_of(engine, m) for m in ids] == ["delivered", "undelivered", "expired"]
        with engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT error_code, error_description, error_permanent, report_stat,"
                    " report_error, final_at, report_at FROM messages WHERE id = :i"
                ),
                {"i": b},
            ).one()
        assert tuple(row[:5]) == ("012", "handset report UNDELIV", True, "UNDELIV", "012")
        assert row.final_at == pytest.approx(now - 1) and row.report_at == pytest.approx(now)
        engine.dispose()
