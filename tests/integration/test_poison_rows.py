"""Rows that fail to apply never block the others, on the callback inbox (reports, inbound)
and the webhook outbox, on a real database (SQLite, and PostgreSQL in its pass).

A failing batch is applied again row by row, a failing row item by item: every good item is
applied, the failing item is counted against its own row, tried again after a back-off and set
aside as a dead letter at the limit (docs/security.md, docs/operations.md "DeadLettersWaiting").
Reports match only messages sent through the connection that posts them.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from sqlalchemy import Engine, select, update

from dispatcher.store import callback_inbox, dead_letters
from dispatcher.store.db import make_engine, transient
from dispatcher.store.schema import carrier_callbacks, inbound_messages, webhook_deliveries
from dispatcher.store.webhooks import DeliveryState, recover_stale_deliveries
from dispatcher.webhooks.records import AttemptRecord, Claimed
from dispatcher.webhooks.records import Outcome as WebhookOutcome
from tests.support.log import queued_messages, set_status, status_of
from tests.support.services import backend, fresh_database
from workers.connectors.base import Report
from workers.connectors.callbacks import parse_simple_inbound, parse_smpp_style_report
from workers.inbound import InboundReport, apply_inbound
from workers.isolation import apply_isolated
from workers.reports import TAKE_FRESH_ROWS, Outcome, apply_stored
from workers.webhooks.classify import Verdict
from workers.webhooks.store import SqlDeliveryStore

pytestmark = pytest.mark.integration
REPORT = callback_inbox.REPORT
MAX_FAILURES = 3


def parse(raw: Mapping[str, Any]) -> Report:
    """The generic report format, plus an item that makes applying fail (any bug, any value a
    database refuses: the apply path must survive what it does not expect)."""
    if raw.get("poison"):
        raise RuntimeError("applying this item fails")
    return parse_smpp_style_report(raw)


def report_apply(engine: Engine, now: float) -> Any:
    def apply(ids: Sequence[int], take_fresh: bool) -> list[Outcome]:
        with engine.begin() as conn:
            return apply_stored(conn, parse, ids, now, 600, take_fresh)

    return apply


def add_rows(engine: Engine, kind: str, *groups: list[dict[str, Any]], now: float) -> list[int]:
    with engine.begin() as conn:
        return callback_inbox.add(conn, kind, "default", list(groups), now, 30)


def rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(carrier_callbacks).order_by(carrier_callbacks.c.id)))


def dead(engine: Engine) -> list[dead_letters.DeadCallback]:
    with engine.connect() as conn:
        return dead_letters.listing(conn)


def sent_messages(engine: Engine, n: int) -> list[str]:
    ids = queued_messages(engine, n)
    for i, mid in enumerate(ids):
        set_status(engine, mid, "sent", f"c-{mid[:8]}-{i}")
    return ids


def test_a_poison_item_is_set_aside_and_everything_around_it_is_applied(engine: Engine) -> None:
    m = sent_messages(engine, 4)
    now = time.time()
    mine = add_rows(
        engine,
        REPORT,
        [{"ref": m[0], "stat": "DELIVRD"}],
        [
            {"ref": m[1], "stat": "DELIVRD"},
            {"poison": True, "ref": "x"},
            {"ref": m[2], "stat": "UNDELIV"},
        ],
        now=now,
    )
    [along] = add_rows(engine, REPORT, [{"ref": m[3], "stat": "DELIVRD"}], now=now)

    done = apply_isolated(
        engine, REPORT, mine, report_apply(engine, now), now, MAX_FAILURES, TAKE_FRESH_ROWS
    )
    assert done.isolated and (done.failed, done.dead) == (1, 0)
    statuses = [status_of(engine, x) for x in m]
    assert statuses == ["delivered", "delivered", "undelivered", "delivered"]
    [left] = rows(engine)  # only the poison item, in a row of its own, waiting for its next try
    assert json.loads(left.items) == [{"poison": True, "ref": "x"}]
    assert left.id not in (*mine, along) and left.failures == 1 and left.attempt >= 1
    assert left.due_at == pytest.approx(now + 2) and "RuntimeError" in left.last_error

    # Its next tries fail too; at the limit it is set aside, and blocks nothing meanwhile.
    fresh = sent_messages(engine, 1)[0]
    [other] = add_rows(engine, REPORT, [{"ref": fresh, "stat": "DELIVRD"}], now=now)
    for attempt in (2, 3):
        done = apply_isolated(
            engine, REPORT, [left.id], report_apply(engine, now), now, MAX_FAILURES, 50
        )
        assert done.failed == 1 and done.dead == int(attempt == MAX_FAILURES)
    assert status_of(engine, fresh) == "delivered" and other not in [r.id for r in rows(engine)]
    assert rows(engine) == []
    [letter] = dead(engine)
    assert (letter.id, letter.kind, letter.failures) == (left.id, "report", MAX_FAILURES)
    assert letter.items == [{"poison": True, "ref": "x"}] and "RuntimeError" in letter.error
    assert "applying this item fails" not in letter.error  # the kind of error, never its text
    with engine.connect() as conn:
        assert dead_letters.counts(conn) == {
            "report": (1, pytest.approx(now)),
            "inbound": (0, None),
        }

    # The operator puts it back (after a fix) or drops it.
    with engine.begin() as conn:
        assert dead_letters.retry(conn, "inbound", None, now) == 0  # another kind's: none
        assert dead_letters.retry(conn, "report", [letter.id], now) == 1
    [back] = rows(engine)
    assert (back.id, back.failures, back.due_at) == (letter.id, 0, now) and dead(engine) == []
    with engine.begin() as conn:
        assert dead_letters.record_failure(conn, back.id, "again", now, 1) is True
        assert dead_letters.drop(conn, "report", None) == 1
    assert rows(engine) == [] and dead(engine) == []


def test_database_outages_are_not_counted_against_rows() -> None:
    """An outage is not the row's fault: the batch is left for its lease, nothing counted."""
    with fresh_database() as url:
        engine = make_engine(url)
        [mid] = sent_messages(engine, 1)
        [row] = add_rows(engine, REPORT, [{"ref": mid, "stat": "DELIVRD"}], now=time.time())
        down = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/none", pool_size=1)

        def apply(ids: Sequence[int], take_fresh: bool) -> list[Outcome]:
            with down.begin() as conn:
                return apply_stored(conn, parse, ids, time.time(), 600, take_fresh)

        with pytest.raises(Exception) as err:
            apply_isolated(engine, REPORT, [row], apply, time.time(), 1, 50)
        assert transient(err.value)
        [still] = rows(engine)
        assert (still.id, still.failures) == (row, 0) and dead(engine) == []
        down.dispose()
        engine.dispose()


