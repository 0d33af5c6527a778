"""Writing clicks in batches, off the redirect path.

The redirect answers at once and hands the click to :class:`ClickRecorder`; a thread writes
what has gathered every ``interval_s`` (or sooner when ``batch`` clicks wait) in one
transaction, with the ``message.click`` webhooks (:func:`dispatcher.store.links.write_clicks`).
One transaction per batch instead of one per click is what lets one process redirect
thousands of clicks a second (docs/short-links.md). A failed write keeps the clicks and tries
again; beyond ``max_pending`` the oldest are dropped and counted. A process that is killed
loses the clicks of its last interval at most; one that is stopped writes them first.

The recorder remembers (bounded, oldest out) the messages whose first-click webhook is
committed, so that a first-click account's repeat clicks skip the message look-up and the
insert the unique key would refuse: a link is often clicked several times.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable

import structlog
from prometheus_client import Counter
from sqlalchemy import Engine

from dispatcher.store.db import StoreUnavailable, transaction
from dispatcher.store.links import Click, write_clicks

log = structlog.get_logger(component="links")

CLICKS_WRITTEN = Counter(
    "smsdispatch_link_clicks_written",
    "Clicks on short links written to the log, by whether they count (previews do not).",
    ["counted"],
)
CLICKS_DROPPED = Counter(
    "smsdispatch_link_clicks_dropped",
    "Clicks dropped because the log could not be written for too long.",
)
CLICK_WEBHOOKS = Counter(
    "smsdispatch_link_click_webhooks",
    "message.click webhook deliveries created.",
)


class ClickRecorder:
    """Gathers clicks and writes them in batches from its own thread."""

    def __init__(
        self,
        engine: Engine,
        interval_s: float = 0.1,
        batch: int = 2000,
        max_pending: int = 200_000,
        remembered_firsts: int = 200_000,
    ) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self.batch = batch
        self._pending: deque[Click] = deque(maxlen=max_pending)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._firsts = _Recent(remembered_firsts)

    def add(self, click: Click) -> None:
        """Queue ``click`` (never blocks; called on the event loop)."""
        if len(self._pending) == self._pending.maxlen:
            CLICKS_DROPPED.inc()
        self._pending.append(click)
        if len(self._pending) >= self.batch:
            self._wake.set()

    def start(self) -> None:
        """Start the writer thread."""
        self._thread = threading.Thread(target=self._run, name="click-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Write what is pending and stop the thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def flush(self) -> int:
        """Write everything pending now (from any thread); returns how many were written."""
        written = 0
        while self._pending:
            take = [self._pending.popleft() for _ in range(min(self.batch, len(self._pending)))]
            try:
                with transaction(self.engine) as conn:
                    done = write_clicks(conn, take, time.time(), self._firsts)
            except StoreUnavailable as exc:
                self._pending.extendleft(reversed(take))
                log.warning("click write failed, will retry", error=str(exc))
                return written
            self._firsts.update(done.firsts)  # committed: only now may later batches skip them
            counted = sum(1 for c in take if not c.bot)
            CLICKS_WRITTEN.labels("true").inc(counted)
            CLICKS_WRITTEN.labels("false").inc(len(take) - counted)
            CLICK_WEBHOOKS.inc(done.webhooks)
            written += len(take)
        return written

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            self.flush()
        self.flush()


class _Recent:
    """A set of at most ``size`` strings; adding beyond it forgets the oldest."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def update(self, items: Iterable[str]) -> None:
        """Remember ``items``."""
        for item in items:
            self._items[item] = None
        while len(self._items) > self.size:
            self._items.popitem(last=False)
