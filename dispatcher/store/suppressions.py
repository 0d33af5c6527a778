"""Opt-outs: numbers that asked an account to stop sending them marketing (bulk) messages."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, and_, select

from dispatcher.store.schema import suppressions

_CHUNK = 1000


def suppressed(conn: Connection, account_id: int, phones: Sequence[str]) -> set[str]:
    """Which of ``phones`` (E.164) are on the account's suppression list."""
    out: set[str] = set()
    for i in range(0, len(phones), _CHUNK):
        chunk = list(phones[i : i + _CHUNK])
        rows = conn.execute(
            select(suppressions.c.phone).where(
                and_(suppressions.c.account_id == account_id, suppressions.c.phone.in_(chunk))
            )
        )
        out.update(r[0] for r in rows)
    return out
