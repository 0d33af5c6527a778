"""Reading the message log for the support panel: search, detail, campaigns.

Every function takes the account id and filters by it, so a panel user can never read another
account's rows: an id of another account behaves exactly like an id that does not exist.
Listings use keyset pagination on ``(time, id)``, newest first, and never count the whole match
(a count over a million rows costs more than the page itself).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select

from dispatcher.contract import FINAL_STATUSES, Status
from dispatcher.store.links import clicked_by_submission, link_stats, message_links
from dispatcher.store.queries import get_message, message_timeline
from dispatcher.store.schema import (
    inbound_messages,
    messages,
    submissions,
    webhook_attempts,
    webhook_deliveries,
)
from dispatcher.store.sql import id_in

# The columns a result row shows (the body for a preview: support recognises messages by it).
_LIST_COLUMNS = (
    messages.c.id,
    messages.c.body,
    messages.c.external_id,
    messages.c.phone,
    messages.c.sender,
    messages.c.status,
    messages.c.lane,
    messages.c.parts,
    messages.c.created_at,
    messages.c.submission_id,
)
PROGRESSED = frozenset(FINAL_STATUSES | {Status.SENT})


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: strictly older than ``(at, id)``."""

    at: float
    id: str

    def encode(self) -> str:
        """The ``after`` query parameter."""
        return f"{self.at!r}~{self.id}"

    @classmethod
    def decode(cls, raw: str) -> Cursor:
        """Parse an ``after`` parameter; ``ValueError`` when it is not one."""
        at, sep, ident = raw.partition("~")
        if not sep or not ident or len(ident) > 64:
            raise ValueError("not a page cursor")
        return cls(float(at), ident)


@dataclass(frozen=True)
class SearchFilter:
    """The panel's search form, validated (phones already E.164)."""

    direction: str = "out"  # out | in
    phones: tuple[str, ...] = ()
    external_id: str | None = None
    message_id: str | None = None
    sender: str | None = None
    statuses: tuple[str, ...] = ()
    lane: str | None = None
    date_from: float | None = None
    date_to: float | None = None
    submission_ids: tuple[str, ...] = ()


def _page(rows: list[dict[str, Any]], limit: int, at_key: str) -> tuple[list[dict], Cursor | None]:
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], Cursor(float(last[at_key]), str(last["id"]))


def search_outgoing(
    conn: Connection, account_id: int, flt: SearchFilter, after: Cursor | None, limit: int
) -> tuple[list[dict[str, Any]], Cursor | None]:
    """A page of the account's outgoing messages, newest first, and the next page's cursor."""
    c = messages.c
    conds = [c.account_id == account_id]
    if flt.message_id:
        conds.append(c.id == flt.message_id)
    if flt.phones:
        conds.append(c.phone.in_(flt.phones))
    if flt.external_id:
        conds.append(c.external_id == flt.external_id)
    if flt.sender:
        conds.append(c.sender == flt.sender)
    if flt.statuses:
        conds.append(c.status.in_(flt.statuses))
    if flt.lane:
        conds.append(c.lane == flt.lane)
    if flt.date_from is not None:
        conds.append(c.created_at >= flt.date_from)
    if flt.date_to is not None:
        conds.append(c.created_at < flt.date_to)
    if flt.submission_ids:
        conds.append(id_in(conn, c.submission_id, flt.submission_ids))
    if after is not None:
        conds.append(or_(c.created_at < after.at, and_(c.created_at == after.at, c.id < after.id)))
    rows = conn.execute(
        select(*_LIST_COLUMNS)
        .where(and_(*conds))
        .order_by(c.created_at.desc(), c.id.desc())
        .limit(limit + 1)
    )
    return _page([dict(r._mapping) for r in rows], limit, "created_at")


