"""Balances, credit limits and the ledger: charged at accept, under the balance row's lock.

The charge is part of the group commit that stores the messages (:func:`charge` before the
inserts, :func:`record_charges` among them): a message is stored if and only if it is paid
for, whatever crashes. Two ways to keep any number of API processes and hosts from
overdrawing an account, both one round trip per group commit, not per request or recipient:

- **locked** (``lock=True``): the balance rows of the group's accounts are locked first, in
  account order (``SELECT … FOR UPDATE``; on SQLite a no-op ``UPDATE`` takes the database's
  write lock), and written last. Simple, but the lock is held over the whole transaction, so
  two API processes charging one account commit one after the other.
- **optimistic** (``lock=False``, PostgreSQL, the API's writer): the rows are read unlocked,
  and the charge is a relative ``UPDATE`` that only succeeds while the balance and credit
  limit still pay for it, the last statement before ``COMMIT`` (row lock held from there to
  the commit only). If another transaction spent the money meanwhile, the update matches no
  row and :class:`BalanceRaced` rolls the group back; the writer runs it again locked
  (docs/prices.md).

Every change of a balance is a ledger row in the same transaction as the change, so a
balance is the sum of its ledger (:func:`reconcile` proves it, and that each charge matches
the prices of the messages it paid for). See docs/prices.md.

Longer than 400 lines on purpose: the charge, the ledger and :func:`reconcile`, which proves
them, keep one invariant (a balance is the sum of its ledger) and are read together.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from sqlalchemy import Connection, and_, func, insert, select, update

from dispatcher.billing.money import currency_name as _name
from dispatcher.billing.money import format_minor
from dispatcher.billing.pricebook import PriceBook
from dispatcher.store.records import NewSubmission
from dispatcher.store.schema import balances, ledger, messages
from dispatcher.store.sql import dialect_insert, sqlite_write_lock

INSUFFICIENT = "insufficient_balance"
NO_PRICE = "no_price"


class BalanceError(ValueError):
    """An operator's balance change that was refused; the text says why."""


@dataclass
class _Row:
    balance: int
    credit_limit: int | None
    currency: int

    def can_pay(self, cost: int) -> bool:
        return self.credit_limit is None or self.balance - cost >= -self.credit_limit


@dataclass
class Charge:
    """What billing did to one submission: refused recipients, and the balance after it."""

    refused: list[tuple[str, str]] = field(default_factory=list)  # (phone, error code)
    balance: int | None = None  # minor units; None: the account has no balance row
    currency: int = 0
    amount: int = 0  # charged for the stored messages
    parts: int = 0


class BalanceRaced(Exception):
    """Optimistic charge: another transaction spent an account's balance between the unlocked
    read and the charge. Nothing of the group may be kept: roll back, run it again locked."""


def read_balances(conn: Connection, account_ids: Sequence[int], lock: bool) -> dict[int, _Row]:
    """The balance rows of ``account_ids``: locked (:func:`lock_balances`) or, on PostgreSQL
    with ``lock=False``, as last committed (the optimistic charge re-checks them)."""
    if lock or conn.dialect.name != "postgresql" or not account_ids:
        return lock_balances(conn, account_ids)
    rows = conn.exec_driver_sql(
        "SELECT account_id, balance, credit_limit, currency FROM balances "
        "WHERE account_id = ANY(%s)",
        (sorted(set(account_ids)),),
    )
    return {
        int(r[0]): _Row(int(r[1]), None if r[2] is None else int(r[2]), int(r[3])) for r in rows
    }


def lock_balances(conn: Connection, account_ids: Sequence[int]) -> dict[int, _Row]:
    """The balance rows of ``account_ids``, locked until the transaction ends (account order)."""
    if not account_ids:
        return {}
    ids = sorted(set(account_ids))
    b = balances.c
    if conn.dialect.name == "postgresql":
        rows = conn.exec_driver_sql(
            "SELECT account_id, balance, credit_limit, currency FROM balances "
            "WHERE account_id = ANY(%s) ORDER BY account_id FOR UPDATE",
            (ids,),
        )
    else:
        sqlite_write_lock(conn, balances)
        rows = conn.execute(
            select(b.account_id, b.balance, b.credit_limit, b.currency).where(b.account_id.in_(ids))
        )
    return {
        int(r[0]): _Row(int(r[1]), None if r[2] is None else int(r[2]), int(r[3])) for r in rows
    }


