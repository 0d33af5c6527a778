"""Short links and their clicks in the message log (docs/short-links.md).

Links are written with their messages, in the same transaction (:func:`settle_codes` first,
then :func:`link_rows`); a link row never changes afterwards. Clicks arrive in batches from
the redirect service (:func:`write_clicks`), with their ``message.click`` webhooks in the same
transaction, so a recorded click and its webhook are never one without the other.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, and_, func, select

from dispatcher.contract import EVENT_MESSAGE_CLICK
from dispatcher.ids import alphanumeric_token
from dispatcher.store.records import NewMessage
from dispatcher.store.schema import accounts, link_clicks, messages, short_links
from dispatcher.store.webhooks import delivery_row, targets
from dispatcher.times import iso_ms as iso
from dispatcher.webhooks.payloads import dumps

LINK_COLUMNS = ("code", "message_id", "account_id", "position", "url", "created_at", "expires_at")
CLICK_COLUMNS = ("code", "message_id", "account_id", "at", "client", "bot", "ip_hash")
FIRST_CLICK_KEY = "first"  # status_key of the one webhook per message (first-click mode)
_CHUNK = 500


class ClickWebhooks:
    """Which clicks send a ``message.click`` webhook (``accounts.click_webhooks``)."""

    FIRST = "first"
    ALL = "all"
    NONE = "none"
    CHOICES = (FIRST, ALL, NONE)


@dataclass(frozen=True, slots=True)
class LinkTarget:
    """What the redirect service needs to answer a code."""

    code: str
    url: str
    message_id: str
    account_id: int
    expires_at: float


@dataclass(frozen=True, slots=True)
class Click:
    """One request for a short link, as recorded."""

    code: str
    message_id: str
    account_id: int
    at: float
    client: str
    bot: bool
    ip_hash: str | None = None
    url: str = ""  # the link's URL, for the webhook (not stored with the click)


def settle_codes(conn: Connection, msgs: Sequence[NewMessage]) -> int:
    """Give a fresh code to every link whose code is already stored (or repeated in ``msgs``),
    rewriting the message's text to match; returns how many were replaced.

    Codes are random (:mod:`dispatcher.links.shorten`), so this almost never replaces anything;
    it makes uniqueness a check rather than a probability.
    """
    codes = [link.code for m in msgs for link in m.links]
    if not codes:
        return 0
    taken: set[str] = set()
    for i in range(0, len(codes), _CHUNK):
        chunk = codes[i : i + _CHUNK]
        taken.update(
            r[0]
            for r in conn.execute(select(short_links.c.code).where(short_links.c.code.in_(chunk)))
        )
    seen: set[str] = set()
    replaced = 0
    for m in msgs:
        links = list(m.links)
        for j, link in enumerate(links):
            if link.code in taken or link.code in seen:
                new = alphanumeric_token(len(link.code))
                while new in taken or new in seen:
                    new = alphanumeric_token(len(link.code))
                m.body = _swap(m.body, link.code, new)
                links[j] = replace(link, code=new)
                replaced += 1
            seen.add(links[j].code)
        m.links = tuple(links)
    return replaced


def _swap(body: str, old: str, new: str) -> str:
    """``body`` with the short link ending in ``/old`` ending in ``/new`` (same length)."""
    at = body.find("/" + old)
    while at >= 0:
        end = at + 1 + len(old)
        if end == len(body) or not body[end].isalnum():
            return body[: at + 1] + new + body[end:]
        at = body.find("/" + old, at + 1)
    return body


def link_rows(msgs: Sequence[NewMessage]) -> list[tuple[Any, ...]]:
    """``short_links`` rows (in :data:`LINK_COLUMNS` order) for the links of ``msgs``."""
    return [
        (link.code, m.id, m.account_id, link.position, link.url, m.created_at, m.links_expire_at)
        for m in msgs
        for link in m.links
    ]


def find_link(conn: Connection, code: str) -> LinkTarget | None:
    """The link stored under ``code``, expired or not; ``None`` when there is none."""
    return find_links(conn, [code]).get(code)


def find_links(conn: Connection, codes: Sequence[str]) -> dict[str, LinkTarget]:
    """The links stored under ``codes`` (expired or not), by code; unknown codes are absent.

    One statement for the lot, as driver SQL: the redirect service looks up every code its
    clients asked for since its last look-up at once (:mod:`dispatcher.links.redirect`).
    """
    out: dict[str, LinkTarget] = {}
    unique = list(dict.fromkeys(codes))
    cols = "code, url, message_id, account_id, expires_at"
    for i in range(0, len(unique), _CHUNK):
        chunk = unique[i : i + _CHUNK]
        if conn.dialect.name == "postgresql":  # one array parameter: one prepared statement
            sql = f"SELECT {cols} FROM short_links WHERE code = ANY(%s)"
            rows = conn.exec_driver_sql(sql, (chunk,))
        else:
            marks = ", ".join("?" * len(chunk))
            rows = conn.exec_driver_sql(
                f"SELECT {cols} FROM short_links WHERE code IN ({marks})", tuple(chunk)
            )
        for code, url, message_id, account_id, expires_at in rows:
            out[code] = LinkTarget(code, url, message_id, int(account_id), float(expires_at))
    return out


def write_clicks(conn: Connection, clicks: Sequence[Click], now: float) -> int:
    """Record ``clicks`` and create their ``message.click`` webhooks; the caller commits.

    Previews (``bot``) are recorded but send no webhook. Returns the webhooks created.
    """
    if not clicks:
        return 0
    mark = "%s" if conn.dialect.name == "postgresql" else "?"
    conn.exec_driver_sql(
        f"INSERT INTO link_clicks ({', '.join(CLICK_COLUMNS)}) "
        f"VALUES ({', '.join([mark] * len(CLICK_COLUMNS))})",
        [(c.code, c.message_id, c.account_id, c.at, c.client, c.bot, c.ip_hash) for c in clicks],
    )
    counted = [c for c in clicks if not c.bot]
    return _click_webhooks(conn, counted, now) if counted else 0


def _click_webhooks(conn: Connection, clicks: Sequence[Click], now: float) -> int:
    m, a = messages.c, accounts.c
    ids = sorted({c.message_id for c in clicks})
    info: dict[str, Any] = {}
    for i in range(0, len(ids), _CHUNK):
        rows = conn.execute(
            select(
                m.id,
                m.account_id,
                m.external_id,
                m.phone,
                m.sender,
                m.webhook_url,
                a.webhook_url.label("account_url"),
                a.webhook_url_secondary.label("account_url_secondary"),
                a.click_webhooks,
            )
            .join(accounts, a.id == m.account_id)
            .where(and_(m.id.in_(ids[i : i + _CHUNK]), a.click_webhooks != ClickWebhooks.NONE))
        )
        info.update({r.id: r for r in rows})
    new: list[dict[str, Any]] = []
    firsts: set[str] = set()
    for c in clicks:
        r = info.get(c.message_id)
        target = (
            None if r is None else targets(r.webhook_url, r.account_url, r.account_url_secondary)
        )
        if r is None or target is None:
            continue
        if r.click_webhooks == ClickWebhooks.FIRST:
            if c.message_id in firsts:
                continue
            firsts.add(c.message_id)
            key = FIRST_CLICK_KEY
        else:
            key = "c" + secrets.token_hex(7)
        body = dumps(click_payload(r._mapping, c, c.url))
        new.append(delivery_row(r.account_id, r.id, EVENT_MESSAGE_CLICK, key, *target, body, now))
    if not new:
        return 0
    # In key order: two links processes writing first clicks of the same messages in arrival
    # order deadlocked on the unique key (PostgreSQL's log during benchmark L).
    new.sort(key=lambda row: (row["message_id"], row["status_key"]))
    # Driver SQL, many rows in one call: compiling a many-row INSERT per batch cost more CPU
    # than the redirects it recorded (docs/short-links.md). A repeat of a message's first
    # click is skipped by the unique (message_id, event, status_key).
    columns = tuple(new[0])
    mark = "%s" if conn.dialect.name == "postgresql" else "?"
    result = conn.exec_driver_sql(
        f"INSERT INTO webhook_deliveries ({', '.join(columns)}) "
        f"VALUES ({', '.join([mark] * len(columns))}) ON CONFLICT DO NOTHING",
        [tuple(row.values()) for row in new],
    )
    return max(0, int(result.rowcount))


def click_payload(m: Any, click: Click, url: str) -> dict[str, Any]:
    """The ``message.click`` body: the message, the original URL, when and from what."""
    return {
        "type": EVENT_MESSAGE_CLICK,
        "id": m["id"],
        "externalId": m["external_id"],
        "phoneNumber": m["phone"],
        "sender": m["sender"],
        "url": url,
        "clickedAt": iso(click.at),
        "client": click.client,
    }


def message_links(conn: Connection, message_id: str) -> list[dict[str, Any]]:
    """The links of a message with their counted clicks (previews left out), in text order."""
    c, k = short_links.c, link_clicks.c
    counted = (
        select(k.code, func.count().label("clicks"), func.min(k.at).label("first_at"))
        .where(and_(k.message_id == message_id, k.bot.is_(False)))
        .group_by(k.code)
        .subquery()
    )
    previews = (
        select(k.code, func.count().label("previews"))
        .where(and_(k.message_id == message_id, k.bot.is_(True)))
        .group_by(k.code)
        .subquery()
    )
    rows = conn.execute(
        select(
            c.code,
            c.url,
            c.position,
            c.expires_at,
            func.coalesce(counted.c.clicks, 0).label("clicks"),
            counted.c.first_at,
            func.coalesce(previews.c.previews, 0).label("previews"),
        )
        .outerjoin(counted, counted.c.code == c.code)
        .outerjoin(previews, previews.c.code == c.code)
        .where(c.message_id == message_id)
        .order_by(c.position)
    )
    return [dict(r._mapping) for r in rows]


def link_stats(conn: Connection, submission_ids: Sequence[str]) -> dict[str, Any]:
    """Short-link figures of a campaign (its submissions): messages with links, messages
    clicked at least once, counted clicks, and previews (not counted). The click-through rate
    is ``clicked / with_links`` (``None`` when no message has links)."""
    m, c, k = messages.c, short_links.c, link_clicks.c
    ids = list(submission_ids)
    with_links = clicked = clicks = previews = 0
    for i in range(0, len(ids), _CHUNK):
        in_subs = m.submission_id.in_(ids[i : i + _CHUNK])
        with_links += conn.execute(
            select(func.count(func.distinct(c.message_id)))
            .select_from(short_links.join(messages, m.id == c.message_id))
            .where(in_subs)
        ).scalar_one()
        row = conn.execute(
            select(
                func.count(func.distinct(k.message_id)).filter(k.bot.is_(False)),
                func.count().filter(k.bot.is_(False)),
                func.count().filter(k.bot.is_(True)),
            )
            .select_from(link_clicks.join(messages, m.id == k.message_id))
            .where(in_subs)
        ).one()
        clicked += int(row[0])
        clicks += int(row[1])
        previews += int(row[2])
    rate = round(clicked / with_links, 4) if with_links else None
    return {
        "with_links": int(with_links),
        "clicked": clicked,
        "clicks": clicks,
        "previews": previews,
        "click_through_rate": rate,
    }


def clicked_by_submission(conn: Connection, submission_ids: Sequence[str]) -> dict[str, Any]:
    """Per submission: ``(messages with links, messages clicked)`` (previews not counted), for
    the panel's campaign list; submissions without links are absent."""
    m, c, k = messages.c, short_links.c, link_clicks.c
    ids = list(submission_ids)
    out: dict[str, list[int]] = {}
    for i in range(0, len(ids), _CHUNK):
        in_subs = m.submission_id.in_(ids[i : i + _CHUNK])
        for sub, n in conn.execute(
            select(m.submission_id, func.count(func.distinct(c.message_id)))
            .select_from(short_links.join(messages, m.id == c.message_id))
            .where(in_subs)
            .group_by(m.submission_id)
        ):
            out.setdefault(sub, [0, 0])[0] = int(n)
        for sub, n in conn.execute(
            select(m.submission_id, func.count(func.distinct(k.message_id)))
            .select_from(link_clicks.join(messages, m.id == k.message_id))
            .where(and_(in_subs, k.bot.is_(False)))
            .group_by(m.submission_id)
        ):
            out.setdefault(sub, [0, 0])[1] = int(n)
    return {sub: (v[0], v[1]) for sub, v in out.items()}
