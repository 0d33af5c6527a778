"""Fair admission into the bulk lane: deficit round robin over accounts with work waiting.

With ``SMSDISPATCH_BULK_FAIRNESS`` on (the default), bulk batches are not published when they
are accepted: they wait in the log (``dispatch_batches`` rows with ``account_id`` set) and the
scheduler's admitter publishes them into the bulk queue, keeping that queue shallow (about
``SMSDISPATCH_FAIR_QUEUE_S`` seconds of work at the rate the workers drain it). Whenever there
is room, :class:`DeficitRoundRobin` picks whose batch goes next: each account with work waiting
earns ``chunk_size x weight`` messages of credit per turn and spends a batch's size to send it,
so over time accounts get the lane in proportion to their weights, whatever each has queued;
an account alone gets all of it (work-conserving), and the per-connection rate limits still
apply below (the workers take tokens as before). The priority lane never waits here.

Why here: one admitter, under the scheduler's Redis lease, decides for every API process and
host (their writers only insert rows), so more hosts or pools cannot break the order. Why it is
safe: a batch is published, then marked enqueued; a crash in between publishes it again, and
the workers' claims (``queued → sending`` compare-and-set) make the second task a no-op. A
lost task is found by the orphan audit as before. The deficits live in the leader's memory: a
new leader starts them at zero, which costs at most one turn of fairness.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
import structlog
from sqlalchemy import Engine

from dispatcher.contract import Lane
from dispatcher.intake.broker import Broker, BrokerUnavailable
from dispatcher.store import admission, outbox
from dispatcher.store.db import StoreUnavailable, reading
from dispatcher.store.records import Batch

log = structlog.get_logger(component="admission")


class DeficitRoundRobin:
    """Deficit round robin (Shreedhar and Varghese, 1995) over account ids; no I/O.

    Accounts are visited in a ring. On each visit an account earns ``quantum x weight`` and
    sends batches while its credit covers the next one; an account with nothing left leaves
    the ring and loses its credit (credit is not saved up while idle). The position and the
    credits persist across calls, so a call that fills the queue part-way resumes where the
    previous one stopped.
    """

    def __init__(self, quantum: int) -> None:
        self.quantum = max(1, quantum)
        self.ring: list[int] = []
        self.weights: dict[int, int] = {}
        self.deficit: dict[int, float] = {}
        self.pos = 0
        self._credited = False  # whether the account at ``pos`` got this visit's quantum

    def sync(self, weights: dict[int, int]) -> None:
        """Accounts with work waiting now (id → weight): newcomers join at the ring's end."""
        for account in [a for a in self.ring if a not in weights]:
            self._remove(account)
        for account, weight in weights.items():
            if account not in self.deficit:
                self.ring.append(account)
                self.deficit[account] = 0.0
            self.weights[account] = max(1, weight)

    def _remove(self, account: int) -> None:
        i = self.ring.index(account)
        self.ring.pop(i)
        self.deficit.pop(account, None)
        self.weights.pop(account, None)
        if i < self.pos:
            self.pos -= 1
        elif i == self.pos:
            self._credited = False
        if self.pos >= len(self.ring):
            self.pos = 0

    def _advance(self) -> None:
        self.pos = (self.pos + 1) % len(self.ring)
        self._credited = False

    def take(self, capacity: int, head: Callable[[int, int], int | None]) -> list[int]:
        """Up to ``capacity`` picks, one account id per batch, in the order to publish them.

        ``head(account, n)``: the size of the account's batch after the ``n`` already picked
        from it in this call, ``None`` when it has no more. Every visit ends in a pick, a
        removal or a move on, and credit grows by ``quantum`` or more per visit, so this ends
        (batches are never larger than ``quantum``: the chunk size).
        """
        picks: list[int] = []
        taken: dict[int, int] = {}
        while len(picks) < capacity and self.ring:
            account = self.ring[self.pos]
            if not self._credited:
                self.deficit[account] += self.quantum * self.weights[account]
                self._credited = True
            size = head(account, taken.get(account, 0))
            if size is None:
                self._remove(account)
            elif self.deficit[account] >= size:
                self.deficit[account] -= size
                taken[account] = taken.get(account, 0) + 1
                picks.append(account)
            else:
                self._advance()
        return picks


