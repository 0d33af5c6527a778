"""Group commit: many concurrent requests, one transaction, then one publish per batch.

The API's request handlers hand validated submissions to a single writer thread. The thread
takes everything waiting (no artificial delay: under load, batches grow by themselves while the
previous transaction commits), writes it in one transaction, publishes the resulting batches,
and wakes the handlers. The library producer calls :meth:`SubmissionWriter.write` directly.
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
from sqlalchemy.exc import SQLAlchemyError

from dispatcher.broker import Broker
from dispatcher.store.db import StoreUnavailable
from dispatcher.store.messages import mark_enqueued, write_submissions
from dispatcher.store.records import NewSubmission, StoredSubmission

log = structlog.get_logger(component="writer")


@dataclass
class _Pending:
    sub: NewSubmission
    future: asyncio.Future[StoredSubmission]
    loop: asyncio.AbstractEventLoop


class SubmissionWriter:
    """Stores submissions durably, then enqueues them."""

    def __init__(
        self,
        engine: Engine,
        broker: Broker,
        chunk_sizes: dict[str, int],
        max_rows: int = 5000,
    ) -> None:
        self.engine = engine
        self.broker = broker
        self.chunk_sizes = chunk_sizes
        self.max_rows = max_rows
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    # -- synchronous path (library, CLI, scheduler-free callers) ------------------------------
    def write(self, subs: Sequence[NewSubmission]) -> list[StoredSubmission]:
        """Commit ``subs`` in one transaction, then publish; raises :class:`StoreUnavailable`."""
        try:
            with self.engine.begin() as conn:
                results, batches = write_submissions(conn, subs, self.chunk_sizes)
        except SQLAlchemyError as exc:
            raise StoreUnavailable(type(exc).__name__) from exc
        if batches:
            done, error = self.broker.publish(batches)
            if error is not None:
                # Stored, not yet enqueued: the scheduler's outbox sweep will publish the rest.
                log.warning("publish.deferred", batches=len(batches) - len(done), error=str(error))
            if done:
                try:
                    with self.engine.begin() as conn:
                        mark_enqueued(conn, done, time.time())
                except SQLAlchemyError as exc:  # harmless: republished later, claims dedupe
                    log.warning("mark_enqueued.failed", error=type(exc).__name__)
        return results

    # -- asynchronous path (API) ---------------------------------------------------------------
    def start(self) -> None:
        """Start the writer thread."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop, name="submission-writer", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Finish what is queued, then stop the thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None

    async def submit(self, sub: NewSubmission) -> StoredSubmission:
        """Store and enqueue ``sub`` together with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[StoredSubmission] = loop.create_future()
        self._queue.put(_Pending(sub, fut, loop))
        return await fut

    def _loop(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            group = [first]
            rows = len(first.sub.messages)
            while rows < self.max_rows:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                group.append(item)
                rows += len(item.sub.messages)
            self._write_group(group)

    def _write_group(self, group: list[_Pending]) -> None:
        try:
            results = self.write([p.sub for p in group])
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
