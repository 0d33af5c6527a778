"""Inbound (mobile-originated) messages: storing, joining long messages, keywords, listing.

Every step is idempotent, so a redelivered task or two workers racing change nothing twice:

* a message is stored once per ``(connection, carrier_message_id)`` (insert-or-nothing);
* a part is stored once per carrier id; when a group ``(connection, phone, number, ref,
  total)`` holds every ``seq`` from 1 to ``total``, whoever completes it *claims* the parts
  (``total`` is negated, compare-and-set on ``total > 0``) and inserts the joined message under
  the carrier id of part 1, in one transaction. A loser's claim matches fewer rows and rolls
  back. Claimed parts stay as the record of carrier ids already seen, so a part redelivered after
  the join is a duplicate, and a reused concatenation ``ref`` starts a fresh group;
* the stored message, its keyword's effect on the suppression list and its inbound webhook are
  written in one transaction.

The keyword rule is "the latest keyword wins": a keyword applies only if no later keyword from
the same phone to the same account is stored (``received_at``), so STOP and START applied out of
order by two workers end in the state the subscriber last asked for. On PostgreSQL an advisory
lock per (account, phone) serialises the check; SQLite serialises writers anyway.
"""

from __future__ import annotations

import hashlib
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from dispatcher.config import Settings
from dispatcher.ids import new_message_id
from dispatcher.sms.optout import KeywordAction, KeywordMatch, Keywords
from dispatcher.store import webhooks as webhook_store
from dispatcher.store.db import transaction
from dispatcher.store.numbers import account_for_number
from dispatcher.store.schema import inbound_messages, inbound_parts
from dispatcher.store.suppressions import SOURCE_KEYWORD, add_suppression, remove_suppression

# Parts further apart than this never belong to one message (a lost part's leftovers must not
# be joined with a later message that happens to reuse its 0-255 concatenation ref).
PART_WINDOW_S = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class NewInbound:
    """A complete inbound message to store."""

    account_id: int
    connection: str
    number: str  # our dedicated number, as stored in ``numbers``
    phone: str  # the sender, E.164
    body: str
    parts: int
    carrier_message_id: str
    received_at: float


@dataclass(frozen=True, slots=True)
class NewPart:
    """One part of a concatenated inbound message."""

    connection: str
    carrier_message_id: str
    phone: str
    number: str  # as the carrier sent it (parts are grouped by it)
    ref: str
    seq: int
    total: int
    body: str
    received_at: float


@dataclass(frozen=True, slots=True)
class StoredInbound:
    """A message this call stored (never returned for a duplicate)."""

    id: str
    keyword: KeywordMatch | None
    keyword_applied: bool  # False when a later keyword from the same phone already decided
    webhook_id: str | None

    @property
    def opted_out(self) -> bool:
        """Whether storing it put the sender on the account's suppression list."""
        return (
            self.keyword_applied
            and self.keyword is not None
            and (self.keyword.action is KeywordAction.OPT_OUT)
        )

    @property
    def opted_in(self) -> bool:
        """Whether storing it took the sender off the account's suppression list."""
        return (
            self.keyword_applied
            and self.keyword is not None
            and (self.keyword.action is KeywordAction.OPT_IN)
        )


class _Lost(Exception):
    """Another applier completed the same message first: roll this transaction back."""


def _insert(conn: Connection, table: Any) -> Any:
    return postgresql.insert(table) if conn.dialect.name == "postgresql" else sqlite.insert(table)


class InboundStore:
    """Short transactions over one engine; database errors become :class:`StoreUnavailable`."""

    def __init__(
        self, engine: Engine, keywords: Keywords | None = None, part_window_s: float = PART_WINDOW_S
    ) -> None:
        self.engine = engine
        self.keywords = keywords or Keywords.default()
        self.part_window_s = part_window_s

    @classmethod
    def for_settings(cls, engine: Engine, settings: Settings) -> InboundStore:
        """A store using the configured keyword lists."""
        return cls(engine, Keywords.from_settings(settings))

    def _tx(self) -> AbstractContextManager[Connection]:
        return transaction(self.engine)

    def account_for(self, number: str) -> tuple[int, str] | None:
        """The account owning our number ``number`` and its stored form, or ``None``."""
        with self._tx() as conn:
            return account_for_number(conn, number)

    def store_message(self, msg: NewInbound, now: float) -> StoredInbound | None:
        """Store a single-part message; ``None`` when its carrier id was seen before."""
        with self._tx() as conn:
            return _store(conn, self.keywords, msg, now)

    def add_part(self, part: NewPart) -> bool:
        """Store one part; ``False`` when its carrier id was seen before."""
        with self._tx() as conn:
            stmt = (
                _insert(conn, inbound_parts)
                .values(**asdict(part))
                .on_conflict_do_nothing()
                .returning(inbound_parts.c.id)
            )
            return conn.execute(stmt).first() is not None

    def join(self, part: NewPart, account_id: int, number: str, now: float) -> StoredInbound | None:
        """Store the message ``part`` belongs to if all its parts are here and unclaimed.

        Run in its own transaction after :meth:`add_part` committed, so of two workers adding
        the last two parts at once at least one sees both.
        """
        try:
            with self._tx() as conn:
                picked = _complete_group(conn, part, self.part_window_s)
                if picked is None:
                    return None
                ids = [p["id"] for p in picked]
                claimed = conn.execute(
                    update(inbound_parts)
                    .where(and_(inbound_parts.c.id.in_(ids), inbound_parts.c.total > 0))
                    .values(total=-inbound_parts.c.total)
                ).rowcount
                if claimed != len(ids):
                    raise _Lost
                msg = NewInbound(
                    account_id,
                    part.connection,
                    number,
                    part.phone,
                    "".join(p["body"] for p in picked),
                    part.total,
                    picked[0]["carrier_message_id"],
                    max(p["received_at"] for p in picked),
                )
                stored = _store(conn, self.keywords, msg, now)
                if stored is None:
                    raise _Lost
                return stored
        except _Lost:
            return None


