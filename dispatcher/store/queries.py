"""Reading messages back for the API (always scoped to one account)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, case, func, select

from dispatcher.contract import STATUS_CODES
from dispatcher.store.schema import message_events, messages

# Every ordering the original API's clients send (``id`` is a common client's default); the
# v2.1 names of the fields. ``status`` orders by the numeric v2.1 code, as the original's does.
ORDER_COLUMNS: dict[str, Any] = {
    "id": messages.c.id,  # UUIDv7: the order messages were accepted in
    "createTime": messages.c.created_at,
    "statusTime": messages.c.status_at,
    "externalId": messages.c.external_id,
    "status": case({str(s): code for s, code in STATUS_CODES.items()}, value=messages.c.status),
    "phoneNumber": messages.c.phone,
    "sender": messages.c.sender,
}


@dataclass(frozen=True)
class MessageFilter:
    """Filters of ``GET /v2.1/sms`` (all optional)."""

    external_id: str | None = None
    phone_numbers: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    senders: tuple[str, ...] = ()
    date_from: float | None = None
    date_to: float | None = None


def get_message(conn: Connection, account_id: int, message_id: str) -> dict[str, Any] | None:
    """One message of the account, or ``None`` (also for another account's id)."""
    row = conn.execute(
        select(messages).where(
            and_(messages.c.id == message_id, messages.c.account_id == account_id)
        )
    ).first()
    return dict(row._mapping) if row is not None else None


def list_messages(
    conn: Connection,
    account_id: int,
    flt: MessageFilter,
    offset: int = 0,
    limit: int = 100,
    order_by: str = "createTime",
    descending: bool = True,
) -> tuple[list[dict[str, Any]], int]:
    """A page of the account's messages and the total number matching."""
    c = messages.c
    conds = [c.account_id == account_id]
    if flt.external_id is not None:
        conds.append(c.external_id == flt.external_id)
    if flt.phone_numbers:
        conds.append(c.phone.in_(flt.phone_numbers))
    if flt.statuses:
        conds.append(c.status.in_(flt.statuses))
    if flt.senders:
        conds.append(c.sender.in_(flt.senders))
    if flt.date_from is not None:
        conds.append(c.created_at >= flt.date_from)
    if flt.date_to is not None:
        conds.append(c.created_at <= flt.date_to)
    where = and_(*conds)
    total = conn.execute(select(func.count()).select_from(messages).where(where)).scalar_one()
    col = ORDER_COLUMNS.get(order_by, c.created_at)
    order = [col.desc() if descending else col.asc(), c.id.desc() if descending else c.id.asc()]
    rows = conn.execute(select(messages).where(where).order_by(*order).offset(offset).limit(limit))
    return [dict(r._mapping) for r in rows], int(total)


def message_timeline(conn: Connection, message_id: str) -> list[dict[str, Any]]:
    """The recorded events of one message, oldest first."""
    rows = conn.execute(
        select(message_events)
        .where(message_events.c.message_id == message_id)
        .order_by(message_events.c.at, message_events.c.id)
    )
    return [dict(r._mapping) for r in rows]
