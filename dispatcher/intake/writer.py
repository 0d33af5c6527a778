"""Group commit: many concurrent requests, one transaction, then one publish per batch.

The API's request handlers hand validated submissions to a writer thread. The thread takes
everything waiting (no artificial delay: under load, groups grow by themselves while the previous
transaction commits), writes it in one transaction, publishes the resulting batches, and wakes
the handlers. The library producer calls :meth:`SubmissionWriter.write` directly.

Two threads, split by size, not by turn: small submissions (an OTP, a single-recipient send)
have their own thread, so they never wait behind a 10,000-recipient ``COPY`` of a campaign, and
they all join one group while it commits. Two threads taking turns on the same queue would
split small submissions into two half-size groups instead: twice the commits, more CPU per
request and a longer tail (benchmark E, docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from sqlalchemy import Engine

from dispatcher.intake.broker import Broker
from dispatcher.store.balances import BalanceRaced
from dispatcher.store.db import StoreUnavailable, transaction
from dispatcher.store.messages import COPY_THRESHOLD, mark_enqueued, write_submissions
from dispatcher.store.prices import PriceBookCache
from dispatcher.store.records import Batch, NewSubmission, StoredSubmission

log = structlog.get_logger(component="writer")


@dataclass
class _Pending:
    sub: NewSubmission
    future: asyncio.Future[StoredSubmission]
    loop: asyncio.AbstractEventLoop


class SubmissionWriter:
    """Stores submissions durably, then enqueues them.

    Marking published batches as enqueued is folded into the next group's transaction (or done
    after ``mark_idle_s`` of quiet), so a group costs one transaction, not two. An unmarked
    batch is only ever published again, which claims make harmless.
    """

    def __init__(
        self,
        engine: Engine,
        broker: Broker,
        chunk_sizes: dict[str, int],
        max_rows: int = 5000,
        large_from: int = COPY_THRESHOLD,
        mark_idle_s: float = 0.2,
        prices: PriceBookCache | None = None,
        fair: bool = False,
    ) -> None:
        self.engine = engine
        # Fair bulk lane: bulk batches are left in the outbox for the scheduler's admitter
        # (dispatcher/scheduler/admission.py) instead of being published here.
        self.fair = fair
        self.prices = prices  # billing on: charge in the group's transaction (docs/prices.md)
        self.broker = broker
        self.chunk_sizes = chunk_sizes
        self.max_rows = max_rows
        self.large_from = large_from  # submissions with this many messages use the large thread
        self.mark_idle_s = mark_idle_s
        self._small: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._large: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._marks: list[str] = []
        self._marks_lock = threading.Lock()

    # -- synchronous path (library, CLI) -------------------------------------------------------
    def write(self, subs: Sequence[NewSubmission]) -> list[StoredSubmission]:
        """Commit ``subs`` in one transaction, then publish; raises :class:`StoreUnavailable`."""
        results, done = self._commit_and_publish(subs, carry_marks=False)
        self._mark_now(done)
        return results

    def _commit_and_publish(
        self, subs: Sequence[NewSubmission], carry_marks: bool
    ) -> tuple[list[StoredSubmission], list[str]]:
        marks = self._take_marks() if carry_marks else []
        # Opt-outs and billing drop recipients in place: a failed transaction puts them back,
        # so a retry reports them again instead of losing them.
        originals = [list(s.messages) for s in subs]

        def put_back() -> None:
            for sub, kept in zip(subs, originals, strict=True):
                sub.messages = kept

        def write(optimistic: bool) -> tuple[list[StoredSubmission], list[Batch]]:
            with transaction(self.engine) as conn:
                book = None if self.prices is None else self.prices.get(conn)
                return write_submissions(
                    conn,
                    subs,
                    self.chunk_sizes,
                    enqueued=(marks, time.time()),
                    book=book,
                    fair=self.fair,
                    optimistic=optimistic,
                )

        try:
            try:
                # Balances read unlocked, charged last: API processes charging one account do
                # not take turns over whole transactions (dispatcher/store/balances.py).
                results, batches = write(optimistic=True)
            except BalanceRaced as exc:
                log.info("billing.balance_raced", accounts=len(exc.args[0]))
                put_back()
                results, batches = write(optimistic=False)
        except StoreUnavailable:
            self._keep_marks(marks)
            put_back()
            raise
        done: list[str] = []
        batches = [b for b in batches if b.account is None]
        if batches:
            done, error = self.broker.publish(batches)
            if error is not None:
                # Stored, not yet enqueued: the scheduler's outbox sweep will publish the rest.
                log.warning("publish.deferred", batches=len(batches) - len(done), error=str(error))
        return results, done

    def _mark_now(self, batch_ids: list[str]) -> None:
        if not batch_ids:
            return
        try:
            with transaction(self.engine) as conn:
                mark_enqueued(conn, batch_ids, time.time())
        except StoreUnavailable as exc:  # harmless: republished later, claims dedupe
            log.warning("mark_enqueued.failed", error=str(exc))

    def _take_marks(self) -> list[str]:
        with self._marks_lock:
            marks, self._marks = self._marks, []
        return marks

    def _keep_marks(self, marks: list[str]) -> None:
        if marks:
            with self._marks_lock:
                self._marks.extend(marks)

    # -- asynchronous path (API) ---------------------------------------------------------------
    def start(self) -> None:
        """Start the writer threads: one for small submissions, one for large ones."""
        if self._threads:
            return
        for name, q in (("small", self._small), ("large", self._large)):
            t = threading.Thread(
                target=self._loop, args=(q,), name=f"submission-writer-{name}", daemon=True
            )
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        """Finish what is queued, record pending marks, then stop the threads."""
        if self._threads:
            self._small.put(None)
            self._large.put(None)
        for t in self._threads:
            t.join(timeout=30)
        self._threads = []
        self._mark_now(self._take_marks())

    async def submit(self, sub: NewSubmission) -> StoredSubmission:
        """Store and enqueue ``sub`` together with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[StoredSubmission] = loop.create_future()
        large = len(sub.messages) >= self.large_from
        (self._large if large else self._small).put(_Pending(sub, fut, loop))
        return await fut

    def _loop(self, pending: queue.SimpleQueue[_Pending | None]) -> None:
        while True:
            try:
                first = pending.get(timeout=self.mark_idle_s)
            except queue.Empty:
                self._mark_now(self._take_marks())  # quiet: record marks on their own
                continue
            if first is None:
                return
            group = [first]
            rows = len(first.sub.messages)
            stop = False
            while rows < self.max_rows:
                try:
                    item = pending.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                group.append(item)
                rows += len(item.sub.messages)
            self._write_group(group)
            if stop:
                return

    def _write_group(self, group: list[_Pending]) -> None:
        try:
            results, done = self._commit_and_publish([p.sub for p in group], carry_marks=True)
        except StoreUnavailable as exc:
            if len(group) > 1:
                # Isolate: one bad submission must not fail its neighbours.
                for p in group:
                    self._write_group([p])
                return
            _resolve(group[0], exc)
            return
        except Exception as exc:  # never leave a handler waiting forever
            log.exception("writer.failed")
            for p in group:
                _resolve(p, exc)
            return
        self._keep_marks(done)
        for p, r in zip(group, results, strict=True):
            _resolve(p, r)


def _resolve(p: _Pending, outcome: StoredSubmission | BaseException) -> None:
    def apply() -> None:
        if p.future.done():
            return
        if isinstance(outcome, BaseException):
            p.future.set_exception(outcome)
        else:
            p.future.set_result(outcome)

    p.loop.call_soon_threadsafe(apply)
