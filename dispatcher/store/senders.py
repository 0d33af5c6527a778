"""Sender names: an account requests one, an operator approves or rejects it (docs/senders.md).

Every function takes an open :class:`~sqlalchemy.Connection` (the caller's transaction: use
``engine.begin()`` for the writes) and is the one implementation the API, the CLI and the
support panel call:

* :func:`request_name` - an account asks for a name (pending; a rejected name may be asked
  for again; an approved or pending one is returned as it is);
* :func:`list_names` - one account's names, or every account's (the operator's queue:
  ``state="pending"``), oldest request first;
* :func:`get_name`, :func:`find_name` - one name by id, or by account and name;
* :func:`approve`, :func:`reject` - the operator's decision (``reject`` also withdraws an
  approved name);
* :func:`get_policy`, :func:`set_policy` - the account's :class:`SenderPolicy`;
* :func:`approved_names` - what a ``registered`` account may send from: its approved names and
  its dedicated numbers.

Names are validated with :func:`dispatcher.sms.validate_sender` and stored as it returns them
(trimmed); they are compared exactly, as handsets show them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, select, update

from dispatcher.sms import validate_sender
from dispatcher.store.schema import accounts, numbers, sender_names
from dispatcher.store.sql import dialect_insert

MAX_REASON = 255
MAX_ACTOR = 64


class SenderPolicy(StrEnum):
    """Which names an account may send from."""

    REGISTERED = "registered"  # approved names (and its dedicated numbers) only
    OPEN = "open"  # any valid sender name


class NameState(StrEnum):
    """Where a requested name stands."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class UnknownSenderName(LookupError):
    """No such sender name (for this account)."""


class UnknownAccount(LookupError):
    """No account has that id."""


@dataclass(frozen=True)
class SenderName:
    """One requested name and the decision about it."""

    id: int
    account_id: int
    name: str
    state: NameState
    requested_at: float
    requested_by: str
    decided_at: float | None
    decided_by: str | None
    reason: str | None

    @property
    def status_at(self) -> float:
        """When it entered its current state."""
        return self.decided_at if self.decided_at is not None else self.requested_at


def _name(row: Any) -> SenderName:
    return SenderName(
        id=int(row["id"]),
        account_id=int(row["account_id"]),
        name=str(row["name"]),
        state=NameState(row["state"]),
        requested_at=float(row["requested_at"]),
        requested_by=str(row["requested_by"]),
        decided_at=None if row["decided_at"] is None else float(row["decided_at"]),
        decided_by=row["decided_by"],
        reason=row["reason"],
    )


def _actor(who: str) -> str:
    return (who.strip() or "unknown")[:MAX_ACTOR]


def find_name(conn: Connection, account_id: int, name: str) -> SenderName | None:
    """The account's entry for ``name`` (trimmed), or ``None``."""
    row = conn.execute(
        select(sender_names).where(
            sender_names.c.account_id == account_id, sender_names.c.name == name.strip()
        )
    ).first()
    return _name(row._mapping) if row is not None else None


def get_name(conn: Connection, name_id: int) -> SenderName | None:
    """The entry with this id, or ``None``."""
    row = conn.execute(select(sender_names).where(sender_names.c.id == name_id)).first()
    return _name(row._mapping) if row is not None else None


def request_name(conn: Connection, account_id: int, name: str, by: str, now: float) -> SenderName:
    """Ask for ``name`` for the account: a new or a rejected name becomes pending; a pending or
    approved one is returned unchanged. Raises
    :class:`~dispatcher.sms.errors.InvalidSender` for a name no handset would show."""
    clean = validate_sender(name)
    existing = find_name(conn, account_id, clean)
    if existing is not None and existing.state != NameState.REJECTED:
        return existing
    values = {
        "state": str(NameState.PENDING),
        "requested_at": now,
        "requested_by": _actor(by),
        "decided_at": None,
        "decided_by": None,
        "reason": None,
    }
    if existing is None:  # asked for at the same moment by another caller: theirs stands
        conn.execute(
            dialect_insert(conn, sender_names)
            .values(account_id=account_id, name=clean, **values)
            .on_conflict_do_nothing()
        )
    else:
        conn.execute(update(sender_names).where(sender_names.c.id == existing.id).values(**values))
    found = find_name(conn, account_id, clean)
    assert found is not None
    return found


