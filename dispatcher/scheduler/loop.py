"""The scheduler process: releases scheduled and retrying messages, and repairs crash windows.

Each tick (default every 250 ms):
- held messages (``scheduled``, ``retrying``) that are due are re-batched and published;
- batches committed but never published (crash or Redis outage between commit and publish) are
  published after ``outbox_stale_s``;
- charged messages that never reached a carrier are refunded (docs/prices.md);
- delivery reports the dlr lane parked (they came before their submit was recorded) are
  re-published when due;
- every 10 s: accounts whose balance fell below their low-balance level get one
  ``account.balance_low`` webhook per dip (docs/prices.md); claims older than
  ``sending_stale_s`` are sent to a worker for reconciliation
  with the carrier, and queued messages of a lane whose queue is empty are re-published
  (their task was lost, e.g. a Redis restart without persistence); and tasks of the dlr and
  webhooks lanes left unacknowledged by a killed worker for ``unacked_restore_s`` are put back
  on their queue (:mod:`dispatcher.scheduler.unacked`) instead of waiting for the visibility
  timeout;
- every 10 s: the dashboard's rollup (:mod:`dispatcher.store.rollups`): each hour closed for an
  hour is rolled up for every account (counts per status, lane, connection and failure reason,
  and a histogram of delivery times, of its messages past the carrier; those still on their
  way are listed as pending), for at most 0.5 s of hours per run (the first runs backfill 8
  days); at most every minute, pending messages past the carrier now (and counted ones a late
  report reopened) are counted as they are. Its lag is the exporter's
  ``smsdispatch_dashboard_rollup_behind_seconds``.
Only one scheduler acts at a time (a Redis lease), so several can run for availability.
With the fair bulk lane on (``SMSDISPATCH_BULK_FAIRNESS``), the leader also runs the admitter
in a thread of its own (:mod:`dispatcher.scheduler.admission`): bulk batches wait in the log and
are published from there, account by account; the repairs above leave those batches to it.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass

import redis
import structlog
from sqlalchemy import Engine

from dispatcher.config import Settings
from dispatcher.contract import (
    CALLBACK_TASKS,
    REDELIVERABLE_LANES,
    SEND_LANES,
    TASK_DELIVER_WEBHOOKS,
    Lane,
    queue_name,
)
from dispatcher.intake.broker import Broker, BrokerUnavailable
from dispatcher.scheduler import unacked
from dispatcher.scheduler.admission import Admitter
from dispatcher.store import callback_inbox, control_sweeps, outbox, reports, rollups, webhooks
from dispatcher.store.balances import low_balance_sweep
from dispatcher.store.db import StoreUnavailable, reading, transaction
from dispatcher.store.messages import mark_enqueued
from dispatcher.store.records import Batch
from dispatcher.store.refunds import refund_sweep

log = structlog.get_logger(component="scheduler")
LEADER_KEY = "smsd:scheduler:leader"
SLOW_EVERY_S = 10.0
AUDIT_START_S = 3600.0  # after a restart, batches of the last hour are audited again
# A campaign paused or cancelled this recently has all its waiting messages swept each tick:
# a writer's transaction that read its state before the change may commit a moment after.
CONTROL_SETTLE_S = 5.0


@dataclass
class TickReport:
    """What one tick did."""

    released: int = 0
    expired: int = 0
    republished: int = 0
    reconcile_requested: int = 0
    orphans: int = 0
    webhooks: int = 0
    webhooks_recovered: int = 0
    report_timeouts: int = 0
    callbacks: int = 0
    unacked_restored: int = 0
    refunded: int = 0
    controlled: int = 0  # messages paused or cancelled after their campaign's change
    cancelled: int = 0  # cancelled messages given their webhook
    rolled_hours: int = 0  # hours added to the dashboard's rollup
    rollup_settled: int = 0  # pending messages moved into the rollup's counts


class Scheduler:
    """One scheduler; call :meth:`tick` in a loop (:meth:`run`)."""

    def __init__(
        self, settings: Settings, engine: Engine, broker: Broker, redis_client: redis.Redis
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.broker = broker
        self.redis = redis_client
        self.identity = f"{socket.gethostname()}:{os.getpid()}"
        self.chunk_sizes: dict[str, int] = {Lane.BULK: settings.chunk_size, Lane.PRIORITY: 100}
        self._last_slow = 0.0
        # Orphan audit position per lane: (enqueued_at, batch id) of the last batch checked.
        self._audit: dict[str, tuple[float, str]] = {}
        self.unacked_keys = unacked.broker_keys()
        # Stale unacked entries of other lanes, already read once: not read again (see
        # RestoreResult.skipped).
        self._unacked_skip: set[str] = set()
        self.fair = settings.bulk_fairness
        self._leading_until = 0.0  # monotonic: the lease is ours until then (for the admitter)
        self._lease_checked = 0.0  # monotonic: when the admitter last asked Redis itself
        self.admitter = Admitter(
            engine,
            broker,
            self._publish,
            quantum=settings.chunk_size,
            queue_s=settings.fair_queue_s,
            min_tasks=settings.fair_min_tasks,
            interval_s=settings.fair_interval_s,
            idle_s=settings.scheduler_interval_s,
        )

    def is_leader(self) -> bool:
        """Take or renew the lease; False when another scheduler holds it."""
        ttl_ms = int(max(2.0, self.settings.scheduler_interval_s * 8) * 1000)
        started = time.monotonic()
        try:
            if self.redis.set(LEADER_KEY, self.identity, nx=True, px=ttl_ms):
                self._leading_until = started + ttl_ms / 2000
                return True
            if self.redis.get(LEADER_KEY) == self.identity.encode():
                self.redis.pexpire(LEADER_KEY, ttl_ms)
                self._leading_until = started + ttl_ms / 2000
                return True
        except redis.RedisError:
            pass
        self._leading_until = 0.0
        return False

    def leading(self) -> bool:
        """The admitter's check: the lease was ours at the last renewal and half its time has
        not passed (no Redis call), else renew it now (a slow tick must not stall admission)."""
        now = time.monotonic()
        if now < self._leading_until:
            return True
        if now - self._lease_checked < self.settings.scheduler_interval_s:
            return False  # a standby asks Redis at the tick's pace, not the admitter's
        self._lease_checked = now
        return self.is_leader()

    def _publish(self, batches: list[Batch]) -> int:
        """Publish ``batches`` and mark them enqueued; those left for fair admission (their
        ``account`` is set) stay in the outbox for the admitter. Messages published."""
        batches = [b for b in batches if b.account is None]
        if not batches:
            return 0
        done, error = self.broker.publish([b for b in batches if b.payloads])
        empty = [b.id for b in batches if not b.payloads]
        with transaction(self.engine) as conn:
            mark_enqueued(conn, [*done, *empty], time.time())
        if error is not None:
            log.warning("publish.deferred", error=str(error))
        return sum(len(b.payloads) for b in batches if b.id in set(done))

    def tick(self, now: float | None = None, force_slow: bool = False) -> TickReport:
        """One round of work."""
        now = time.time() if now is None else now
        report = TickReport()
        with transaction(self.engine) as conn:
            # Campaigns paused or cancelled (docs/campaigns.md): their due retries are not
            # released, their paused messages expire with their validity, and messages a
            # writer stored as the change committed are caught within a tick or two.
            controlled = control_sweeps.controlled_submissions(conn, now)
            if controlled:
                fresh = control_sweeps.controlled_submissions(conn, now, now - CONTROL_SETTLE_S)
                report.controlled = control_sweeps.apply_controls(conn, fresh, now)
            due, report.expired = outbox.release_due(
                conn, now, self.chunk_sizes, self.fair, controlled=controlled
            )
            report.expired += len(control_sweeps.expire_paused(conn, now))
        report.cancelled = self._settle_cancelled(now)
        report.released = self._publish(due)
        with transaction(self.engine) as conn:
            stale = outbox.unpublished_batches(
                conn, now - self.settings.outbox_stale_s, fair=self.fair
            )
        report.republished = self._publish(stale)
        with transaction(self.engine) as conn:
            hooks = webhooks.due_deliveries(conn, now)
        for i in range(0, len(hooks), 100):
            # A failed publish is harmless: the rows come back after their lease.
            self.broker.publish_task(
                TASK_DELIVER_WEBHOOKS, {"ids": hooks[i : i + 100]}, Lane.WEBHOOKS
            )
        report.webhooks = len(hooks)
        with transaction(self.engine) as conn:
            # Charged messages no carrier took get their price back (docs/prices.md).
            report.refunded = refund_sweep(conn, now)
        report.callbacks = self._release_due_callbacks(now)
        if force_slow or time.monotonic() - self._last_slow >= SLOW_EVERY_S:
            self._last_slow = time.monotonic()
            self._slow(now, report)
        return report

    def _settle_cancelled(self, now: float) -> int:
        """Webhooks of cancelled messages, a chunk per transaction, for up to half a tick."""
        done = 0
        until = time.monotonic() + self.settings.scheduler_interval_s / 2
        while True:
            with transaction(self.engine) as conn:
                n = control_sweeps.settle_cancelled(conn, now)
            done += n
            if n < control_sweeps.SETTLE_CHUNK or time.monotonic() > until:
                return done

    def _release_due_callbacks(self, now: float) -> int:
        """Publish stored carrier callbacks that are due: early reports whose next try has
        come, and rows whose wake-up task was lost (their lease ended). Leased again in the
        same statement; a failed publish is harmless, the rows come back after the lease."""
        with transaction(self.engine) as conn:
            due = callback_inbox.take_due(conn, now, self.settings.callback_lease_s)
        for kind, task in CALLBACK_TASKS.items():
            ids = [i for i, k in due if k == kind]
            for i in range(0, len(ids), 100):
                self.broker.publish_task(task, {"ids": ids[i : i + 100]}, Lane.DLR)
        return len(due)

    def _slow(self, now: float, report: TickReport) -> None:
        with transaction(self.engine) as conn:
            for account_id in low_balance_sweep(conn, now):
                log.warning("balance.low", account=account_id)
        with transaction(self.engine) as conn:
            report.webhooks_recovered = webhooks.recover_stale_deliveries(
                conn, now, max_failures=self.settings.webhook_max_failures
            )
            grace = self.settings.report_grace_h * 3600
            report.report_timeouts = len(reports.expire_unreported(conn, now - grace, now))
        with reading(self.engine) as conn:
            claims = outbox.stale_claims(conn, now - self.settings.sending_stale_s)
        if claims:
            self.broker.publish_reconcile(claims)
            report.reconcile_requested = len(claims)
        lengths = self.broker.queue_lengths()
        for lane in SEND_LANES:
            if lengths.get(str(lane), 0) > 0:
                continue
            with transaction(self.engine) as conn:
                lost, self._audit[lane] = outbox.audit_batches(
                    conn,
                    lane,
                    self._audit.get(lane, (now - AUDIT_START_S, "")),
                    now - self.settings.orphan_stale_s,
                    now,
                    self.chunk_sizes,
                    self.fair,
                )
            report.orphans += self._publish(lost)
        report.unacked_restored = self._restore_unacked(now)
        rolled = rollups.run(self.engine, now)
        report.rolled_hours, report.rollup_settled = rolled.hours, rolled.settled

    def _restore_unacked(self, now: float) -> int:
        """Put back the dlr and webhooks tasks a killed worker left unacknowledged (their
        reruns are harmless); the send lanes' are left to the claims and the orphan audit."""
        if self.settings.unacked_restore_s <= 0:
            return 0
        result = unacked.restore_stale(
            self.redis,
            self.unacked_keys,
            {queue_name(lane) for lane in REDELIVERABLE_LANES},
            now - self.settings.unacked_restore_s,
            self._unacked_skip,
        )
        if not result.mutex_held:
            self._unacked_skip = result.skipped
        if result.total:
            log.warning("unacked.restored", queues=result.restored)
        return result.total

    def run(self, stop: threading.Event | None = None) -> None:
        """Tick until ``stop`` is set; database or Redis trouble only delays the next tick."""
        stop = stop or threading.Event()
        log.info("scheduler.started", identity=self.identity, bulk_fairness=self.fair)
        admitter = None
        if self.fair:
            admitter = threading.Thread(
                target=self.admitter.run, args=(stop, self.leading), name="admitter", daemon=True
            )
            admitter.start()
        while not stop.is_set():
            started = time.monotonic()
            try:
                if self.is_leader():
                    report = self.tick()
                    if any(vars(report).values()):
                        log.info("scheduler.tick", **vars(report))
            except (StoreUnavailable, BrokerUnavailable, redis.RedisError) as exc:
                log.warning("scheduler.tick_failed", error=type(exc).__name__)
            elapsed = time.monotonic() - started
            stop.wait(max(0.0, self.settings.scheduler_interval_s - elapsed))
        if admitter is not None:
            admitter.join(timeout=10)
        log.info("scheduler.stopped")
