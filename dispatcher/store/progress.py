"""The send path's state changes in the message log, batched and compare-and-set: the one
module the sender, the reconciler and the outbox sweep go through (and so the one to read).

Every transition names the state it expects (``WHERE status = …``), so a redelivered task, a
reconciler and a worker can never both move the same message: whoever loses the race changes
nothing. The successful attempt is recorded on the message row itself (carrier id, HTTP status,
latency), so the common path writes one row per message; failed attempts, deferrals and
reconciliations add rows to ``message_events`` for the timeline.

The functions take a connection (callers that hold a transaction compose them);
:class:`SendProgress` runs each in its own short transaction on an engine, the door the workers
use. Longer than 400 lines on purpose: every transition of the send path in one place.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, and_, bindparam, insert, select, text, update

from dispatcher.contract import AMBIGUOUS_CODES, Status
from dispatcher.store.db import transaction, translated
from dispatcher.store.schema import accounts, message_events, messages
from dispatcher.store.sql import id_in
from dispatcher.store.webhooks import create_status_webhooks

# The error code of a message the reconciler found the carrier does not have.
NOT_AT_CARRIER = "not_at_carrier"


@dataclass(slots=True, frozen=True)
class Claim:
    """A message this caller won: its validity as the log has it, and the error code of its
    last failed attempt (``None`` if none failed; hand-backs that spent no attempt keep it, so
    an ambiguous attempt is still checked after a rate-limit wait)."""

    valid_until: float
    last_error: str | None = None
    # Quiet hours (docs/campaigns.md): the minutes of the recipient's day it may be sent in.
    window: tuple[int, int] | None = None


@dataclass(slots=True)
class Sent:
    """A message the carrier accepted."""

    id: str
    carrier_message_id: str
    http_status: int
    latency_ms: float


@dataclass(slots=True)
class Failure:
    """A message whose attempt failed; ``status`` is where it goes next."""

    id: str
    status: str  # retrying | rejected | failed | expired
    code: str
    description: str
    permanent: bool
    http_status: int | None = None
    latency_ms: float | None = None
    next_attempt_at: float | None = None


def claim(conn: Connection, ids: Sequence[str], connection: str, now: float) -> dict[str, Claim]:
    """Move ``ids`` from queued to sending (compare-and-set) unless past their validity.

    Returns the ids this caller won, with their validity as the log has it (the log, not the
    task payload, is the authority) and their previous attempt's error code, which the claim
    leaves untouched: the sender needs it to tell an ambiguous previous attempt, and reading
    it here saves a second transaction per chunk. A redelivered chunk wins nothing it already
    sent.
    """
    if not ids:
        return {}
    m = messages.c
    rows = conn.execute(
        update(messages)
        .where(and_(id_in(conn, m.id, ids), m.status == Status.QUEUED, m.valid_until > now))
        .values(
            status=Status.SENDING,
            status_at=now,
            attempts=m.attempts + 1,
            connection=connection,
        )
        .returning(m.id, m.valid_until, m.error_code, m.window_start, m.window_end)
    )
    return {r[0]: Claim(r[1], r[2], None if r[3] is None else (int(r[3]), int(r[4]))) for r in rows}


def expire_overdue(
    conn: Connection, ids: Sequence[str], now: float, waiting: Sequence[str] = (Status.QUEUED,)
) -> list[str]:
    """Waiting (by default queued) → expired for those of ``ids`` whose validity has passed;
    they are never sent. Creates their status webhooks.

    One whose last attempt may have reached the carrier (an ambiguous error code) is not
    "never sent": it goes back to ``sending``, where the reconciler asks the carrier about it
    as about any claim left by a lost worker (found → ``sent``; not found → expired on the
    next release; no look-up possible → ``failed``, ``send_state_unknown``). Returns the ids
    expired."""
    if not ids:
        return []
    m = messages.c
    overdue = and_(m.id.in_(list(ids)), m.status.in_(list(waiting)), m.valid_until <= now)
    unsure = [
        (r[0], r[1])
        for r in conn.execute(
            update(messages)
            .where(and_(overdue, m.error_code.in_(sorted(AMBIGUOUS_CODES))))
            .values(status=Status.SENDING, status_at=now)
            .returning(m.id, m.error_code)
        )
    ]
    add_events(
        conn,
        ((i, now, "validity_end_unverified", Status.SENDING, {"code": c}) for i, c in unsure),
    )
    rows = conn.execute(
        update(messages)
        .where(overdue)
        .values(
            status=Status.EXPIRED,
            status_at=now,
            final_at=now,
            error_code="validity_expired",
            error_description="validity passed before sending",
            error_permanent=True,
        )
        .returning(m.id)
    )
    expired = [r[0] for r in rows]
    add_events(conn, ((i, now, "not_sent", Status.EXPIRED, None) for i in expired))
    create_status_webhooks(conn, expired, now)
    return expired


def record_sent(conn: Connection, sent: Sequence[Sent], now: float) -> int:
    """sending → sent with the carrier's id; returns the number of rows moved.

    Accounts that asked for webhooks on ``sent`` get them, created in this transaction.
    """
    if not sent:
        return 0
    moved = _record_sent(conn, sent, now)
    if _any_account_wants_sent(conn):
        create_status_webhooks(conn, [s.id for s in sent], now)
    return moved


_on_sent_ttl_s = 10.0
_on_sent_cache: tuple[float, bool] = (0.0, False)


def set_on_sent_check(seconds: float) -> None:
    """How long this process trusts its answer to "does any account want `sent` webhooks"."""
    global _on_sent_ttl_s
    _on_sent_ttl_s = seconds


def _any_account_wants_sent(conn: Connection) -> bool:
    """Whether any account has ``webhook_on_sent`` (cached briefly: the hot path skips the
    webhook look-up entirely while no account uses it)."""
    global _on_sent_cache
    checked_at, wanted = _on_sent_cache
    if time.monotonic() - checked_at > _on_sent_ttl_s:
        wanted = (
            conn.execute(
                select(accounts.c.id).where(accounts.c.webhook_on_sent.is_(True)).limit(1)
            ).first()
            is not None
        )
        _on_sent_cache = (time.monotonic(), wanted)
    return wanted


def _record_sent(conn: Connection, sent: Sequence[Sent], now: float) -> int:
    if conn.dialect.name == "postgresql":
        # One statement for the whole batch: far cheaper than executemany on the hot path.
        result = conn.execute(
            text(
                "UPDATE messages AS m SET status = 'sent', status_at = :now, sent_at = :now, "
                "carrier_message_id = v.cid, http_status = v.hs, latency_ms = v.lat "
                "FROM unnest(CAST(:ids AS text[]), CAST(:cids AS text[]), "
                "CAST(:hss AS smallint[]), CAST(:lats AS float8[])) AS v(id, cid, hs, lat) "
                "WHERE m.id = v.id AND m.status = 'sending'"
            ),
            {
                "now": now,
                "ids": [s.id for s in sent],
                "cids": [s.carrier_message_id for s in sent],
                "hss": [s.http_status for s in sent],
                "lats": [s.latency_ms for s in sent],
            },
        )
        return int(result.rowcount)
    m = messages.c
    result = conn.execute(
        update(messages)
        .where(and_(m.id == bindparam("b_id"), m.status == Status.SENDING))
        .values(
            status=Status.SENT,
            status_at=now,
            sent_at=now,
            carrier_message_id=bindparam("b_cid"),
            http_status=bindparam("b_hs"),
            latency_ms=bindparam("b_lat"),
        ),
        [
            {
                "b_id": s.id,
                "b_cid": s.carrier_message_id,
                "b_hs": s.http_status,
                "b_lat": s.latency_ms,
            }
            for s in sent
        ],
    )
    return int(result.rowcount)


def record_failures(
    conn: Connection,
    failures: Sequence[Failure],
    now: float,
    expected: str = Status.SENDING,
    connection: str | None = None,
) -> int:
    """Move failed attempts to their next state, with an ``attempt`` event each (and a
    ``routed`` event naming ``connection``, the carrier connection the attempt used)."""
    if not failures:
        return 0
    m = messages.c
    moved = 0
    for f in failures:
        final = f.status not in (Status.RETRYING,)
        values: dict[str, Any] = {
            "status": f.status,
            "status_at": now,
            "http_status": f.http_status,
            "latency_ms": f.latency_ms,
            "error_code": f.code,
            "error_description": f.description[:255],
            "error_permanent": f.permanent,
            "next_attempt_at": f.next_attempt_at,
        }
        if final:
            values["final_at"] = now
        result = conn.execute(
            update(messages).where(and_(m.id == f.id, m.status == expected)).values(**values)
        )
        moved += int(result.rowcount)
    add_events(
        conn,
        (
            (
                f.id,
                now,
                "attempt_failed" if expected == Status.SENDING else "not_sent",
                f.status,
                {
                    "code": f.code,
                    "description": f.description[:255],
                    "permanent": f.permanent,
                    "http_status": f.http_status,
                    "latency_ms": f.latency_ms,
                    "next_attempt_at": f.next_attempt_at,
                },
            )
            for f in failures
        ),
    )
    if connection is not None:
        add_events(
            conn, ((f.id, now, "routed", None, {"connection": connection}) for f in failures)
        )
    # The customer hears of every final status: the webhook is created in this transaction.
    create_status_webhooks(conn, [f.id for f in failures if f.status != Status.RETRYING], now)
    return moved


def defer(conn: Connection, ids: Sequence[str], until: float, now: float, reason: str) -> int:
    """queued → retrying without spending an attempt (rate-limit waits are not failures)."""
    if not ids:
        return 0
    m = messages.c
    result = conn.execute(
        update(messages)
        .where(and_(m.id.in_(list(ids)), m.status == Status.QUEUED))
        .values(status=Status.RETRYING, status_at=now, next_attempt_at=until)
    )
    add_events(conn, ((i, now, "deferred", Status.RETRYING, {"reason": reason}) for i in ids))
    return int(result.rowcount)


def release(conn: Connection, ids: Sequence[str], until: float, now: float, reason: str) -> int:
    """sending → retrying for claims never sent (rate limit saturated); the attempt is refunded."""
    if not ids:
        return 0
    m = messages.c
    result = conn.execute(
        update(messages)
        .where(and_(m.id.in_(list(ids)), m.status == Status.SENDING))
        .values(
            status=Status.RETRYING, status_at=now, next_attempt_at=until, attempts=m.attempts - 1
        )
    )
    add_events(conn, ((i, now, "deferred", Status.RETRYING, {"reason": reason}) for i in ids))
    return int(result.rowcount)


def add_events(
    conn: Connection, events: Iterable[tuple[str, float, str, str | None, dict[str, Any] | None]]
) -> None:
    """Append timeline events ``(message_id, at, kind, status, detail)``."""
    rows = [
        {"message_id": mid, "at": at, "kind": kind, "status": status, "detail": detail}
        for mid, at, kind, status, detail in events
    ]
    if rows:
        conn.execute(insert(message_events), rows)


# -- reads the sender needs, and the reconciler's transitions -----------------------------------
def last_connections(conn: Connection, ids: Sequence[str]) -> dict[str, str]:
    """The connection each of ``ids`` last used (messages that never had one are left out)."""
    m = messages.c
    rows = conn.execute(
        select(m.id, m.connection).where(m.id.in_(list(ids)), m.connection.is_not(None))
    )
    return {r[0]: r[1] for r in rows}


def account_names(conn: Connection, ids: Sequence[int]) -> dict[int, str]:
    """Account names by id (routes may filter by account)."""
    rows = conn.execute(select(accounts.c.id, accounts.c.name).where(accounts.c.id.in_(list(ids))))
    return {int(r[0]): str(r[1]) for r in rows}


def still_sending(conn: Connection, ids: Sequence[str], older_than: float) -> list[str]:
    """Those of ``ids`` claimed before ``older_than`` and still ``sending`` (stale claims)."""
    m = messages.c
    rows = conn.execute(
        select(m.id).where(
            and_(m.id.in_(list(ids)), m.status == Status.SENDING, m.status_at < older_than)
        )
    )
    return [r[0] for r in rows]


def settle_reconciled(
    conn: Connection, sent: Sequence[Sent], missing: Sequence[str], now: float
) -> tuple[int, int]:
    """The carrier's answer on stale claims: those it has → ``sent``; those it does not →
    ``retrying``, due now (the attempt stays counted). Rows moved, for each."""
    n_sent = record_sent(conn, sent, now)
    add_events(conn, ((s.id, now, "reconciled", Status.SENT, {"carrier": "found"}) for s in sent))
    if not missing:
        return n_sent, 0
    m = messages.c
    # The carrier said it has none: whatever the last attempt's code was, it is settled now
    # (no look-up before the retry; a pause, a cancel or the expiry may move it).
    result = conn.execute(
        update(messages)
        .where(and_(m.id.in_(list(missing)), m.status == Status.SENDING))
        .values(
            status=Status.RETRYING,
            status_at=now,
            next_attempt_at=now,
            error_code=NOT_AT_CARRIER,
            error_description="the carrier has no record of the last attempt",
            error_permanent=False,
        )
    )
    add_events(
        conn, ((i, now, "reconciled", Status.RETRYING, {"carrier": "not_found"}) for i in missing)
    )
    return n_sent, int(result.rowcount)


T = TypeVar("T")


class SendProgress:
    """The send path's transitions on an engine, each in one short transaction; database
    errors leave as :class:`~dispatcher.store.db.StoreUnavailable`."""

    def __init__(self, engine: Engine, on_sent_check_s: float | None = None) -> None:
        self.engine = engine
        if on_sent_check_s is not None:
            set_on_sent_check(on_sent_check_s)
        # One statement, atomic on its own: without BEGIN and COMMIT it is one round trip
        # instead of three. On a loaded machine each round trip waits for both processes to
        # be scheduled; the claim sits on every OTP's path to the carrier.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    def _tx(self, fn: Callable[..., T], *args: Any) -> T:
        with transaction(self.engine) as conn:
            return fn(conn, *args)

    def claim(self, ids: Sequence[str], connection: str, now: float) -> dict[str, Claim]:
        """See :func:`claim` (one statement, autocommitted)."""
        with translated(), self._autocommit.connect() as conn:
            return claim(conn, ids, connection, now)

    def expire_overdue(self, ids: Sequence[str], now: float) -> list[str]:
        """See :func:`expire_overdue`."""
        return self._tx(expire_overdue, ids, now)

    def record_sent(self, sent: Sequence[Sent], now: float) -> int:
        """See :func:`record_sent`."""
        return self._tx(record_sent, sent, now)

    def record_failures(
        self,
        failures: Sequence[Failure],
        now: float,
        expected: str = Status.SENDING,
        connection: str | None = None,
    ) -> int:
        """See :func:`record_failures`."""
        return self._tx(record_failures, failures, now, expected, connection)

    def defer(self, ids: Sequence[str], until: float, now: float, reason: str) -> int:
        """See :func:`defer`."""
        return self._tx(defer, ids, until, now, reason)

    def release(self, ids: Sequence[str], until: float, now: float, reason: str) -> int:
        """See :func:`release`."""
        return self._tx(release, ids, until, now, reason)

    def last_connections(self, ids: Sequence[str]) -> dict[str, str]:
        """See :func:`last_connections`."""
        return self._tx(last_connections, ids)

    def account_names(self, ids: Sequence[int]) -> dict[int, str]:
        """See :func:`account_names`."""
        return self._tx(account_names, ids)

    def still_sending(self, ids: Sequence[str], older_than: float) -> list[str]:
        """See :func:`still_sending`."""
        return self._tx(still_sending, ids, older_than)

    def settle_reconciled(
        self, sent: Sequence[Sent], missing: Sequence[str], now: float
    ) -> tuple[int, int]:
        """See :func:`settle_reconciled`."""
        return self._tx(settle_reconciled, sent, missing, now)