def test_inbound_rows_are_isolated_the_same_way(engine: Engine) -> None:
    from dispatcher.accounts.account import create_account
    from dispatcher.store.inbound import InboundStore
    from dispatcher.store.numbers import NumberKind, add_number

    account, _ = create_account(engine, f"in-{uuid.uuid4().hex[:8]}")
    with engine.begin() as conn:
        add_number(conn, "+48500100200", account.id, NumberKind.LONG_NUMBER, time.time())
    store = InboundStore(engine)
    now = time.time()

    def parse_in(raw: Mapping[str, Any]) -> Any:
        if raw.get("poison"):
            raise RuntimeError("applying this item fails")
        return parse_simple_inbound(raw)

    def apply(ids: Sequence[int], _take_fresh: bool) -> list[InboundReport]:
        with engine.begin() as conn:
            locked = callback_inbox.lock(conn, ids, callback_inbox.INBOUND)
        out = []
        for row in locked:
            out.append(apply_inbound(store, parse_in, row.connection, row.items, now))
            with engine.begin() as conn:
                callback_inbox.finish(conn, [row.id])
        return out

    item = {"from": "+48600700800", "to": "+48500100200", "text": "hi"}
    ids = add_rows(
        engine,
        callback_inbox.INBOUND,
        [{**item, "id": "mo-1"}, {"poison": True}, {**item, "id": "mo-2"}],
        [{**item, "id": "mo-3"}],
        now=now,
    )
    done = apply_isolated(engine, callback_inbox.INBOUND, ids, apply, now, 1)
    assert (done.failed, done.dead) == (1, 1)
    with engine.connect() as conn:  # mo-1 went in before the batch failed: then a duplicate
        stored = conn.execute(select(inbound_messages.c.carrier_message_id)).scalars().all()
    assert sorted(stored) == ["mo-1", "mo-2", "mo-3"]
    assert rows(engine) == []
    [letter] = dead(engine)
    assert letter.kind == "inbound" and letter.items == [{"poison": True}]