def search_inbound(
    conn: Connection, account_id: int, flt: SearchFilter, after: Cursor | None, limit: int
) -> tuple[list[dict[str, Any]], Cursor | None]:
    """A page of the account's inbound messages, newest first, and the next page's cursor."""
    c = inbound_messages.c
    conds = [c.account_id == account_id]
    if flt.message_id:
        conds.append(c.id == flt.message_id)
    if flt.phones:
        conds.append(c.phone.in_(flt.phones))
    if flt.date_from is not None:
        conds.append(c.received_at >= flt.date_from)
    if flt.date_to is not None:
        conds.append(c.received_at < flt.date_to)
    if after is not None:
        conds.append(
            or_(c.received_at < after.at, and_(c.received_at == after.at, c.id < after.id))
        )
    rows = conn.execute(
        select(inbound_messages)
        .where(and_(*conds))
        .order_by(c.received_at.desc(), c.id.desc())
        .limit(limit + 1)
    )
    return _page([dict(r._mapping) for r in rows], limit, "received_at")


@dataclass
class MessageDetail:
    """An outgoing message with everything support needs to answer "did my code arrive?"."""

    row: dict[str, Any]
    events: list[dict[str, Any]]
    webhooks: list[dict[str, Any]]  # deliveries, each with its ``attempts`` list
    submission: dict[str, Any] | None
    links: list[dict[str, Any]] = field(default_factory=list)  # short links with their clicks


def message_detail(conn: Connection, account_id: int, message_id: str) -> MessageDetail | None:
    """The message of this account with its events, webhooks and submission; else ``None``."""
    row = get_message(conn, account_id, message_id)
    if row is None:
        return None
    return MessageDetail(
        row,
        message_timeline(conn, message_id),
        _webhooks(conn, account_id, message_id),
        _submission(conn, account_id, row["submission_id"]),
        message_links(conn, message_id) if row.get("original_body") is not None else [],
    )


def inbound_detail(conn: Connection, account_id: int, inbound_id: str) -> dict[str, Any] | None:
    """An inbound message of this account, with its forwarding webhooks; else ``None``."""
    c = inbound_messages.c
    row = conn.execute(
        select(inbound_messages).where(and_(c.id == inbound_id, c.account_id == account_id))
    ).first()
    if row is None:
        return None
    return {**row._mapping, "webhooks": _webhooks(conn, account_id, inbound_id)}


def _webhooks(conn: Connection, account_id: int, message_id: str) -> list[dict[str, Any]]:
    d = webhook_deliveries.c
    return _deliveries(
        conn, and_(d.message_id == message_id, d.account_id == account_id), d.created_at.asc()
    )


def recent_deliveries(conn: Connection, account_id: int, limit: int = 20) -> list[dict[str, Any]]:
    """The account's newest webhook deliveries (any event), each with its attempts."""
    d = webhook_deliveries.c
    return _deliveries(conn, d.account_id == account_id, d.created_at.desc(), limit)


def _deliveries(
    conn: Connection, where: Any, order: Any, limit: int | None = None
) -> list[dict[str, Any]]:
    d = webhook_deliveries.c
    query = (
        select(
            d.id, d.message_id, d.event, d.status_key, d.url, d.state, d.attempts, d.created_at,
            d.delivered_at, d.last_status_code, d.last_error,
        )
        .where(where)
        .order_by(order)
    )  # fmt: skip
    if limit is not None:
        query = query.limit(limit)
    deliveries = [dict(r._mapping) for r in conn.execute(query)]
    if not deliveries:
        return []
    a = webhook_attempts.c
    by_delivery: dict[str, list[dict[str, Any]]] = {x["id"]: [] for x in deliveries}
    for r in conn.execute(
        select(a.delivery_id, a.at, a.url, a.status_code, a.latency_ms, a.error)
        .where(a.delivery_id.in_(list(by_delivery)))
        .order_by(a.at, a.id)
    ):
        by_delivery[r.delivery_id].append(dict(r._mapping))
    for x in deliveries:
        x["attempts"] = by_delivery[x["id"]]
    return deliveries


def _submission(conn: Connection, account_id: int, submission_id: str) -> dict[str, Any] | None:
    s = submissions.c
    row = conn.execute(
        select(s.id, s.campaign, s.recipients, s.source, s.created_at).where(
            and_(s.id == submission_id, s.account_id == account_id)
        )
    ).first()
    return dict(row._mapping) if row is not None else None


