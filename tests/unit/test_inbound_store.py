"""Inbound messages against a migrated database: storing, deduplication, joining parts in any
order and exactly once (also with two appliers racing), keywords and the suppression list,
dedicated numbers."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, TypeVar

import pytest
from sqlalchemy import Connection, Engine, func, insert, select
from structlog.testing import capture_logs

from dispatcher.accounts.account import create_account
from dispatcher.contract import EVENT_MESSAGE_INBOUND
from dispatcher.ids import new_message_id
from dispatcher.store import webhooks as webhook_store
from dispatcher.store.db import make_engine
from dispatcher.store.inbound import InboundFilter, InboundStore, NewPart, list_inbound
from dispatcher.store.numbers import (
    NumberTaken,
    account_for_number,
    add_number,
    list_numbers,
    remove_number,
)
from dispatcher.store.schema import inbound_messages, suppressions, webhook_deliveries
from dispatcher.store.suppressions import (
    add_suppression,
    list_suppressions,
    remove_suppression,
    suppressed,
)
from tests.support.services import fresh_database
from workers.connectors.callbacks import parse_simple_inbound
from workers.inbound import InboundReport, apply_inbound, canonical_phone

T = TypeVar("T")
PHONE = "+48600111222"
SHORT = "4321"
LONG = "+48500100200"


@pytest.fixture
def db_url() -> Iterator[str]:
    with fresh_database() as url:
        yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    e = make_engine(db_url)
    yield e
    e.dispose()


@pytest.fixture(autouse=True)
def webhooks(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Stand-in for the webhooks work: records calls and writes a delivery row in the caller's
    transaction (so a rolled-back store leaves no webhook behind)."""
    calls: list[dict[str, Any]] = []

    def fake(conn: Connection, inbound: Any, now: float) -> str:
        calls.append(dict(inbound))
        wid = new_message_id()
        conn.execute(
            insert(webhook_deliveries).values(
                id=wid,
                account_id=inbound["account_id"],
                message_id=inbound["id"],
                event=EVENT_MESSAGE_INBOUND,
                url="http://127.0.0.1:9/inbound",
                payload=json.dumps({"id": inbound["id"]}),
                state="pending",
                attempts=0,
                created_at=now,
            )
        )
        return wid

    monkeypatch.setattr(webhook_store, "create_inbound_webhook", fake, raising=False)
    return calls


@pytest.fixture
def account(engine: Engine) -> int:
    acct, _ = create_account(engine, "shop")
    with engine.begin() as conn:
        add_number(conn, SHORT, acct.id, "short_code", time.time())
        add_number(conn, LONG, acct.id, "long_number", time.time())
    return acct.id


_ids = itertools.count(1)


def mo(text: str, to: str = SHORT, frm: str = PHONE, **udh: Any) -> dict[str, Any]:
    """An inbound item in the simulator's format, with a fresh carrier id."""
    item: dict[str, Any] = {"id": f"sim-mo-{next(_ids)}", "from": frm, "to": to, "text": text}
    if udh:
        item["udh"] = udh
    return item