@pytest.mark.skipif(backend() != "postgres", reason="PostgreSQL refuses NUL; SQLite stores it")
def test_a_nul_in_a_stored_report_no_longer_stops_every_report(engine: Engine) -> None:
    """The bug as found: a report with a NUL (stored by a version without the API's checks)
    failed every batch that took it along, so all reports stopped."""
    m = sent_messages(engine, 2)
    now = time.time()
    [poison] = add_rows(engine, REPORT, [{"id": "c-\x00-1", "stat": "DELIVRD"}], now=now)
    [good] = add_rows(engine, REPORT, [{"ref": m[0], "stat": "DELIVRD"}], now=now)
    # The failure as it was: the batch taking the poison row along fails as a whole.
    with pytest.raises(Exception) as err, engine.begin() as conn:
        apply_stored(conn, parse_smpp_style_report, [good], now, 600)
    assert not transient(err.value) and "DataError" in dead_letters.describe(err.value)

    def apply(ids: Sequence[int], take_fresh: bool) -> list[Outcome]:
        with engine.begin() as conn:
            return apply_stored(conn, parse_smpp_style_report, ids, now, 600, take_fresh)

    done = apply_isolated(engine, REPORT, [good], apply, now, 1, TAKE_FRESH_ROWS)
    assert status_of(engine, m[0]) == "delivered" and done.dead == 1
    [letter] = dead(engine)
    assert letter.id == poison and "DataError" in letter.error and "\x00" not in letter.error
    [good2] = add_rows(engine, REPORT, [{"ref": m[1], "stat": "DELIVRD"}], now=now)
    apply_isolated(engine, REPORT, [good2], apply, now, 1, TAKE_FRESH_ROWS)
    assert status_of(engine, m[1]) == "delivered"


def test_reports_only_change_messages_sent_through_the_connection_posting_them(
    engine: Engine,
) -> None:
    """Carrier X cannot mark carrier Y's messages, by our reference or by a carrier id."""
    mine, theirs = sent_messages(engine, 2)
    with engine.begin() as conn:
        conn.execute(update_connection(theirs, "carrier-y"))
    now = time.time()
    with engine.begin() as conn:
        [row] = callback_inbox.add(
            conn,
            REPORT,
            "default",
            [[{"ref": theirs, "stat": "UNDELIV"}, {"id": f"c-{theirs[:8]}-1", "stat": "UNDELIV"}]],
            now,
            30,
        )
    with engine.begin() as conn:
        [out] = apply_stored(conn, parse, [row], now, 600)
    assert out.result.applied == [] and out.early == 2  # unknown to this connection
    assert status_of(engine, theirs) == "sent"
    with engine.begin() as conn:
        [row] = callback_inbox.add(
            conn, REPORT, "carrier-y", [[{"ref": theirs, "stat": "UNDELIV"}]], now, 30
        )
        [row_mine] = callback_inbox.add(
            conn, REPORT, "default", [[{"id": f"c-{mine[:8]}-0", "stat": "DELIVRD"}]], now, 30
        )
    with engine.begin() as conn:
        outs = apply_stored(conn, parse, [row, row_mine], now, 600)
    assert sorted(a for o in outs for a in o.result.applied) == sorted([theirs, mine])
    assert (status_of(engine, theirs), status_of(engine, mine)) == ("undelivered", "delivered")


def update_connection(mid: str, connection: str) -> Any:
    from dispatcher.store.schema import messages

    return update(messages).where(messages.c.id == mid).values(connection=connection)


# -- the webhook outbox --------------------------------------------------------------------------