def charge(
    conn: Connection,
    subs: Sequence[NewSubmission],
    book: PriceBook,
    now: float,
    lock: bool = True,
) -> tuple[dict[str, Charge], dict[int, _Row]]:
    """Price every message of ``subs`` and take it from its account's balance.

    Recipients without a price in the account's currency (``no_price``) or that the balance
    and credit limit cannot pay for (``insufficient_balance``) are removed from their
    submission, in place, and reported; the others carry their price. Nothing is written
    yet: :func:`record_charges` writes the balances and the ledger rows (they travel with
    the inserts). ``lock``: see the module doc. Returns the charge per submission id and the
    rows (their balances after the charge).
    """
    rows = read_balances(conn, [s.account_id for s in subs if s.messages], lock)
    out: dict[str, Charge] = {}
    for sub in subs:
        row = rows.get(sub.account_id)
        result = Charge(
            balance=None if row is None else row.balance, currency=row.currency if row else 0
        )
        out[sub.id] = result
        if not sub.messages:
            continue
        kept = []
        for m in sub.messages:
            m.price, m.currency, m.charged = 0, 0, False  # a retried group prices afresh
            quote = book.quote(sub.account_id, m.phone, now)
            if quote is None or (row is not None and quote.currency != row.currency):
                result.refused.append((m.phone, NO_PRICE))
                continue
            cost = quote.price * m.parts
            if row is None:
                if cost:  # billing is on and this account has no balance: nothing to pay with
                    result.refused.append((m.phone, INSUFFICIENT))
                    continue
            elif not row.can_pay(cost):
                result.refused.append((m.phone, INSUFFICIENT))
                continue
            elif cost:
                row.balance -= cost
                m.charged = True
            m.price = cost
            m.currency = quote.currency
            result.amount += cost
            result.parts += m.parts
            kept.append(m)
        if result.refused:
            sub.messages = kept
        if row is not None:
            result.balance = row.balance
            result.currency = row.currency
    return out, rows


def record_charges(
    conn: Connection,
    subs: Sequence[NewSubmission],
    charges: dict[str, Charge],
    rows: dict[int, _Row],
    now: float,
    lock: bool = True,
) -> Callable[[], None] | None:
    """Write the balances :func:`charge` computed and one ledger row per paid submission.

    ``lock=False`` (PostgreSQL, rows read unlocked): the balances are charged by relative,
    conditional updates, last; returns the check to call once the statements have run (after
    the pipeline): it raises :class:`BalanceRaced` if one matched no row, and otherwise sets
    each charge's reported balance from the committed row."""
    entries = []
    for sub in subs:
        c = charges.get(sub.id)
        if c is None or not c.amount or sub.account_id not in rows:
            continue
        entries.append(
            (
                sub.account_id,
                now,
                "charge",
                -c.amount,
                c.currency,
                sub.id,
                len(sub.messages),
                c.parts,
                sub.source[:64],
            )
        )
    if not entries:
        return None
    mark = "%s" if conn.dialect.name == "postgresql" else "?"
    cols = "account_id, at, kind, amount, currency, submission_id, messages, parts, actor"
    conn.exec_driver_sql(f"INSERT INTO ledger ({cols}) VALUES ({', '.join([mark] * 9)})", entries)
    charged = sorted({e[0] for e in entries})
    if lock or conn.dialect.name != "postgresql":
        conn.exec_driver_sql(
            f"UPDATE balances SET balance = {mark}, updated_at = {mark} WHERE account_id = {mark}",
            [(rows[a].balance, now, a) for a in charged],
        )
        return None
    spent = {a: 0 for a in charged}
    for e in entries:
        spent[e[0]] -= e[3]  # the ledger's amount is negative
    # A raw cursor: its results can be read after the pipeline (SQLAlchemy's cannot). One
    # statement per account, in account order, like the locked path: no deadlock between them.
    cur: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    cur.executemany(
        "UPDATE balances SET balance = balance - %s, updated_at = %s WHERE account_id = %s "
        "AND (credit_limit IS NULL OR balance - %s >= -credit_limit) RETURNING balance",
        [(spent[a], now, a, spent[a]) for a in charged],
        returning=True,
    )

    def check() -> None:
        final: dict[int, int] = {}
        for a in charged:
            row = cur.fetchone()
            if row is not None:
                final[a] = int(row[0])
            cur.nextset()
        cur.close()
        raced = [a for a in charged if a not in final]
        if raced:
            raise BalanceRaced(raced)
        for sub in subs:  # what the answers report: the balance as committed, not as read
            c = charges.get(sub.id)
            if c is not None and c.balance is not None and sub.account_id in final:
                c.balance += final[sub.account_id] - rows[sub.account_id].balance
        for a, balance in final.items():
            rows[a].balance = balance

    return check


# -- operator changes ------------------------------------------------------------------------