def parts(text: str, n: int, ref: int, **kw: Any) -> list[dict[str, Any]]:
    size = -(-len(text) // n)
    chunks = [text[i * size : (i + 1) * size] for i in range(n)]
    return [mo(c, ref=ref, total=n, seq=i + 1, **kw) for i, c in enumerate(chunks)]


def apply(engine: Engine, items: list[Any], received_at: float | None = None) -> InboundReport:
    return apply_inbound(
        engine, parse_simple_inbound, "default", items, time.time(), received_at=received_at
    )


def stored(engine: Engine, account_id: int) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows, _ = list_inbound(conn, account_id, InboundFilter(), 0, 1000, descending=False)
    return rows


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


# -- single messages ------------------------------------------------------------------------


def test_single_message_is_stored_once_with_its_webhook(
    engine: Engine, account: int, webhooks: list[dict[str, Any]]
) -> None:
    item = mo("What time do you open?")
    report = apply(engine, [item])
    assert (report.stored, report.duplicates) == (1, 0)
    (row,) = stored(engine, account)
    assert row["body"] == "What time do you open?"
    assert (row["phone"], row["number"], row["parts"]) == (PHONE, SHORT, 1)
    assert row["carrier_message_id"] == item["id"] and row["keyword"] is None
    assert [w["id"] for w in webhooks] == [row["id"]]

    again = apply(engine, [item, item])
    assert (again.stored, again.duplicates) == (0, 2)
    assert len(stored(engine, account)) == 1
    assert count(engine, webhook_deliveries) == 1


def test_unknown_number_is_counted_and_logged_without_body(engine: Engine, account: int) -> None:
    with capture_logs() as logs:
        report = apply(engine, [mo("secret words", to="9999")])
    assert report.unknown_number == 1 and report.stored == 0
    assert count(engine, inbound_messages) == 0
    assert logs and "secret words" not in repr(logs)
    assert logs[0]["event"] == "inbound.unknown_number" and logs[0]["number"] == "9999"


def test_unreadable_items_are_counted(engine: Engine, account: int) -> None:
    bad = [
        "not an object",
        {"id": "x", "from": PHONE, "to": SHORT},  # no text
        {"id": "y", "from": PHONE, "to": SHORT, "text": "hi", "udh": {"seq": 3, "total": 2}},
        {"id": "z", "from": "+4860011122233344455", "to": SHORT, "text": "hi"},
    ]
    with capture_logs() as logs:
        report = apply(engine, bad)
    assert report.unreadable == 4 and count(engine, inbound_messages) == 0
    assert "hi" not in [v for e in logs for v in e.values()]


def test_number_and_phone_spellings(engine: Engine, account: int) -> None:
    report = apply(engine, [mo("a", to="48500100200", frm="0048600111222")])
    assert report.stored == 1
    (row,) = stored(engine, account)
    assert (row["number"], row["phone"]) == (LONG, PHONE)
    assert canonical_phone("48 600 111 222") == PHONE
    assert canonical_phone("600111222") == "600111222"  # may be national: left alone


def test_received_at_is_the_endpoint_time(engine: Engine, account: int) -> None:
    apply(engine, [mo("a")], received_at=1_700_000_000.0)
    assert stored(engine, account)[0]["received_at"] == 1_700_000_000.0


# -- long messages ----------------------------------------------------------------------------

TEXT = "Hello, I would like to book a table for four people on Friday evening at seven."


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_parts_join_in_any_order_across_runs_with_duplicates(
    engine: Engine, account: int, webhooks: list[dict[str, Any]], order: tuple[int, ...]
) -> None:
    items = parts(TEXT, 3, ref=17)
    totals = InboundReport()
    for i in order:  # each part in its own task run, each delivered twice
        r = apply(engine, [items[i], items[i]])
        totals.joined += r.joined
        totals.parts_waiting += r.parts_waiting
        totals.duplicates += r.duplicates
    assert (totals.joined, totals.parts_waiting, totals.duplicates) == (1, 2, 3)
    (row,) = stored(engine, account)
    assert row["body"] == TEXT and row["parts"] == 3
    assert row["carrier_message_id"] == items[0]["id"]  # part 1's carrier id
    assert len(webhooks) == 1

    late = apply(engine, items)  # the carrier posts everything again after the join
    assert (late.duplicates, late.joined) == (3, 0)
    assert len(stored(engine, account)) == 1


def test_parts_in_one_batch_shuffled(engine: Engine, account: int) -> None:
    items = parts(TEXT, 4, ref=5)
    report = apply(engine, [items[2], items[0], items[3], items[0], items[1]])
    assert (report.joined, report.parts_waiting, report.duplicates) == (1, 3, 1)
    assert stored(engine, account)[0]["body"] == TEXT


def test_reused_ref_after_a_join_starts_a_new_message(engine: Engine, account: int) -> None:
    apply(engine, parts("first long message", 2, ref=9))
    apply(engine, parts("second long message", 2, ref=9))
    assert [r["body"] for r in stored(engine, account)] == [
        "first long message",
        "second long message",
    ]


def test_old_leftover_parts_are_not_joined_with_a_new_message(engine: Engine, account: int) -> None:
    old = parts("lost message here!", 3, ref=3)
    apply(engine, old[:2], received_at=time.time() - 3 * 86400)  # part 3 never came
    new = parts("a brand new message", 3, ref=3)
    report = apply(engine, [new[2], new[0], new[1]])
    assert report.joined == 1
    assert [r["body"] for r in stored(engine, account)] == ["a brand new message"]


def test_groups_are_per_sender(engine: Engine, account: int) -> None:
    a = parts("from the first sender", 2, ref=1)
    b = parts("from the other sender", 2, ref=1, frm="+48600999888")
    report = apply(engine, [a[0], b[1], a[1], b[0]])
    assert report.joined == 2
    assert {r["body"] for r in stored(engine, account)} == {
        "from the first sender",
        "from the other sender",
    }


def race(*fns: Callable[[], T]) -> list[T]:
    """Run the callables in threads released together; their results in order."""
    barrier = threading.Barrier(len(fns))
    results: list[Any] = [None] * len(fns)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = fns[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_two_appliers_racing_join_exactly_once(db_url: str, account: int) -> None:
    """Two workers (own engines) each add a different last part of the same message at the
    same moment: the message is stored once, whichever of them sees it complete."""
    engines = [make_engine(db_url), make_engine(db_url)]
    rounds = 25
    try:
        reports: list[InboundReport] = []
        for ref in range(rounds):
            items = parts(f"message number {ref} in several parts", 3, ref=ref)
            apply(engines[0], [items[0]])
            reports += race(
                partial(apply, engines[0], [items[1], items[2]]),
                partial(apply, engines[1], [items[2], items[1]]),
            )
        assert sum(r.joined for r in reports) == rounds
        rows = stored(engines[0], account)
        assert len(rows) == rounds
        assert {r["body"] for r in rows} == {
            f"message number {ref} in several parts" for ref in range(rounds)
        }
        assert count(engines[0], webhook_deliveries) == rounds
    finally:
        for e in engines:
            e.dispose()


def test_racing_joins_on_complete_parts_one_winner(db_url: str, account: int) -> None:
    """Both appliers call join on a complete group at once: one stores, one gets nothing."""
    engines = [make_engine(db_url), make_engine(db_url)]
    try:
        for ref in range(10):
            items = parts(f"race {ref} abcdefghij", 2, ref=100 + ref)
            news = [
                NewPart("default", it["id"], PHONE, SHORT, str(100 + ref), i + 1, 2,
                        it["text"], time.time())
                for i, it in enumerate(items)
            ]  # fmt: skip
            for p in news:
                InboundStore(engines[0]).add_part(p)
            results = race(
                *(
                    partial(InboundStore(e).join, news[-1], account, SHORT, time.time())
                    for e in engines
                )
            )
            assert sum(r is not None for r in results) == 1
        assert count(engines[0], inbound_messages) == 10
    finally:
        for e in engines:
            e.dispose()


# -- keywords and the suppression list --------------------------------------------------------


def _suppressions(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(suppressions))]


def test_stop_then_start(engine: Engine, account: int) -> None:
    report = apply(engine, [mo("Stop.")], received_at=100.0)
    assert report.opted_out == 1
    (row,) = _suppressions(engine)
    assert (row["account_id"], row["phone"], row["source"], row["keyword"]) == (
        account,
        PHONE,
        "keyword",
        "STOP",
    )
    assert stored(engine, account)[0]["keyword"] == "STOP"  # still stored and forwarded

    report = apply(engine, [mo("start")], received_at=200.0)
    assert report.opted_in == 1 and _suppressions(engine) == []


def test_polish_keywords(engine: Engine, account: int) -> None:
    apply(engine, [mo("rezygnuję")], received_at=1.0)
    assert _suppressions(engine)[0]["keyword"] == "REZYGNUJE"
    apply(engine, [mo("Tak!")], received_at=2.0)
    assert _suppressions(engine) == []


def test_not_a_keyword_changes_nothing(engine: Engine, account: int) -> None:
    report = apply(engine, [mo("please stop"), mo("STOP IT")])
    assert (report.stored, report.opted_out) == (2, 0) and _suppressions(engine) == []


def test_latest_keyword_wins_when_applied_out_of_order(engine: Engine, account: int) -> None:
    apply(engine, [mo("START")], received_at=200.0)
    late = apply(engine, [mo("STOP")], received_at=100.0)  # sent earlier, applied later
    assert late.stored == 1 and late.opted_out == 0
    assert _suppressions(engine) == []


def test_stop_to_one_account_does_not_suppress_for_another(engine: Engine, account: int) -> None:
    other, _ = create_account(engine, "other")
    with engine.begin() as conn:
        add_number(conn, "5555", other.id, "short_code", time.time())
    apply(engine, [mo("STOP", to="5555")])
    with engine.connect() as conn:
        assert suppressed(conn, other.id, [PHONE]) == {PHONE}
        assert suppressed(conn, account, [PHONE]) == set()


def test_suppression_store_functions(engine: Engine, account: int) -> None:
    with engine.begin() as conn:
        assert add_suppression(conn, account, "+48600000001", 1.0)
        assert not add_suppression(conn, account, "+48600000001", 2.0, "keyword", "STOP")
        for i in range(2, 6):
            add_suppression(conn, account, f"+4860000000{i}", float(i))
    with engine.connect() as conn:
        rows, total = list_suppressions(conn, account, offset=1, limit=2)
        assert total == 5 and [r["phone"] for r in rows] == ["+48600000004", "+48600000003"]
        rows, total = list_suppressions(conn, account, phones=["+48600000001"])
        assert total == 1 and rows[0]["source"] == "api" and rows[0]["created_at"] == 1.0
        assert list_suppressions(conn, account + 1) == ([], 0)
    with engine.begin() as conn:
        removed = remove_suppression(conn, account, "+48600000001")
        assert removed is not None and removed["phone"] == "+48600000001"
        assert remove_suppression(conn, account, "+48600000001") is None
        assert suppressed(conn, account, ["+48600000001", "+48600000002"]) == {"+48600000002"}


# -- numbers ----------------------------------------------------------------------------------


def test_numbers_crud(engine: Engine, account: int) -> None:
    other, _ = create_account(engine, "other")
    with engine.begin() as conn:
        add_number(conn, "+48500100300", other.id, "long_number", 5.0)
    with engine.begin() as conn, pytest.raises(NumberTaken, match="shop"):
        add_number(conn, SHORT, other.id, "short_code", 6.0)
    with engine.connect() as conn:
        mine = list_numbers(conn, account)
        assert [(n["number"], n["kind"], n["account"]) for n in mine] == [
            (LONG, "long_number", "shop"),
            (SHORT, "short_code", "shop"),
        ]
        assert len(list_numbers(conn)) == 3
        assert account_for_number(conn, "48500100200") == (account, LONG)
        assert account_for_number(conn, "+48500100300") == (other.id, "+48500100300")
        assert account_for_number(conn, "1111") is None
    with engine.begin() as conn:
        assert remove_number(conn, SHORT) is not None
        assert remove_number(conn, SHORT) is None
    assert apply(engine, [mo("hello")]).unknown_number == 1
