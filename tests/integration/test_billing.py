"""Prices and balances in the group commit, refunds and the ledger, on a real database.

The charge happens in the transaction that stores the messages, under the balance row's lock:
a recipient the balance cannot pay for is refused and nothing is charged for it; a charged
message that no carrier took is refunded once by the scheduler's sweep; the balance is always
the sum of the ledger, and the ledger matches the messages' prices (docs/prices.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, text

from dispatcher.accounts.account import Account, create_account
from dispatcher.config import Settings
from dispatcher.contract import Lane, Status
from dispatcher.intake.broker import Broker
from dispatcher.intake.enqueue import Producer
from dispatcher.intake.submit import RequestRefused, SendRequest, prepare
from dispatcher.intake.writer import SubmissionWriter
from dispatcher.store import balances
from dispatcher.store.balances import (
    Keep,
    accounts_below_low,
    balance_of,
    low_balance_sweep,
    post,
    reconcile,
    set_limits,
)
from dispatcher.store.db import StoreUnavailable, make_engine
from dispatcher.store.prices import NewPrice, PriceBookCache, PriceListError, add_price
from dispatcher.store.progress import (
    Failure,
    Sent,
    claim,
    expire_overdue,
    record_failures,
    record_sent,
)
from dispatcher.store.records import NewSubmission, StoredSubmission
from dispatcher.store.refunds import refund_sweep
from dispatcher.store.usage import campaign_cost, usage, usage_csv
from tests.support.services import backend, fresh_database, fresh_redis

pytestmark = pytest.mark.integration

PLN = 985
CHUNKS = {Lane.BULK: 500, Lane.PRIORITY: 100}
TEXT_3_PARTS = "x" * 400  # GSM-7, 3 parts


class World:
    def __init__(self, engine: Engine, redis_url: str, db_url: str = "") -> None:
        self.engine = engine
        self.db_url = db_url
        self.redis_url = redis_url
        self.settings = Settings.from_env({}, redis_url=redis_url, billing=True)
        self.broker = Broker(redis_url)
        self.writer = SubmissionWriter(
            engine, self.broker, CHUNKS, prices=PriceBookCache(engine, reload_s=0)
        )
        self.account = self.new_account("alpha")

    def new_account(self, name: str) -> Account:
        account, _ = create_account(self.engine, name, priority=True, sender_policy="open")
        return account

    def price(self, destination: str, amount: str, account: Account | None = None) -> None:
        with self.engine.begin() as conn:
            add_price(
                conn, account.id if account else None, NewPrice(destination, amount, "PLN"), "t"
            )

    def top_up(self, minor: int, account: Account | None = None, credit: int | None = 0) -> None:
        acct = account or self.account
        with self.engine.begin() as conn:
            post(conn, acct.id, "topup", minor, PLN, "test")
            set_limits(conn, acct.id, PLN, credit_limit=credit)

    def sub(
        self, phones: list[str], message: str = "hi", account: Account | None = None, **kw: Any
    ) -> NewSubmission:
        key = kw.pop("idempotency_key", None)
        req = SendRequest("ACME", message, phones, **kw)
        acct = account or self.account
        return prepare(req, acct, self.settings, time.time(), idempotency_key=key).submission

    def write(self, *subs: NewSubmission) -> list[StoredSubmission]:
        return self.writer.write(list(subs))

    def balance(self, account: Account | None = None) -> int:
        with self.engine.connect() as conn:
            found = balance_of(conn, (account or self.account).id)
        assert found is not None
        return found.balance

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params))

    def consistent(self) -> None:
        with self.engine.connect() as conn:
            assert reconcile(conn) == []


@pytest.fixture
def world() -> Iterator[World]:
    with fresh_database() as db_url, fresh_redis() as redis_url:
        engine = make_engine(db_url)
        w = World(engine, redis_url, db_url)
        w.price("PL", "0.07")
        w.price("+4850", "0.05")
        yield w
        w.broker.close()
        redis.Redis.from_url(redis_url).close()
        engine.dispose()


def phones(n: int, prefix: str = "+48500") -> list[str]:
    return [f"{prefix}{i:06d}" for i in range(n)]


def test_a_charge_takes_what_the_balance_pays_for_and_refuses_the_rest(world: World) -> None:
    world.top_up(17)  # three parts at 0.05, and 0.02 left
    sub = world.sub(phones(5))
    stored = world.write(sub)[0]
    assert [m.phone for m in sub.messages] == phones(3)
    assert stored.unpaid == [(p, "insufficient_balance") for p in phones(5)[3:]]
    assert stored.balance == 2 and stored.balance_currency == PLN
    assert world.balance() == 2
    prices = world.rows("SELECT price, currency, charged FROM messages ORDER BY phone")
    assert [tuple(r) for r in prices] == [(5, PLN, True)] * 3
    charges = world.rows(
        "SELECT kind, amount, messages, parts, actor FROM ledger WHERE kind='charge'"
    )
    assert [tuple(r) for r in charges] == [("charge", -15, 3, 3, "api")]
    world.consistent()


def test_the_price_is_per_part_by_the_longest_prefix(world: World) -> None:
    world.top_up(10_000)
    sub = world.sub(["+48500100200", "+48600100200"], message=TEXT_3_PARTS)
    world.write(sub)
    assert {m.phone: (m.parts, m.price) for m in sub.messages} == {
        "+48500100200": (3, 15),  # +4850 at 0.05
        "+48600100200": (3, 21),  # PL at 0.07
    }
    assert world.balance() == 10_000 - 36
    world.consistent()


def test_credit_limit_lets_the_balance_go_that_far_below_zero_and_no_further(
    world: World,
) -> None:
    world.top_up(10, credit=20)  # may spend 0.30 in all: six messages at 0.05
    stored = world.write(world.sub(phones(8)))[0]
    assert len(stored.unpaid) == 2
    assert world.balance() == -20
    with world.engine.begin() as conn:  # postpaid: no limit at all
        set_limits(conn, world.account.id, PLN, credit_limit=None)
    assert world.write(world.sub(phones(8, "+48501")))[0].unpaid == []
    assert world.balance() == -60
    world.consistent()


def test_no_price_and_no_balance_are_per_recipient_errors(world: World) -> None:
    world.top_up(100)
    stored = world.write(world.sub(["+48500100200", "+4930123456"]))[0]
    assert stored.unpaid == [("+4930123456", "no_price")]
    other = world.new_account("beta")  # billing on, never topped up: nothing to pay with
    stored = world.write(world.sub(["+48500100200"], account=other))[0]
    assert stored.refused and stored.unpaid == [("+48500100200", "insufficient_balance")]
    assert stored.balance is None
    assert world.rows("SELECT count(*) FROM messages WHERE account_id = :a", a=other.id)[0][0] == 0


def test_an_accounts_own_list_and_currency(world: World) -> None:
    world.price("+4850", "0.01", world.account)
    world.top_up(100)
    sub = world.sub(["+48500100200", "+48600100200"])
    world.write(sub)
    assert [m.price for m in sub.messages] == [1, 7]
    with world.engine.begin() as conn, pytest.raises(PriceListError, match="list is in PLN"):
        add_price(conn, world.account.id, NewPrice("+48", "0.05", "EUR"), "t")
    other = world.new_account("beta")
    world.top_up(100, account=other)
    with world.engine.begin() as conn, pytest.raises(PriceListError, match="balance is in PLN"):
        add_price(conn, other.id, NewPrice("+48", "0.05", "EUR"), "t")


def test_a_refused_keyed_request_can_be_sent_again_after_a_top_up(world: World) -> None:
    stored = world.write(world.sub(phones(2), idempotency_key="k1"))[0]
    assert stored.refused and not stored.duplicate
    world.top_up(100)
    again = world.write(world.sub(phones(2), idempotency_key="k1"))[0]
    assert not again.duplicate and again.unpaid == []
    repeat = world.write(world.sub(phones(2), idempotency_key="k1"))[0]
    assert repeat.duplicate  # a repeat is not charged twice
    assert world.balance() == 90
    assert [m["price"] for m in repeat.messages] == [5, 5]
    world.consistent()


def test_one_group_charges_one_account_in_order(world: World) -> None:
    world.top_up(12)  # two messages
    subs = [world.sub([p]) for p in phones(4)]
    results = world.write(*subs)
    assert [r.refused for r in results] == [False, False, True, True]
    assert [r.balance for r in results] == [7, 2, 2, 2]
    world.consistent()


def _queued(world: World, n: int, **kw: Any) -> list[str]:
    world.top_up(1000)
    sub = world.sub(phones(n), **kw)
    world.write(sub)
    return [m.id for m in sub.messages]


def test_refunds_for_what_never_reached_a_carrier(world: World) -> None:
    ids = _queued(world, 5, validity=1)
    no_route, expired, carrier_refused, sent, unknown = ids
    now = time.time()
    with world.engine.begin() as conn:
        # Rejected before submit: the route went away after accept (worker, from queued).
        record_failures(
            conn, [Failure(no_route, Status.REJECTED, "no_route", "x", True)], now, Status.QUEUED
        )
        # Expired in the queue: its validity passed before any worker took it.
        assert expire_overdue(conn, [expired], now + 61) == [expired]
        won = claim(conn, [carrier_refused, sent, unknown], "default", now)
        assert set(won) == {carrier_refused, sent, unknown}
        # Refused outright by the carrier: it did not take it.
        record_failures(
            conn,
            [Failure(carrier_refused, Status.REJECTED, "carrier_rejected", "x", True, 400)],
            now,
        )
        # Taken by the carrier: paid for, whatever the handset report says later.
        record_sent(conn, [Sent(sent, "c-1", 200, 1.0)], now)
        conn.execute(text("UPDATE messages SET status='undelivered' WHERE id=:i"), {"i": sent})
        # The worker was lost during the call and the carrier could not be asked: maybe taken.
        record_failures(
            conn, [Failure(unknown, Status.FAILED, "send_state_unknown", "x", False)], now
        )
    before = world.balance()
    with world.engine.begin() as conn:
        assert refund_sweep(conn, now) == 3
    with world.engine.begin() as conn:
        assert refund_sweep(conn, now) == 0  # never twice
    assert world.balance() == before + 15
    refunded = {r[0] for r in world.rows("SELECT id FROM messages WHERE refunded_at IS NOT NULL")}
    assert refunded == {no_route, expired, carrier_refused}
    rows = world.rows("SELECT amount, messages, actor FROM ledger WHERE kind='refund'")
    assert [tuple(r) for r in rows] == [(15, 3, "scheduler")]
    world.consistent()


def test_reconciliation_finds_a_balance_changed_behind_the_ledgers_back(world: World) -> None:
    world.top_up(100)
    world.write(world.sub(phones(3)))
    world.consistent()
    with world.engine.begin() as conn:
        conn.execute(text("UPDATE balances SET balance = balance + 1"))
    with world.engine.connect() as conn:
        problems = reconcile(conn)
    assert [(p.what, p.expected, p.found) for p in problems] == [
        ("balance = sum of ledger", 85, 86)
    ]
    with world.engine.begin() as conn:
        one = conn.execute(text("SELECT id FROM messages LIMIT 1")).scalar_one()
        conn.execute(text("UPDATE messages SET price = price + 1 WHERE id = :i"), {"i": one})
        conn.execute(text("UPDATE balances SET balance = balance - 1"))
    with world.engine.connect() as conn:
        assert [p.what for p in reconcile(conn)] == ["charges = charged messages"]


def test_billing_off_prices_nothing(world: World) -> None:
    plain = SubmissionWriter(world.engine, world.broker, CHUNKS)
    sub = world.sub(phones(2))
    stored = plain.write([sub])[0]
    assert stored.unpaid == [] and stored.balance is None
    assert [(m.price, m.currency, m.charged) for m in sub.messages] == [(0, 0, False)] * 2


def test_limits_keep_what_is_not_changed(world: World) -> None:
    world.top_up(100, credit=50)
    with world.engine.begin() as conn:
        b = set_limits(conn, world.account.id, PLN, low_balance=30)
    assert (b.credit_limit, b.low_balance, b.available) == (50, 30, 150)
    with world.engine.begin() as conn:
        b = set_limits(conn, world.account.id, PLN, credit_limit=Keep.KEEP, low_balance=None)
    assert (b.credit_limit, b.low_balance) == (50, None)


def test_a_low_balance_is_told_once_per_dip(world: World) -> None:
    world.top_up(100)
    with world.engine.begin() as conn:
        set_limits(conn, world.account.id, PLN, low_balance=50)
        conn.execute(
            text("UPDATE accounts SET webhook_url = 'https://hooks.example/x' WHERE id = :i"),
            {"i": world.account.id},
        )

    def sweep() -> list[int]:
        with world.engine.begin() as conn:
            return low_balance_sweep(conn, time.time())

    def alerts() -> list[str]:
        rows = world.rows(
            "SELECT payload FROM webhook_deliveries WHERE event = 'account.balance_low'"
        )
        return [json.loads(r[0])["accountBalance"] for r in rows]

    assert sweep() == [] and alerts() == []
    world.write(world.sub(phones(11)))  # 100 - 55 = 45: below 50
    with world.engine.connect() as conn:
        assert accounts_below_low(conn) == 1
    assert sweep() == [world.account.id]
    assert sweep() == []  # once per dip
    world.write(world.sub(phones(1, "+48501")))
    assert sweep() == [] and alerts() == ["0.45"]
    world.top_up(100)  # back above the level: re-armed
    assert sweep() == []
    world.write(world.sub(phones(20, "+48502")))
    assert sweep() == [world.account.id]
    assert alerts() == ["0.45", "0.40"]
    with world.engine.connect() as conn:
        assert accounts_below_low(conn) == 1


def test_usage_per_country_and_connection_with_the_carriers_cost(world: World) -> None:
    world.top_up(10_000)
    sub = world.sub(["+48500100200", "+48600100200", "+48500100201"], message=TEXT_3_PARTS)
    sub.campaign = "spring"
    world.write(sub)
    taken, refused, queued = (m.id for m in sub.messages)
    now = time.time()
    with world.engine.begin() as conn:
        claim(conn, [taken, refused], "c1", now)
        record_sent(conn, [Sent(taken, "c-1", 200, 1.0)], now)
        record_failures(
            conn, [Failure(refused, Status.REJECTED, "carrier_rejected", "x", True, 400)], now
        )
        refund_sweep(conn, now)
        rows = usage(conn, now - 60, now + 60, world.account.id, {"c1": (3, PLN)})
        spring = campaign_cost(conn, world.account.id, "spring")
    by_connection = {r.connection: r for r in rows}
    assert set(by_connection) == {"c1", ""}
    c1 = by_connection["c1"]
    assert (c1.country, c1.messages, c1.parts, c1.amount, c1.refunded) == ("PL", 2, 6, 36, 21)
    assert c1.carrier_cost == 9  # the three parts the carrier took, at 0.03
    assert c1.margin == 36 - 21 - 9
    assert by_connection[""].carrier_cost is None  # queued: no connection yet
    assert (spring.amount, spring.refunded, spring.net) == (51, 21, 30)
    text_csv = usage_csv(rows)
    assert text_csv.splitlines()[0].startswith("account,day,country,connection,messages")
    assert ",c1,2,6,0.36,0.21,0.15,0.09,0.06,PLN" in text_csv
    assert queued


def test_a_failed_group_charges_nothing_and_its_retry_prices_afresh(world: World) -> None:
    world.top_up(15)  # three messages
    bad = world.sub(phones(1, "+48501"))
    paying = world.sub(phones(3))
    bad.messages[0].id = paying.messages[0].id  # a duplicate key: the whole group fails
    with pytest.raises(StoreUnavailable):
        world.write(bad, paying)  # bad pays 5, paying 10 and one refused: then it fails
    assert world.balance() == 15
    assert len(paying.messages) == 3  # the refused recipient is back
    stored = world.write(paying)[0]  # alone now: all three paid
    assert stored.unpaid == [] and len(paying.messages) == 3
    assert world.balance() == 0
    world.consistent()


def test_the_library_producer_is_charged_the_same_way(world: World) -> None:
    world.top_up(10)  # two messages
    producer = Producer(
        Settings.from_env({}, database_url=world.db_url, redis_url=world.redis_url, billing=True)
    )
    try:
        ids = producer.send_sms("alpha", sender="ACME", message="hi", phone_numbers=phones(3))
        assert len(ids) == 2  # the third was refused, not stored
        with pytest.raises(RequestRefused) as refused:
            producer.send_sms("alpha", sender="ACME", message="hi", phone_numbers=phones(1))
        assert [e.code for e in refused.value.errors] == ["insufficient_balance"]
    finally:
        producer.close()
    charges = world.rows("SELECT actor, amount FROM ledger WHERE kind = 'charge'")
    assert [tuple(r) for r in charges] == [("library", -10)]
    world.consistent()


@pytest.mark.skipif(backend() != "postgres", reason="the optimistic charge is PostgreSQL's")
def test_money_spent_between_the_read_and_the_charge_is_never_spent_twice(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer reads the balance unlocked; another transaction spends most of it before
    the group's charge: the charge matches no row, the group is rolled back and runs again
    with the balance locked, and pays only for what is left."""
    world.top_up(20)  # four messages at 0.05
    real = balances.read_balances
    raced: list[bool] = []

    def read_then_spend(conn: Any, ids: Any, lock: bool) -> Any:
        rows = real(conn, ids, lock)
        if not lock and not raced:  # once, between the unlocked read and the charge
            raced.append(True)
            with world.engine.begin() as other:
                post(other, world.account.id, "adjustment", -15, PLN, "test", note="a race")
        return rows

    monkeypatch.setattr(balances, "read_balances", read_then_spend)
    paying = world.sub(phones(3))
    stored = world.write(paying)[0]
    assert raced == [True]
    assert [code for _, code in stored.unpaid] == ["insufficient_balance"] * 2
    assert len(paying.messages) == 1 and stored.balance == 0
    assert world.balance() == 0  # 20 - 15 - 5: never below the (zero) credit limit
    assert world.rows("SELECT count(*) FROM messages")[0][0] == 1
    charges = world.rows("SELECT amount FROM ledger WHERE kind = 'charge'")
    assert [r[0] for r in charges] == [-5]  # the rolled-back optimistic charge left nothing
    world.consistent()


def test_the_answer_reports_the_balance_as_committed(world: World) -> None:
    """Several requests of one account in one group: each reports the balance after it."""
    world.top_up(100)
    first, second = world.sub(phones(2)), world.sub(phones(3, "+48501"))
    a, b = world.write(first, second)
    assert (a.balance, b.balance) == (90, 75)
    assert world.balance() == 75
    world.consistent()
