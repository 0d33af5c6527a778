"""The per-account cap on webhook endpoints.

Each URL an account's webhooks go to is an endpoint with its own health record
(``webhook_endpoints``). A per-message ``webhookUrl`` is registered as one when a message
first names it, and refused once the account has ``cap`` endpoints, so a client cannot grow
the table (and the webhooks lane's per-endpoint work) without bound by sending each message to
a new URL. On PostgreSQL an advisory lock per account makes count-and-insert atomic; SQLite
serialises writers anyway.
"""

from __future__ import annotations

from sqlalchemy import Connection, and_, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from dispatcher.store.schema import webhook_endpoints
from dispatcher.store.webhooks import EndpointState

_LOCK_SPACE = 0x5E_B0_0C  # advisory-lock key space of this module (high 32 bits)


def admit_endpoint(conn: Connection, account_id: int, url: str, cap: int, now: float) -> bool:
    """Register ``url`` as an endpoint of the account unless it has ``cap`` already (0: no
    cap); whether ``url`` is (now) one of its endpoints. Call in a transaction.

    Insert first, then count: the insert takes the write lock on SQLite (whose driver starts
    the transaction only at the first write), so the count sees every concurrent registration
    that committed before; on PostgreSQL an advisory lock per account does the same.
    """
    e = webhook_endpoints.c
    mine = and_(e.account_id == account_id, e.url == url)
    if conn.execute(select(e.id).where(mine)).first() is not None:
        return True
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock((_LOCK_SPACE << 32) | account_id)))
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    added = conn.execute(
        insert(webhook_endpoints)
        .values(
            account_id=account_id,
            url=url,
            state=EndpointState.ACTIVE,
            consecutive_failures=0,
            changed_at=now,
        )
        .on_conflict_do_nothing()
        .returning(e.id)
    ).first()
    if added is None or cap <= 0:
        return True  # registered by a concurrent request, or no cap
    held = conn.execute(
        select(func.count()).select_from(webhook_endpoints).where(e.account_id == account_id)
    ).scalar_one()
    if held > cap:
        conn.execute(delete(webhook_endpoints).where(e.id == added[0]))
        return False
    return True