class Keep(Enum):
    """Leave this setting as it is (:func:`set_limits`)."""

    KEEP = "keep"


@dataclass(frozen=True)
class Balance:
    """An account's balance as the CLI, the panel and the API show it."""

    account_id: int
    currency: int
    balance: int
    credit_limit: int | None
    low_balance: int | None
    updated_at: float

    @property
    def available(self) -> int | None:
        """What can still be spent (balance plus credit); None: no limit."""
        return None if self.credit_limit is None else self.balance + self.credit_limit


def balance_of(conn: Connection, account_id: int) -> Balance | None:
    """The account's balance, or None when it has none (billing never set up for it)."""
    b = balances.c
    r = conn.execute(
        select(b.currency, b.balance, b.credit_limit, b.low_balance, b.updated_at).where(
            b.account_id == account_id
        )
    ).first()
    if r is None:
        return None
    return Balance(account_id, int(r[0]), int(r[1]), r[2], r[3], float(r[4]))


def _ensure_row(conn: Connection, account_id: int, currency: int, now: float) -> _Row:
    """The locked balance row, created at zero (credit 0: prepaid) in ``currency`` if missing."""
    rows = lock_balances(conn, [account_id])
    if account_id not in rows:  # a concurrent first top-up may have created it meanwhile
        conn.execute(
            dialect_insert(conn, balances)
            .values(
                account_id=account_id,
                currency=currency,
                balance=0,
                credit_limit=0,
                updated_at=now,
            )
            .on_conflict_do_nothing()
        )
        rows = lock_balances(conn, [account_id])
    row = rows[account_id]
    if row.currency != currency:
        raise BalanceError(f"currency: the account's balance is in {_name(row.currency)}")
    return row


def post(
    conn: Connection,
    account_id: int,
    kind: str,
    amount: int,
    currency: int,
    actor: str,
    note: str | None = None,
    now: float | None = None,
) -> int:
    """A top-up (``amount`` > 0) or an adjustment (any sign, with a note): the balance moves
    and a ledger row says why, in one transaction. Returns the new balance."""
    at = time.time() if now is None else now
    if kind not in ("topup", "adjustment"):
        raise BalanceError(f"kind: {kind!r} is not topup or adjustment")
    if kind == "topup" and amount <= 0:
        raise BalanceError("amount: a top-up is positive (use an adjustment to take money)")
    if kind == "adjustment" and (amount == 0 or not (note or "").strip()):
        raise BalanceError("an adjustment needs a non-zero amount and a note saying why")
    row = _ensure_row(conn, account_id, currency, at)
    row.balance += amount
    conn.execute(
        update(balances)
        .where(balances.c.account_id == account_id)
        .values(balance=row.balance, updated_at=at, low_notified_at=None)
    )
    conn.execute(
        insert(ledger).values(
            account_id=account_id,
            at=at,
            kind=kind,
            amount=amount,
            currency=currency,
            actor=actor[:64],
            note=None if note is None else note[:255],
        )
    )
    return row.balance


def set_limits(
    conn: Connection,
    account_id: int,
    currency: int,
    *,
    credit_limit: int | Keep | None = Keep.KEEP,
    low_balance: int | Keep | None = Keep.KEEP,
    now: float | None = None,
) -> Balance:
    """Set the credit limit (None: no limit) and/or the low-balance threshold (None: off)."""
    at = time.time() if now is None else now
    _ensure_row(conn, account_id, currency, at)
    values: dict[str, Any] = {"updated_at": at}
    if credit_limit is not Keep.KEEP:
        if isinstance(credit_limit, int) and credit_limit < 0:
            raise BalanceError("credit limit: must not be negative (0: prepaid only)")
        values["credit_limit"] = credit_limit
    if low_balance is not Keep.KEEP:
        values["low_balance"] = low_balance
        values["low_notified_at"] = None
    conn.execute(update(balances).where(balances.c.account_id == account_id).values(**values))
    found = balance_of(conn, account_id)
    assert found is not None
    return found


def ledger_rows(
    conn: Connection, account_id: int, limit: int = 100, before_id: int | None = None
) -> list[dict[str, Any]]:
    """The account's ledger, newest first (``before_id`` pages back)."""
    c = ledger.c
    q = select(ledger).where(c.account_id == account_id)
    if before_id is not None:
        q = q.where(c.id < before_id)
    return [dict(r._mapping) for r in conn.execute(q.order_by(c.id.desc()).limit(limit))]


# -- reconciliation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Mismatch:
    """Something the ledger and the balances (or the messages) disagree on."""

    account_id: int
    what: str
    expected: int
    found: int


