"""The sender's :class:`~workers.sending.sender.ProgressStore` on a SQLAlchemy engine."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from dispatcher.contract import Status
from dispatcher.store import progress
from dispatcher.store.db import StoreUnavailable
from dispatcher.store.progress import Claim, Failure, Sent

T = TypeVar("T")


class SqlProgress:
    """Each call is one short transaction; database errors become :class:`StoreUnavailable`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # One statement, atomic on its own: without BEGIN and COMMIT it is one round trip
        # instead of three. On a loaded machine each round trip waits for both processes to
        # be scheduled; the claim sits on every OTP's path to the carrier.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    def _call(self, fn: Callable[..., T], *args: Any, single: bool = False) -> T:
        """``fn`` in one transaction; ``single``: ``fn`` runs one statement, autocommitted."""
        try:
            if single:
                with self._autocommit.connect() as conn:
                    return fn(conn, *args)
            with self.engine.begin() as conn:
                return fn(conn, *args)
        except SQLAlchemyError as exc:
            raise StoreUnavailable(exc.__class__.__name__) from exc

    def claim(self, ids: Sequence[str], connection: str, now: float) -> dict[str, Claim]:
        """See :func:`dispatcher.store.progress.claim` (one statement, autocommitted)."""
        return self._call(progress.claim, ids, connection, now, single=True)

    def expire_overdue(self, ids: Sequence[str], now: float) -> list[str]:
        """See :func:`dispatcher.store.progress.expire_overdue`."""
        return self._call(progress.expire_overdue, ids, now)

    def record_sent(self, sent: Sequence[Sent], now: float) -> int:
        """See :func:`dispatcher.store.progress.record_sent`."""
        return self._call(progress.record_sent, sent, now)

    def record_failures(
        self, failures: Sequence[Failure], now: float, expected: str = Status.SENDING
    ) -> int:
        """See :func:`dispatcher.store.progress.record_failures`."""
        return self._call(progress.record_failures, failures, now, expected)

    def defer(self, ids: Sequence[str], until: float, now: float, reason: str) -> int:
        """See :func:`dispatcher.store.progress.defer`."""
        return self._call(progress.defer, ids, until, now, reason)

    def release(self, ids: Sequence[str], until: float, now: float, reason: str) -> int:
        """See :func:`dispatcher.store.progress.release`."""
        return self._call(progress.release, ids, until, now, reason)

    def run(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` in one transaction (for the reconciler's multi-step work)."""
        return self._call(fn)