@dataclass
class QueueTarget:
    """How many tasks to keep in the bulk queue: ``queue_s`` seconds at the measured drain.

    The drain (tasks per second the workers take) is measured between rounds. When the queue
    ran dry while work was waiting, the drain was not observed, only bounded below, so the
    estimate doubles instead (the queue must not be the bottleneck: work-conserving).
    """

    queue_s: float
    min_tasks: int
    max_tasks: int = 2000
    rate: float = 0.0  # tasks per second, smoothed
    _last: tuple[float, int] | None = field(default=None, repr=False)

    def tasks(self) -> int:
        """The depth to fill the queue up to."""
        return max(self.min_tasks, min(self.max_tasks, math.ceil(self.rate * self.queue_s)))

    def observe(self, now: float, length: int, admitted: int, held_back: bool) -> None:
        """The queue holds ``length`` now; ``admitted`` tasks were added since the last call;
        ``held_back``: work was left waiting last time because the queue was full."""
        last, self._last = self._last, (now, length)
        if last is None or now <= last[0]:
            return
        drained = max(0, last[1] + admitted - length)
        sample = drained / (now - last[0])
        if length == 0 and held_back:
            self.rate = max(sample, self.rate * 2, self.min_tasks / self.queue_s)
        elif last[1] > 0 or length > 0:
            self.rate = 0.8 * self.rate + 0.2 * sample


class Admitter:
    """Publishes waiting bulk batches fairly; :meth:`round` once, :meth:`run` in a thread."""

    def __init__(
        self,
        engine: Engine,
        broker: Broker,
        publish: Callable[[list[Batch]], int],
        quantum: int,
        queue_s: float,
        min_tasks: int,
        interval_s: float,
        idle_s: float | None = None,
    ) -> None:
        self.engine = engine
        self.broker = broker
        self.publish = publish  # publishes and marks enqueued (the scheduler's, one of each)
        self.drr = DeficitRoundRobin(quantum)
        self.target = QueueTarget(queue_s, min_tasks)
        self.interval_s = interval_s
        # Nothing waited at the last look: look less often (a first bulk batch after a quiet
        # spell waits up to this long; the log is not asked 1/interval_s times a second).
        self.idle_s = max(interval_s, idle_s if idle_s is not None else interval_s)
        self._idle = False
        self._admitted = 0
        self._held_back = False

    def round(self, now: float | None = None) -> int:
        """Fill the bulk queue up to its target depth; the messages admitted."""
        now = time.time() if now is None else now
        length = self.broker.queue_lengths().get(str(Lane.BULK), 0)
        self.target.observe(now, length, self._admitted, self._held_back)
        self._admitted = 0
        room = self.target.tasks() - length
        if room <= 0:
            self._held_back = True
            return 0
        with reading(self.engine) as conn:
            waiting = admission.waiting(conn)
            self._idle = not waiting
            self.drr.sync({a: w.weight for a, w in waiting.items()})
            fetched: dict[int, list[tuple[str, int]]] = {}

            def head(account: int, n: int) -> int | None:
                if account not in fetched:
                    fetched[account] = admission.next_batches(conn, account, room)
                return fetched[account][n][1] if n < len(fetched[account]) else None

            ids: list[str] = []
            used: dict[int, int] = {}
            for account in self.drr.take(room, head):
                i = used.get(account, 0)
                ids.append(fetched[account][i][0])
                used[account] = i + 1
            batches = outbox.load_batches(conn, ids)
        self._held_back = sum(w.batches for w in waiting.values()) > len(ids)
        self._admitted = len(ids)
        return self.publish(batches)

    def run(self, stop: threading.Event, leading: Callable[[], bool]) -> None:
        """Admit every ``interval_s`` while this scheduler holds the lease (``leading``); log
        what was admitted every ``STATS_EVERY_S`` when anything was."""
        stats = _Stats()
        while not stop.wait(self.idle_s if self._idle else self.interval_s):
            if not leading():
                continue
            started = time.perf_counter()
            try:
                stats.messages += self.round()
            except (StoreUnavailable, BrokerUnavailable, redis.RedisError) as exc:
                log.warning("admission.failed", error=type(exc).__name__)
                continue
            except Exception:  # a dead admitter thread would stop the bulk lane for good
                log.exception("admission.crashed")
                continue
            stats.rounds += 1
            stats.busy_s += time.perf_counter() - started
            if stats.due():
                if stats.messages:
                    log.info(
                        "admission.stats",
                        messages=stats.messages,
                        rounds=stats.rounds,
                        round_ms=round(1000 * stats.busy_s / stats.rounds, 1),
                        target_tasks=self.target.tasks(),
                        accounts=len(self.drr.ring),
                    )
                stats = _Stats()


STATS_EVERY_S = 10.0


@dataclass
class _Stats:
    """What the admitter did since ``since`` (for its periodic log line)."""

    messages: int = 0
    rounds: int = 0
    busy_s: float = 0.0
    since: float = field(default_factory=time.monotonic)

    def due(self) -> bool:
        return time.monotonic() - self.since >= STATS_EVERY_S