def list_names(
    conn: Connection, account_id: int | None = None, state: NameState | str | None = None
) -> list[SenderName]:
    """Names of one account (``account_id``) or of every account, optionally in one state,
    oldest request first."""
    query = select(sender_names).order_by(sender_names.c.requested_at, sender_names.c.id)
    if account_id is not None:
        query = query.where(sender_names.c.account_id == account_id)
    if state is not None:
        query = query.where(sender_names.c.state == str(NameState(state)))
    return [_name(r._mapping) for r in conn.execute(query)]


def _decide(
    conn: Connection, name_id: int, state: NameState, by: str, now: float, reason: str | None
) -> SenderName:
    done = conn.execute(
        update(sender_names)
        .where(sender_names.c.id == name_id)
        .values(
            state=str(state),
            decided_at=now,
            decided_by=_actor(by),
            reason=reason.strip()[:MAX_REASON] if reason else None,
        )
    )
    if done.rowcount == 0:
        raise UnknownSenderName(f"no sender name with id {name_id}")
    found = get_name(conn, name_id)
    assert found is not None
    return found


def approve(conn: Connection, name_id: int, by: str, now: float) -> SenderName:
    """The operator ``by`` approves the name: a ``registered`` account may send from it."""
    return _decide(conn, name_id, NameState.APPROVED, by, now, None)


def reject(conn: Connection, name_id: int, by: str, reason: str, now: float) -> SenderName:
    """The operator ``by`` rejects the name (or withdraws its approval), saying why."""
    if not reason.strip():
        raise ValueError("say why the name is rejected: the customer sees the reason")
    return _decide(conn, name_id, NameState.REJECTED, by, now, reason)


def get_policy(conn: Connection, account_id: int) -> SenderPolicy:
    """The account's sender policy."""
    policy = conn.execute(
        select(accounts.c.sender_policy).where(accounts.c.id == account_id)
    ).scalar_one_or_none()
    if policy is None:
        raise UnknownAccount(f"no account with id {account_id}")
    return SenderPolicy(policy)


def set_policy(conn: Connection, account_id: int, policy: SenderPolicy | str) -> None:
    """Set the account's sender policy (API processes apply it within the auth cache TTL)."""
    done = conn.execute(
        update(accounts)
        .where(accounts.c.id == account_id)
        .values(sender_policy=str(SenderPolicy(policy)))
    )
    if done.rowcount == 0:
        raise UnknownAccount(f"no account with id {account_id}")


def approved_names(conn: Connection, account_id: int) -> frozenset[str]:
    """What a ``registered`` account may send from: its approved names and its dedicated
    numbers (numbers without their ``+``; see :func:`sender_key`)."""
    names = conn.execute(
        select(sender_names.c.name).where(
            sender_names.c.account_id == account_id,
            sender_names.c.state == str(NameState.APPROVED),
        )
    ).scalars()
    own = conn.execute(select(numbers.c.number).where(numbers.c.account_id == account_id))
    return frozenset(sender_key(n) for n in [*names, *own.scalars()])


def sender_key(name: str) -> str:
    """How names are compared: as written, but numbers with or without their ``+``."""
    clean = name.strip()
    digits = clean.removeprefix("+")
    return digits if digits.isdigit() else clean


def may_send(policy: SenderPolicy | str, approved: frozenset[str], sender: str) -> bool:
    """Whether an account with ``policy`` and ``approved`` names may send from ``sender``."""
    return policy != SenderPolicy.REGISTERED or sender_key(sender) in approved
