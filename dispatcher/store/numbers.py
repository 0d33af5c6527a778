"""Dedicated numbers (short codes and long numbers) and the accounts they belong to.

A number belongs to at most one account (``numbers.number`` is unique). Long numbers are
stored in E.164 (``+48500100200``), short codes as their digits (``4321``).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.exc import IntegrityError

from dispatcher.store.schema import accounts, numbers


class NumberKind(StrEnum):
    """What kind of dedicated number it is."""

    SHORT_CODE = "short_code"
    LONG_NUMBER = "long_number"


class NumberTaken(Exception):
    """The number is already assigned (to this or another account)."""

    def __init__(self, number: str, account: str | None) -> None:
        super().__init__(f"{number} is already assigned to account {account or '?'}")
        self.number = number
        self.account = account


def lookup_forms(number: str) -> tuple[str, ...]:
    """The stored forms an inbound ``to`` may refer to.

    Carriers send long numbers with or without the ``+``; short codes are plain digits.
    """
    raw = number.strip()
    digits = raw.removeprefix("+")
    if not digits.isdigit():
        return (raw,)
    return tuple(dict.fromkeys((raw, digits, "+" + digits)))


def add_number(
    conn: Connection, number: str, account_id: int, kind: NumberKind | str, now: float
) -> dict[str, Any]:
    """Assign ``number`` (already normalised) to the account; :class:`NumberTaken` if taken."""
    owner = conn.execute(
        select(accounts.c.name)
        .select_from(numbers.join(accounts, accounts.c.id == numbers.c.account_id))
        .where(numbers.c.number == number)
    ).first()
    if owner is not None:
        raise NumberTaken(number, owner[0])
    row = {"number": number, "account_id": account_id, "kind": str(kind), "created_at": now}
    try:
        conn.execute(insert(numbers).values(**row))
    except IntegrityError:  # assigned concurrently; the caller's transaction is rolled back
        raise NumberTaken(number, None) from None
    return row


def remove_number(conn: Connection, number: str) -> int | None:
    """Unassign a number; the account it was assigned to (``None``: it was not)."""
    owner = conn.execute(
        delete(numbers).where(numbers.c.number == number).returning(numbers.c.account_id)
    ).scalar()
    return None if owner is None else int(owner)


def list_numbers(conn: Connection, account_id: int | None = None) -> list[dict[str, Any]]:
    """Numbers with their account's name, ordered by number; all accounts when ``None``."""
    stmt = (
        select(numbers, accounts.c.name.label("account"))
        .select_from(numbers.join(accounts, accounts.c.id == numbers.c.account_id, isouter=True))
        .order_by(numbers.c.number)
    )
    if account_id is not None:
        stmt = stmt.where(numbers.c.account_id == account_id)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def account_for_number(conn: Connection, number: str) -> tuple[int, str] | None:
    """The account owning an inbound ``to`` and the number as stored, or ``None``."""
    forms: Sequence[str] = lookup_forms(number)
    row = conn.execute(
        select(numbers.c.account_id, numbers.c.number).where(numbers.c.number.in_(forms)).limit(1)
    ).first()
    return (int(row[0]), str(row[1])) if row is not None else None