def reconcile(conn: Connection, account_id: int | None = None) -> list[Mismatch]:
    """Check, per account: the balance equals the sum of its ledger; its charges equal the
    prices of its charged messages; its refunds equal the prices of its refunded messages.
    Returns what disagrees (nothing: consistent)."""
    b, lg, m = balances.c, ledger.c, messages.c

    def scoped(q: Any, col: Any) -> Any:
        return q if account_id is None else q.where(col == account_id)

    stored = dict(conn.execute(scoped(select(b.account_id, b.balance), b.account_id)).all())
    sums: dict[tuple[int, str], int] = {}
    q = select(lg.account_id, lg.kind, func.sum(lg.amount)).group_by(lg.account_id, lg.kind)
    for acct, kind, total in conn.execute(scoped(q, lg.account_id)):
        sums[(int(acct), str(kind))] = int(total)
    charged: dict[int, int] = {}
    refunded: dict[int, int] = {}
    q = (
        select(m.account_id, func.sum(m.price), func.sum(m.price).filter(m.refunded_at.isnot(None)))
        .where(m.charged)
        .group_by(m.account_id)
    )
    for acct, total, back in conn.execute(scoped(q, m.account_id)):
        charged[int(acct)] = int(total or 0)
        refunded[int(acct)] = int(back or 0)
    out: list[Mismatch] = []
    accounts = set(stored) | {a for a, _ in sums} | set(charged)
    for a in sorted(accounts):
        total = sum(v for (acct, _), v in sums.items() if acct == a)
        if stored.get(a, 0) != total:
            out.append(Mismatch(a, "balance = sum of ledger", total, int(stored.get(a, 0))))
        if -sums.get((a, "charge"), 0) != charged.get(a, 0):
            out.append(
                Mismatch(
                    a, "charges = charged messages", charged.get(a, 0), -sums.get((a, "charge"), 0)
                )
            )
        if sums.get((a, "refund"), 0) != refunded.get(a, 0):
            out.append(
                Mismatch(
                    a, "refunds = refunded messages", refunded.get(a, 0), sums.get((a, "refund"), 0)
                )
            )
    return out


def submission_charge(conn: Connection, submission_ids: Sequence[str]) -> dict[str, int]:
    """Net amount paid per submission (charges less refunds), for campaign costs."""
    if not submission_ids:
        return {}
    lg = ledger.c
    q = (
        select(lg.submission_id, func.sum(lg.amount))
        .where(and_(lg.submission_id.in_(list(submission_ids))))
        .group_by(lg.submission_id)
    )
    return {str(s): -int(v) for s, v in conn.execute(q)}


# -- low balance -------------------------------------------------------------------------------

EVENT_BALANCE_LOW = "account.balance_low"


def low_balance_sweep(conn: Connection, now: float) -> list[int]:
    """Notify accounts whose balance fell below their low-balance level: one
    ``account.balance_low`` webhook per dip (to the account's webhook URL), re-armed once the
    balance is back at or above the level. Returns the accounts notified. The caller commits."""
    from dispatcher.ids import new_message_id
    from dispatcher.store.webhooks import create_account_webhook
    from dispatcher.times import iso_ms as iso

    b = balances.c
    conn.execute(
        update(balances)
        .where(
            and_(
                b.low_notified_at.isnot(None),
                (b.low_balance.is_(None)) | (b.balance >= b.low_balance),
            )
        )
        .values(low_notified_at=None)
    )
    rows = conn.execute(
        select(b.account_id, b.balance, b.low_balance, b.currency, b.credit_limit).where(
            and_(b.low_balance.isnot(None), b.balance < b.low_balance, b.low_notified_at.is_(None))
        )
    ).all()
    for account_id, balance, low, cur, credit in rows:
        payload = {
            "type": EVENT_BALANCE_LOW,
            "accountBalance": format_minor(int(balance), int(cur)),
            "lowBalance": format_minor(int(low), int(cur)),
            "available": None if credit is None else format_minor(int(balance + credit), int(cur)),
            "currency": int(cur),
            "at": iso(now),
        }
        create_account_webhook(
            conn, int(account_id), EVENT_BALANCE_LOW, new_message_id(), payload, now
        )
        conn.execute(update(balances).where(b.account_id == account_id).values(low_notified_at=now))
    return [int(r[0]) for r in rows]


def accounts_below_low(conn: Connection) -> int:
    """How many accounts are below their low-balance level now (the exporter's gauge)."""
    b = balances.c
    q = select(func.count()).where(and_(b.low_balance.isnot(None), b.balance < b.low_balance))
    return int(conn.execute(q).scalar_one())
