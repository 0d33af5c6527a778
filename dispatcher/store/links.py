"""Short links and their clicks in the message log (docs/short-links.md).

Links are written with their messages, in the same transaction (:func:`settle_codes` first,
then :func:`link_rows`); a link row never changes afterwards. Clicks arrive in batches from
the redirect service (:func:`write_clicks`), with their ``message.click`` webhooks in the same
transaction, so a recorded click and its webhook are never one without the other.
"""

from __future__ import annotations

import secrets
from collections.abc import Container, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, and_, func, select

from dispatcher.contract import EVENT_MESSAGE_CLICK
from dispatcher.ids import alphanumeric_token
from dispatcher.store.bulk import copy_rows
from dispatcher.store.records import NewMessage
from dispatcher.store.schema import link_clicks, messages, short_links
from dispatcher.store.webhooks import delivery_row, insert_new, targets
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

    The redirect service looks up every code its clients asked for since its last look-up at
    once (:mod:`dispatcher.links.redirect`).
    """
    rows = _select_in(conn, _LINKS, list(dict.fromkeys(codes)))
    return {
        code: LinkTarget(code, url, message_id, int(account_id), float(expires_at))
        for code, url, message_id, account_id, expires_at in rows
    }


_LINKS = "SELECT code, url, message_id, account_id, expires_at FROM short_links WHERE code "
_ACCOUNT_HOOKS = (
    "SELECT id, webhook_url, webhook_url_secondary, click_webhooks FROM accounts WHERE id "
)
_MESSAGE_INFO = "SELECT id, external_id, phone, sender, webhook_url FROM messages WHERE id "


def _select_in(conn: Connection, query: str, values: Sequence[Any]) -> list[Any]:
    """The rows of ``query`` (ending in the column to match) for ``values``, in chunks.

    Driver SQL, with one array parameter on PostgreSQL: one prepared statement for any number
    of values, where an ``IN`` list is a new statement (planned anew) for each length.
    """
    out: list[Any] = []
    for i in range(0, len(values), _CHUNK):
        chunk = list(values[i : i + _CHUNK])
        if conn.dialect.name == "postgresql":
            out.extend(conn.exec_driver_sql(query + "= ANY(%s)", (chunk,)))
        else:
            marks = ", ".join("?" * len(chunk))
            out.extend(conn.exec_driver_sql(query + f"IN ({marks})", tuple(chunk)))
    return out


@dataclass(frozen=True, slots=True)
class ClicksWritten:
    """What :func:`write_clicks` did: webhooks created, and the messages whose first-click
    webhook now exists (created now or before), which later batches may skip."""

    webhooks: int
    firsts: frozenset[str]


def write_clicks(
    conn: Connection,
    clicks: Sequence[Click],
    now: float,
    known_firsts: Container[str] = frozenset(),
) -> ClicksWritten:
    """Record ``clicks`` and create their ``message.click`` webhooks; the caller commits.

    Previews (``bot``) are recorded but send no webhook. ``known_firsts``: messages whose
    first-click webhook is known to exist (committed), so that first-click accounts' repeat
    clicks of them skip the look-up and the insert the unique key would refuse anyway.
    """
    if not clicks:
        return ClicksWritten(0, frozenset())
    copy_rows(
        conn,
        link_clicks.name,
        CLICK_COLUMNS,
        [(c.code, c.message_id, c.account_id, c.at, c.client, c.bot, c.ip_hash) for c in clicks],
    )
    counted = [c for c in clicks if not c.bot]
    if not counted:
        return ClicksWritten(0, frozenset())
    return _click_webhooks(conn, counted, now, known_firsts)


def _click_webhooks(
    conn: Connection, clicks: Sequence[Click], now: float, known_firsts: Container[str]
) -> ClicksWritten:
    account_ids = sorted({c.account_id for c in clicks})
    hooks = {r.id: r for r in _select_in(conn, _ACCOUNT_HOOKS, account_ids)}
    wanted: list[Click] = []
    for c in clicks:
        a = hooks.get(c.account_id)
        if a is None or a.click_webhooks == ClickWebhooks.NONE:
            continue
        if a.click_webhooks == ClickWebhooks.FIRST and c.message_id in known_firsts:
            continue
        wanted.append(c)
    message_ids = sorted({c.message_id for c in wanted})
    info = {r.id: r for r in _select_in(conn, _MESSAGE_INFO, message_ids)}
    new: list[dict[str, Any]] = []
    firsts: set[str] = set()
    for c in wanted:
        a, m = hooks[c.account_id], info.get(c.message_id)
        target = (
            None if m is None else targets(m.webhook_url, a.webhook_url, a.webhook_url_secondary)
        )
        if m is None or target is None:
            continue
        if a.click_webhooks == ClickWebhooks.FIRST:
            if c.message_id in firsts:
                continue
            firsts.add(c.message_id)
            key = FIRST_CLICK_KEY
        else:
            key = "c" + secrets.token_hex(7)
        body = dumps(click_payload(m._mapping, c, c.url))
        new.append(delivery_row(a.id, m.id, EVENT_MESSAGE_CLICK, key, *target, body, now))
    if not new:
        return ClicksWritten(0, frozenset(firsts))
    # In key order: two links processes writing first clicks of the same messages in arrival
    # order deadlocked on the unique key (PostgreSQL's log during benchmark L).
    new.sort(key=lambda row: (row["message_id"], row["status_key"]))
    # A repeat of a message's first click is skipped by the unique (message_id, event,
    # status_key).
    return ClicksWritten(len(insert_new(conn, new)), frozenset(firsts))


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
