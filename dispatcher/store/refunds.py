"""Refunds: a charged message that never reached a carrier gives its price back.

The policy (docs/prices.md, "Refunds"): a message is refunded when it is final and no carrier
took it: ``rejected`` (by us at send time, e.g. its route went away, or refused outright by
the carrier), ``expired`` before a carrier accepted it, or ``failed`` with a definite answer.
A message a carrier accepted (``sent_at`` set) is paid for whatever its handset report says,
and one whose last attempt may have reached the carrier (``send_state_unknown``) is not
refunded: the carrier may bill it.

The scheduler runs :func:`refund_sweep` every tick. It marks the messages refunded and
credits their accounts, with one ledger row per account and submission, in one transaction:
a crash before the commit leaves them for the next sweep, after it they are no longer
candidates (``refunded_at``), so nothing is refunded twice or lost.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import Connection, and_, text, update

from dispatcher.store.schema import REFUNDABLE, messages
from dispatcher.store.sql import id_in

SWEEP_LIMIT = 5000


def refund_sweep(conn: Connection, now: float, limit: int = SWEEP_LIMIT) -> int:
    """Refund up to ``limit`` refundable messages; returns how many. The caller commits.

    A read first (on the candidates' partial index), so a tick with nothing to refund writes
    nothing (on SQLite, no write lock every tick)."""
    lock = " FOR UPDATE SKIP LOCKED" if conn.dialect.name == "postgresql" else ""
    ids = [
        r[0]
        for r in conn.execute(
            text(
                f"SELECT id FROM messages WHERE {REFUNDABLE} ORDER BY status_at LIMIT :limit{lock}"
            ),
            {"limit": limit},
        )
    ]
    if not ids:
        return 0
    rows = conn.execute(
        update(messages)
        .where(and_(id_in(conn, messages.c.id, ids), messages.c.refunded_at.is_(None)))
        .values(refunded_at=now)
        .returning(
            messages.c.account_id,
            messages.c.submission_id,
            messages.c.price,
            messages.c.currency,
            messages.c.parts,
        )
    ).all()
    if not rows:
        return 0
    per_sub: dict[tuple[int, str, int], list[int]] = defaultdict(lambda: [0, 0, 0])
    per_account: dict[int, int] = defaultdict(int)
    for account_id, submission_id, price, currency, parts in rows:
        entry = per_sub[(int(account_id), str(submission_id), int(currency))]
        entry[0] += int(price)
        entry[1] += 1
        entry[2] += int(parts)
        per_account[int(account_id)] += int(price)
    for account_id in sorted(per_account):  # account order, as the charge locks them
        conn.execute(
            text(
                "UPDATE balances SET balance = balance + :amount, updated_at = :now "
                "WHERE account_id = :account"
            ),
            {"amount": per_account[account_id], "now": now, "account": account_id},
        )
    conn.execute(
        text(
            "INSERT INTO ledger (account_id, at, kind, amount, currency, submission_id, "
            "messages, parts, actor) VALUES (:a, :at, 'refund', :amount, :c, :s, :n, :p, "
            "'scheduler')"
        ),
        [
            {"a": a, "at": now, "amount": v[0], "c": c, "s": s, "n": v[1], "p": v[2]}
            for (a, s, c), v in sorted(per_sub.items())
        ],
    )
    return len(rows)
