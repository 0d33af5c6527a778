"""Campaigns made in the panel, as stored: whether a name is taken, and the rows that were not
sent (with why), downloadable as CSV from the campaign's page (docs/panel.md)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, and_, func, insert, select

from dispatcher.store.schema import campaign_rejections, submissions

# Rows per INSERT: a 100,000-row upload is a hundred statements, not one huge one.
_CHUNK = 1000


def name_taken(conn: Connection, account_id: int, name: str) -> bool:
    """Whether the account already has a campaign called ``name``."""
    s = submissions.c
    query = select(s.id).where(and_(s.account_id == account_id, s.campaign == name)).limit(1)
    return conn.execute(query).first() is not None


def add_rejections(
    conn: Connection,
    account_id: int,
    campaign: str,
    rows: Sequence[tuple[int, str, str]],
    now: float,
) -> None:
    """Store the campaign's refused rows: (CSV line, phone as written, reason)."""
    values = [
        {
            "account_id": account_id,
            "campaign": campaign,
            "line": line,
            "phone": phone[:64],
            "reason": reason[:255],
            "created_at": now,
        }
        for line, phone, reason in rows
    ]
    for i in range(0, len(values), _CHUNK):
        conn.execute(insert(campaign_rejections), values[i : i + _CHUNK])


def rejections(conn: Connection, account_id: int, campaign: str) -> list[tuple[int, str, str]]:
    """The campaign's refused rows, (line, phone, reason), in the CSV's order."""
    r = campaign_rejections.c
    query = (
        select(r.line, r.phone, r.reason)
        .where(and_(r.account_id == account_id, r.campaign == campaign))
        .order_by(r.line)
    )
    return [(int(x.line), str(x.phone), str(x.reason)) for x in conn.execute(query)]


def count_rejections(conn: Connection, account_id: int, campaign: str) -> int:
    """How many rows of a panel campaign were not sent (downloadable as CSV)."""
    r = campaign_rejections.c
    query = select(func.count()).where(and_(r.account_id == account_id, r.campaign == campaign))
    return int(conn.execute(query).scalar_one())