def _delivery(engine: Engine, state: str = DeliveryState.SENDING, attempts: int = 1) -> str:
    from dispatcher.accounts.account import create_account
    from dispatcher.store.schema import webhook_deliveries as d

    account, _ = create_account(engine, f"wh-{uuid.uuid4().hex[:8]}")
    did = str(uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(
            d.insert().values(
                id=did,
                account_id=account.id,
                message_id=str(uuid.uuid4()),
                event="message.status",
                status_key="delivered",
                url="https://hooks.example.com/x",
                payload="{}",
                state=state,
                attempts=attempts,
                created_at=time.time(),
                next_attempt_at=time.time() - 1,
            )
        )
    return did


def _delivery_row(engine: Engine, did: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(webhook_deliveries).where(webhook_deliveries.c.id == did)).one()


def _outcome(did: str, attempts: int, url: str | None = "https://hooks.example.com/x") -> Any:
    claimed = Claimed(did, 0, "message.status", "https://hooks.example.com/x", None, "{}",
                      attempts, time.time(), ["s"])  # fmt: skip
    tries = [AttemptRecord(url, time.time(), Verdict.DELIVERED, 200, 5.0)]  # type: ignore[arg-type]
    return WebhookOutcome(claimed, DeliveryState.DELIVERED, tries, delivered_at=time.time())


def test_a_webhook_result_that_cannot_be_recorded_is_set_aside_alone(engine: Engine) -> None:
    good, bad = _delivery(engine), _delivery(engine)
    store = SqlDeliveryStore(engine, 3600, max_failures=2)
    # A result the log refuses (here an attempt without its URL) fails its slice as a whole.
    outcomes = [_outcome(good, 1), _outcome(bad, 1, url=None)]
    assert store.record(outcomes, time.time()) == 1
    assert _delivery_row(engine, good).state == "delivered"
    row = _delivery_row(engine, bad)
    assert (row.state, row.failures) == ("pending", 1) and "IntegrityError" in row.last_error
    with engine.begin() as conn:
        conn.execute(
            update(webhook_deliveries)
            .where(webhook_deliveries.c.id == bad)
            .values(state="sending", attempts=2)
        )
    assert store.record([_outcome(bad, 2, url=None)], time.time()) == 0
    assert (_delivery_row(engine, bad).state, _delivery_row(engine, bad).failures) == ("dead", 2)
    with engine.begin() as conn:
        assert [d["id"] for d in dead_letters.dead_deliveries(conn)] == [bad]
        assert dead_letters.retry_deliveries(conn, [bad], time.time()) == 1
    assert (_delivery_row(engine, bad).state, _delivery_row(engine, bad).failures) == ("pending", 0)


def test_a_delivery_whose_claims_keep_expiring_is_set_aside(engine: Engine) -> None:
    """A delivery that kills its worker every time: each expired claim counts; a lost task
    (queued, never claimed) does not."""
    poison, lost = _delivery(engine), _delivery(engine, state=DeliveryState.QUEUED)
    now = time.time()
    for i in range(1, 3):
        with engine.begin() as conn:
            assert recover_stale_deliveries(conn, now + i, max_failures=3) >= 1
            conn.execute(
                update(webhook_deliveries)
                .where(webhook_deliveries.c.id.in_([poison, lost]))
                .values(state=DeliveryState.SENDING, next_attempt_at=now)
            )
            conn.execute(
                update(webhook_deliveries)
                .where(webhook_deliveries.c.id == lost)
                .values(state=DeliveryState.QUEUED)
            )
    with engine.begin() as conn:
        recover_stale_deliveries(conn, now + 3, max_failures=3)
    p, q = _delivery_row(engine, poison), _delivery_row(engine, lost)
    assert (p.state, p.failures) == ("dead", 3) and "claim expired" in p.last_error
    assert (q.state, q.failures) == ("pending", 0)


def _cli(url: str, *argv: str) -> Any:
    import os
    import subprocess
    import sys

    from tests.support.stack import ROOT

    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSDISPATCH_")}
    env.update(DATABASE_URL=url, SMSDISPATCH_LOG_LEVEL="WARNING")
    out = subprocess.run(
        [sys.executable, "-m", "dispatcher.cli", "dead-letters", *argv],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_the_operator_sees_retries_and_drops_dead_letters_with_the_cli() -> None:
    with fresh_database() as url:
        engine = make_engine(url)
        now = time.time()
        [report] = add_rows(engine, REPORT, [{"id": "c-1", "text": "secret"}], now=now)
        with engine.begin() as conn:
            assert dead_letters.record_failure(conn, report, "DataError (SQLSTATE 22021)", now, 1)
        hook = _delivery(engine, state=DeliveryState.DEAD)
        listed = _cli(url, "list")
        assert [(d["kind"], d["id"]) for d in listed] == [("report", report), ("webhook", hook)]
        assert listed[0]["items"] == 1 and "secret" not in json.dumps(listed)  # no texts
        assert listed[0]["error"] == "DataError (SQLSTATE 22021)"
        assert listed[1]["endpoint"] == "https://hooks.example.com"  # no path: it may hold tokens
        shown = _cli(url, "list", "--kind", "report", "--show-items")
        assert shown[0]["items"] == [{"id": "c-1", "text": "secret"}]
        assert _cli(url, "retry", "--kind", "report", str(report)) == {"retry": 1, "kind": "report"}
        assert [r.id for r in rows(engine)] == [report]
        assert _cli(url, "drop", "--kind", "webhook", "--all") == {"drop": 1, "kind": "webhook"}
        assert _delivery_row(engine, hook).state == "failed"
        assert _cli(url, "list") == []
        engine.dispose()