@dataclass
class Campaign:
    """A bulk send: one submission with several recipients, or every submission sharing a
    ``campaign`` name (the CSV upload's requests)."""

    kind: str  # "c" named campaign | "s" one submission
    key: str  # the campaign name or the submission id
    created_at: float
    last_at: float
    recipients: int
    submission_ids: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    links: dict[str, Any] = field(default_factory=dict)  # short-link figures (store.links)

    @property
    def total(self) -> int:
        """Messages stored (opted-out recipients were never stored)."""
        return sum(self.counts.values())

    @property
    def progressed(self) -> int:
        """Messages past the carrier: sent or in a final status."""
        return sum(n for s, n in self.counts.items() if s in PROGRESSED)

    @property
    def click_through(self) -> float | None:
        """Messages clicked over messages with short links (``None``: no short links)."""
        with_links = self.links.get("with_links", 0)
        return self.links.get("clicked", 0) / with_links if with_links else None

    @property
    def percent(self) -> int:
        """Progress, 0-100."""
        return round(100 * self.progressed / self.total) if self.total else 0


def list_campaigns(
    conn: Connection, account_id: int, offset: int, limit: int
) -> tuple[list[Campaign], bool]:
    """A page of the account's campaigns, newest first, and whether there are more."""
    s = submissions.c
    key = func.coalesce(s.campaign, s.id)
    grouped = conn.execute(
        select(
            key.label("key"),
            func.max(s.campaign).label("campaign"),
            func.min(s.created_at).label("created_at"),
            func.max(s.created_at).label("last_at"),
            func.sum(s.recipients).label("recipients"),
        )
        .where(and_(s.account_id == account_id, or_(s.campaign.is_not(None), s.recipients > 1)))
        .group_by(key)
        .order_by(func.max(s.created_at).desc(), key.desc())
        .offset(offset)
        .limit(limit + 1)
    ).all()
    more = len(grouped) > limit
    out = [
        Campaign(
            "c" if g.campaign is not None else "s",
            str(g.key),
            float(g.created_at),
            float(g.last_at),
            int(g.recipients),
        )
        for g in grouped[:limit]
    ]
    _fill(conn, account_id, out)
    by_sub = clicked_by_submission(conn, [s for c in out for s in c.submission_ids])
    for c in out:
        figures = [by_sub[s] for s in c.submission_ids if s in by_sub]
        if figures:
            c.links = {
                "with_links": sum(f[0] for f in figures),
                "clicked": sum(f[1] for f in figures),
            }
    return out, more


def campaign(conn: Connection, account_id: int, kind: str, key: str) -> Campaign | None:
    """One campaign of the account with its status counts; ``None`` when it is not one."""
    s = submissions.c
    cond = s.campaign == key if kind == "c" else and_(s.id == key, s.recipients > 1)
    row = conn.execute(
        select(
            func.min(s.created_at), func.max(s.created_at), func.sum(s.recipients), func.count()
        ).where(and_(s.account_id == account_id, cond))
    ).one()
    if not row[3]:
        return None
    found = Campaign(kind, key, float(row[0]), float(row[1]), int(row[2]))
    _fill(conn, account_id, [found])
    found.links = link_stats(conn, found.submission_ids)
    return found


def _fill(conn: Connection, account_id: int, found: Sequence[Campaign]) -> None:
    """Set each campaign's submission ids and its message counts per status."""
    s = submissions.c
    named = [c.key for c in found if c.kind == "c"]
    by_sub: dict[str, Campaign] = {c.key: c for c in found if c.kind == "s"}
    if named:
        by_name = {c.key: c for c in found if c.kind == "c"}
        for r in conn.execute(
            select(s.id, s.campaign).where(
                and_(s.account_id == account_id, id_in(conn, s.campaign, named))
            )
        ):
            by_sub[r.id] = by_name[r.campaign]
    for sub_id, camp in by_sub.items():
        camp.submission_ids.append(sub_id)
    if not by_sub:
        return
    m = messages.c
    rows = conn.execute(
        select(m.submission_id, m.status, func.count().label("n"))
        .where(and_(m.account_id == account_id, id_in(conn, m.submission_id, list(by_sub))))
        .group_by(m.submission_id, m.status)
    )
    for r in rows:
        counts = by_sub[r.submission_id].counts
        counts[r.status] = counts.get(r.status, 0) + int(r.n)