def _complete_group(
    conn: Connection, part: NewPart, window_s: float
) -> list[dict[str, Any]] | None:
    """The unclaimed parts 1..total of ``part``'s group (the latest per seq), or ``None``."""
    c = inbound_parts.c
    rows = conn.execute(
        select(c.id, c.seq, c.body, c.carrier_message_id, c.received_at)
        .where(
            and_(
                c.connection == part.connection,
                c.phone == part.phone,
                c.number == part.number,
                c.ref == part.ref,
                c.total == part.total,
                c.received_at >= part.received_at - window_s,
                c.received_at <= part.received_at + window_s,
            )
        )
        .order_by(c.id)
    ).all()
    by_seq = {r.seq: dict(r._mapping) for r in rows}
    if set(by_seq) != set(range(1, part.total + 1)):
        return None
    return [by_seq[s] for s in range(1, part.total + 1)]


def _store(
    conn: Connection, keywords: Keywords, msg: NewInbound, now: float
) -> StoredInbound | None:
    match = keywords.match(msg.body)
    row: dict[str, Any] = {
        "id": new_message_id(),
        **asdict(msg),
        "keyword": match.keyword if match else None,
    }
    stmt = (
        _insert(conn, inbound_messages)
        .values(**row)
        .on_conflict_do_nothing()
        .returning(inbound_messages.c.id)
    )
    if conn.execute(stmt).first() is None:
        return None
    applied = _apply_keyword(conn, keywords, row, match) if match else False
    webhook_id = webhook_store.create_inbound_webhook(conn, row, now)
    return StoredInbound(row["id"], match, applied, webhook_id)


def _lock_key(account_id: int, phone: str) -> int:
    digest = hashlib.blake2b(f"{account_id}:{phone}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _apply_keyword(
    conn: Connection, keywords: Keywords, row: dict[str, Any], match: KeywordMatch
) -> bool:
    """Add or remove the sender's suppression unless a later keyword already decided."""
    account_id, phone, at = row["account_id"], row["phone"], row["received_at"]
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(_lock_key(account_id, phone))))
    c = inbound_messages.c
    later = conn.execute(
        select(c.keyword).where(
            and_(
                c.account_id == account_id,
                c.phone == phone,
                c.keyword.is_not(None),
                c.received_at > at,
            )
        )
    ).scalars()
    if any(keywords.action_of(k) for k in later):
        return False
    if match.action is KeywordAction.OPT_OUT:
        add_suppression(conn, account_id, phone, at, SOURCE_KEYWORD, match.keyword)
    else:
        remove_suppression(conn, account_id, phone)
    return True


@dataclass(frozen=True)
class InboundFilter:
    """Filters of ``GET /v2.1/sms/inbound`` (all optional; phones E.164, numbers as stored)."""

    phones: tuple[str, ...] = ()
    numbers: tuple[str, ...] = ()
    date_from: float | None = None
    date_to: float | None = None


def list_inbound(
    conn: Connection,
    account_id: int,
    flt: InboundFilter,
    offset: int = 0,
    limit: int = 100,
    descending: bool = True,
) -> tuple[list[dict[str, Any]], int]:
    """A page of the account's inbound messages by receive time, and how many match."""
    c = inbound_messages.c
    conds = [c.account_id == account_id]
    if flt.phones:
        conds.append(c.phone.in_(flt.phones))
    if flt.numbers:
        conds.append(c.number.in_(flt.numbers))
    if flt.date_from is not None:
        conds.append(c.received_at >= flt.date_from)
    if flt.date_to is not None:
        conds.append(c.received_at <= flt.date_to)
    where = and_(*conds)
    total = conn.execute(
        select(func.count()).select_from(inbound_messages).where(where)
    ).scalar_one()
    order = [c.received_at.desc(), c.id.desc()] if descending else [c.received_at.asc(), c.id.asc()]
    rows = conn.execute(
        select(inbound_messages).where(where).order_by(*order).offset(offset).limit(limit)
    )
    return [dict(r._mapping) for r in rows], int(total)
