"""The webhooks lane's store: :mod:`dispatcher.store.webhook_attempts` run in one short
transaction per call; database errors become :class:`~dispatcher.store.db.StoreUnavailable`
(the task retries it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import structlog
from sqlalchemy import Engine

from dispatcher.store.db import StoreUnavailable, transaction, transient
from dispatcher.store.dead_letters import describe
from dispatcher.store.webhook_attempts import claim, record
from dispatcher.store.webhooks import set_aside
from dispatcher.webhooks.records import Claimed, Outcome
from workers.metrics import record_inbox_failures

T = TypeVar("T")
log = structlog.get_logger(component="webhooks")


class SqlDeliveryStore:
    """:func:`~dispatcher.store.webhook_attempts.claim` and
    :func:`~dispatcher.store.webhook_attempts.record` on an engine, one transaction each.

    A slice of results that cannot be recorded because of one of them (not because the
    database is away) is recorded one at a time; the one that fails alone is counted against
    its delivery and set aside at ``max_failures`` (:func:`set_aside`), so it never makes the
    others of its slice be sent again.
    """

    def __init__(self, engine: Engine, suspend_after_s: float, max_failures: int = 5) -> None:
        self.engine = engine
        self.suspend_after_s = suspend_after_s
        self.max_failures = max_failures

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        with transaction(self.engine) as conn:
            return fn(conn, *args)

    def claim(self, ids: Sequence[str], now: float, lease_s: float) -> list[Claimed]:
        """See :func:`dispatcher.store.webhook_attempts.claim`."""
        return self._call(claim, ids, now, lease_s)

    def record(self, outcomes: Sequence[Outcome], now: float) -> int:
        """See :func:`dispatcher.store.webhook_attempts.record`."""
        try:
            return self._call(record, outcomes, now, self.suspend_after_s)
        except StoreUnavailable as exc:
            if transient(exc) or not outcomes:
                raise
            log.warning("webhooks.record_failed", deliveries=len(outcomes), error=describe(exc))
        moved = failed = dead = 0
        for o in outcomes:
            try:
                moved += self._call(record, [o], now, self.suspend_after_s)
            except StoreUnavailable as exc:
                if transient(exc):
                    raise
                error = describe(exc)
                failed += 1
                if self._call(set_aside, o.claimed.id, error, now, self.max_failures):
                    dead += 1
                log.warning("webhooks.delivery_set_aside", delivery=o.claimed.id, error=error)
        record_inbox_failures("webhook", failed, dead)
        return moved
