"""The chaos run: N messages through real processes while everything around them breaks.

``python -m chaos.run --quick`` (CI, ~2,000 messages) or ``python -m chaos.run`` (20,000):
priority and bulk mixed, delivery reports and webhooks on, on PostgreSQL, while worker processes
are SIGKILLed at random (and restarted as a supervisor would), Redis (a private primary, its
replica and three Sentinels, reached through ``REDIS_URL=redis+sentinel://…``) has its primary
killed and restarted in place and later killed for good, so the Sentinels fail over to the
replica, every connection to the run's database is cut and the database is then refused for a
few seconds, the carrier answers 5 % 500s, 2 % timeouts (the submit still accepted: "answer
lost") and bursts of 429, and the customer's webhook receiver is down for a while. Afterwards
:func:`chaos.reconcile.check` compares our log with the carrier's and the receiver's records.

Writes ``var/chaos/latest.json``; the long form also writes its log to
``chaos/results/runs/<start>-seed<seed>.md`` (summarised in ``docs/reliability.md``). Exit code 1
when any check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil
import psycopg
from sqlalchemy import func, select, update

from chaos.reconcile import DeliveryRow, Hook, MessageRow, Verdict, check
from chaos.sentinel_cluster import SentinelCluster

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REJECT_PREFIX = "+48699"
TOKEN = "chaos-callback-token"
# Longer than a restart in place takes (``redis_down_s`` plus loading the append-only file), so
# that fault stays a restart; a primary gone this long is failed over. Production's default is
# 30 s: the time to recover from a failover is this plus an election (docs/reliability.md).
SENTINEL_DOWN_AFTER_MS = 5000


@dataclass(frozen=True)
class Plan:
    """Sizes and the fault schedule (seconds from the start of the load)."""

    messages: int
    load_s: float
    carrier_tps: int
    kill_every: tuple[float, float]
    kill_until_s: float
    redis_kill_at: float
    redis_down_s: float
    failover_at: float
    pg_cut_at: float
    pg_refuse_at: float
    pg_refuse_s: float
    receiver_down_at: float
    receiver_down_s: float
    drain_timeout_s: float
    # Campaign control in the load (docs/campaigns.md): a campaign paused then resumed, one
    # cancelled, and scheduled messages cancelled one by one.
    pause_at: float
    resume_at: float
    cancel_at: float

    @staticmethod
    def make(quick: bool, rng: random.Random, messages: int | None) -> Plan:
        """The schedule, jittered by the seed (so every run records its exact times)."""

        def j(t: float) -> float:
            return round(t + rng.uniform(-2, 2), 1)

        if quick:
            return Plan(
                messages or 2000, 40, 150, (3, 6), 45, j(12), 2.0, j(19), j(26), j(32), 4.0,
                j(6), 15.0, 240, j(9), j(17), j(23),
            )  # fmt: skip
        return Plan(
            messages or 20000, 150, 250, (3, 7), 160, j(40), 3.0, j(60), j(85), j(110), 6.0,
            j(20), 60.0, 1500, j(30), j(55), j(75),
        )  # fmt: skip


@dataclass
class Log:
    """What happened, with times relative to the start of the load."""

    t0: float = field(default_factory=time.monotonic)
    events: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> float:
        """Seconds since the start."""
        return round(time.monotonic() - self.t0, 2)

    def add(self, kind: str, **info: Any) -> None:
        """Record one event."""
        with self.lock:
            self.events.append({"t": self.now(), "event": kind, **info})
        print(json.dumps({"t": self.now(), "event": kind, **info}), flush=True)


class Load:
    """Posts the messages over ``load_s``; retries 503s and lost answers (Idempotency-Key)."""

    def __init__(self, api_url: str, keys: dict[str, str], plan: Plan, seed: int, log: Log):
        self.http = httpx.Client(base_url=api_url, headers=keys, timeout=30)
        self.plan = plan
        self.rng = random.Random(seed)
        self.log = log
        self.accepted: dict[str, str] = {}  # message id → lane
        self.scheduled: list[str] = []  # ids of messages sent with a scheduleTime
        self.answers: Counter[str] = Counter()
        self.unexpected: list[str] = []

    def requests(self) -> list[dict[str, Any]]:
        """Bodies: 60 % of the requests priority (1-10 recipients), the rest bulk (20-200)
        in three campaigns (``_campaign``, sent as the header), every eighth bulk request
        scheduled 15 s ahead instead (``_schedule_in``)."""
        bodies: list[dict[str, Any]] = []
        n, i, bulk = self.plan.messages, 0, 0
        while i < n:
            prio = self.rng.random() < 0.6
            size = min(n - i, self.rng.randint(1, 10) if prio else self.rng.randint(20, 200))
            numbers = [
                f"{REJECT_PREFIX}{k:06d}" if k % 97 == 0 else f"+4850{k:07d}"
                for k in range(i, i + size)
            ]
            body: dict[str, Any] = {
                "sender": "Chaos",
                "message": f"Your code is {i % 1000000:06d}" if prio else f"Offer {i}",
                "phoneNumbers": numbers,
                "priority": prio,
            }
            if not prio:
                bulk += 1
                if bulk % 8 == 0:
                    body["_schedule_in"] = 15
                else:
                    body["_campaign"] = CAMPAIGNS[bulk % len(CAMPAIGNS)]
            bodies.append(body)
            i += size
        return bodies

    def run(self) -> None:
        """Send every request, spread evenly over the load period."""
        bodies = self.requests()
        gap = self.plan.load_s / max(1, len(bodies))
        for k, body in enumerate(bodies):
            due = self.log.t0 + k * gap
            time.sleep(max(0.0, due - time.monotonic()))
            self._send(body, str(uuid.uuid4()))
        self.log.add("load.done", requests=len(bodies), answers=dict(self.answers))

    def _send(self, body: dict[str, Any], key: str) -> None:
        body = dict(body)
        headers = {"Idempotency-Key": key}
        campaign = body.pop("_campaign", None)
        if campaign is not None:
            headers["Smsdispatch-Campaign"] = campaign
        schedule_in = body.pop("_schedule_in", None)
        if schedule_in is not None:
            body["scheduleTime"] = int(time.time()) + schedule_in
        for _ in range(60):
            try:
                r = self.http.post("/v2.1/sms", json=body, headers=headers)
            except httpx.HTTPError as exc:
                self.answers[type(exc).__name__] += 1
                time.sleep(1)
                continue
            self.answers[str(r.status_code)] += 1
            if r.status_code == 200:
                for m in r.json()["data"]:
                    self.accepted[m["id"]] = m["lane"]
                    if schedule_in is not None:
                        self.scheduled.append(m["id"])
                return
            if r.status_code == 503:
                assert r.headers.get("Retry-After"), "503 without Retry-After"
                time.sleep(min(2.0, float(r.headers["Retry-After"])))
                continue
            # Anything else is a finding (a 500 during an outage, a 4xx for a good request):
            # recorded as a violation, and retried with the same key so the load goes on.
            self.unexpected.append(f"{r.status_code}: {r.text[:200]}")
            time.sleep(1)
        self.unexpected.append("refused for a minute")


CAMPAIGNS = ("chaos-plain", "chaos-paused", "chaos-cancelled")


class Controller:
    """Campaign control mixed into the load, through the API like a customer: pauses one
    campaign and resumes it, cancels another, cancels scheduled messages one by one. Every
    answer but 200 (and a 409 for a message a worker took first) is a finding; 503s during an
    outage are retried."""

    def __init__(self, load: Load, plan: Plan, log: Log) -> None:
        self.load = load
        self.plan = plan
        self.log = log
        self.unexpected: list[str] = []
        self.cancelled_one = 0

    def run(self) -> None:
        """The plan's control steps at their times."""
        for at, step in sorted(
            (
                (self.plan.pause_at, "pause"),
                (self.plan.resume_at, "resume"),
                (self.plan.cancel_at, "cancel"),
                (self.plan.cancel_at + 2, "cancel_messages"),
            )
        ):
            time.sleep(max(0.0, self.log.t0 + at - time.monotonic()))
            if step == "cancel_messages":
                self._cancel_messages()
                continue
            campaign = "chaos-cancelled" if step == "cancel" else "chaos-paused"
            answer = self._post(f"/v2.1/campaigns/{campaign}/{step}")
            if answer is not None:
                data = answer["data"][0]
                self.log.add(f"campaign.{step}", campaign=campaign, changed=data["changed"])

    def _cancel_messages(self) -> None:
        """Cancel every other scheduled message sent so far (those not yet released)."""
        for mid in list(self.load.scheduled)[::2]:
            if self._post(f"/v2.1/sms/{mid}/cancel", allow=("message_not_cancellable",)):
                self.cancelled_one += 1
        self.log.add("message.cancel", cancelled=self.cancelled_one)

    def _post(self, path: str, allow: tuple[str, ...] = ()) -> dict[str, Any] | None:
        for _ in range(60):
            try:
                r = self.load.http.post(path, json={})
            except httpx.HTTPError:
                time.sleep(1)
                continue
            if r.status_code == 200:
                return dict(r.json())
            if r.status_code == 503:
                time.sleep(1)
                continue
            if r.status_code == 404 and "campaign_not_found" in r.text:
                time.sleep(1)  # the campaign's first request has not been accepted yet
                continue
            code = r.json()["errors"][0]["code"] if r.content else ""
            if code not in allow:
                self.unexpected.append(f"{path} {r.status_code}: {r.text[:200]}")
            return None
        self.unexpected.append(f"{path}: no answer for a minute")
        return None


class RestartableReceiver:
    """The customer's webhook receiver; down means its port refuses connections.

    Closing the listening socket is not enough: keep-alive connections opened before would go
    on being served. So a receiver going down first answers 503 with ``Connection: close`` on
    those (the sender retries them), and only requests it received before that count.
    """

    PATH = "/hooks"

    def __init__(self) -> None:
        from tests.support.receiver import Answer, Receiver

        self._cls, self._answer = Receiver, Answer
        self.rx = Receiver()
        self.rx.__enter__()
        self.port = self.rx.port
        self.old: list[tuple[Any, float]] = []  # (receiver, when it went down)

    def down(self) -> None:
        """Refuse everything from now on (keeps what it received)."""
        self.rx.script(self.PATH, self._answer(503, headers={"Connection": "close"}))
        self.old.append((self.rx, time.time()))
        self.rx.close()

    def up(self) -> None:
        """Listen again on the same port."""
        self.rx = self._cls(port=self.port)
        self.rx.__enter__()

    def received(self) -> list[Any]:
        """Every request answered 2xx, across restarts."""
        got = [r for rx, until in self.old for r in rx.requests() if r.at < until]
        return [*got, *self.rx.requests()]

    def close(self) -> None:
        """Stop for good."""
        self.rx.close()


def _pg_admin(db_url: str) -> tuple[str, str]:
    base, name = db_url.rsplit("/", 1)
    return base + "/postgres", name


def cut_connections(db_url: str) -> int:
    """Terminate every backend of the run's database (the shared server keeps running)."""
    admin, name = _pg_admin(db_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
    return len(rows)


def refuse_connections(db_url: str, refuse: bool) -> None:
    """Make the run's database refuse (or accept again) new connections."""
    admin, name = _pg_admin(db_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(not refuse).lower()}')


class Faults:
    """Runs the fault schedule and the random worker kills in two threads."""

    def __init__(
        self, stack: Any, redis: SentinelCluster, rx: RestartableReceiver, plan: Plan, seed: int,
        log: Log, lanes: dict[str, int],
    ) -> None:  # fmt: skip
        self.stack, self.redis, self.rx, self.plan, self.log = stack, redis, rx, plan, log
        self.rng = random.Random(seed + 1)
        self.lanes = lanes
        self.kills: Counter[str] = Counter()
        self.recovery: dict[str, float] = {}
        self.errors: list[str] = []
        self.measurements: list[threading.Thread] = []
        self.exits: list[dict[str, Any]] = []
        self.pools = threading.Lock()  # the killer and the supervisor never race on a pool
        self.stop = threading.Event()

    def _at(self, t: float) -> None:
        time.sleep(max(0.0, self.log.t0 + t - time.monotonic()))

    def _measure(self, fn: Any, *args: Any) -> None:
        """Measure a recovery in the background: the schedule must not wait for it."""
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        self.measurements.append(t)

    def _first_webhook_after(self, up: float) -> None:
        n = len(self.rx.rx.requests())
        while time.monotonic() - up < 300 and len(self.rx.rx.requests()) == n:
            time.sleep(0.1)
        self.recovery["receiver_first_webhook_s"] = round(time.monotonic() - up, 2)

    def _progress_after(self, what: str, since: float, timeout: float = 120.0) -> None:
        """Seconds from the end of a fault until the API is ready and the carrier accepts new
        submits again (or nothing is left to send)."""
        base = self.stack.sim_stats()["submits"]
        ready = None
        while time.monotonic() - since < timeout:
            if ready is None and _ready(self.stack.api_url):
                ready = self.recovery[what + "_api_ready_s"] = round(time.monotonic() - since, 2)
            if self.stack.sim_stats()["submits"] > base or _nothing_to_send(self.stack):
                self.recovery[what + "_carrier_progress_s"] = round(time.monotonic() - since, 2)
                return
            time.sleep(0.1)
        self.recovery[what + "_carrier_progress_s"] = -1.0

    def schedule(self) -> None:
        """Redis, PostgreSQL and receiver faults at their planned times (in time order)."""
        p = self.plan
        steps = sorted(
            [
                (p.receiver_down_at, "receiver.down"),
                (p.receiver_down_at + p.receiver_down_s, "receiver.up"),
                (p.redis_kill_at, "redis.kill"),
                (p.failover_at, "redis.failover"),
                (p.pg_cut_at, "postgres.cut"),
                (p.pg_refuse_at, "postgres.refuse"),
            ]
        )
        try:
            for t, step in steps:
                self._at(t)
                self._do(step)
        except Exception as exc:  # a fault tool failing must fail the run, not hang it
            self.errors.append(f"{type(exc).__name__}: {exc}")
            self.log.add("fault.error", error=repr(exc))

    def _do(self, step: str) -> None:
        p = self.plan
        if step == "receiver.down":
            self.rx.down()
            self.log.add(step, for_s=p.receiver_down_s)
        elif step == "receiver.up":
            self.rx.up()
            up = time.monotonic()
            self.log.add(step)
            self._measure(self._first_webhook_after, up)
        elif step == "redis.kill":
            primary = self.redis.primary()
            primary.kill()
            self.log.add("redis.kill", signal="SIGKILL", down_s=p.redis_down_s, port=primary.port)
            time.sleep(p.redis_down_s)
            took = primary.start()
            ended = time.monotonic()
            self.log.add("redis.restarted", start_s=round(took, 2))
            self._measure(self._progress_after, "redis", ended)
        elif step == "redis.failover":
            killed = time.monotonic()
            old = self.redis.kill_primary()
            self.log.add("redis.failover.kill", signal="SIGKILL", port=old.port)
            # Measured from the kill: the outage clients see includes the Sentinels' wait.
            self._measure(self._progress_after, "failover", killed)
            self._measure(self._failover, old)
        elif step == "postgres.cut":
            n = cut_connections(self.stack.database_url)
            ended = time.monotonic()
            self.log.add("postgres.cut", backends=n)
            self._measure(self._progress_after, "postgres_cut", ended)
        elif step == "postgres.refuse":
            refuse_connections(self.stack.database_url, True)
            n = cut_connections(self.stack.database_url)
            self.log.add("postgres.refuse", backends=n, for_s=p.pg_refuse_s)
            time.sleep(p.pg_refuse_s)
            refuse_connections(self.stack.database_url, False)
            ended = time.monotonic()
            self.log.add("postgres.accept")
            self._measure(self._progress_after, "postgres_refuse", ended)

    def _failover(self, old: Any) -> None:
        """Wait for the Sentinels to promote the replica, then restart the killed primary: the
        Sentinels make it a replica of the new one."""
        try:
            new, took = self.redis.wait_failover(old)
            self.recovery["failover_promoted_s"] = round(took, 2)
            self.log.add("redis.failover.promoted", port=new.port, after_s=round(took, 2))
            took = self.redis.rejoin(old)
            self.log.add("redis.failover.rejoined", port=old.port, after_s=round(took, 2))
        except Exception as exc:  # no failover is a failed run, not a silent thread
            self.errors.append(f"{type(exc).__name__}: {exc}")
            self.log.add("fault.error", error=repr(exc))

    def _start(self, lane: str) -> None:
        # Not waiting for "ready.": a pool still starting may be killed again, as in real life.
        self.stack.start_worker(lane, self.lanes[lane], wait=False)

    def supervisor(self) -> None:
        """Restart any worker pool that exited on its own, as systemd or Kubernetes would.

        A Celery pool can exit by itself when its Redis connection breaks while it holds
        unacknowledged tasks (seen here: ``Unrecoverable error: AttributeError(... 'hostname')``
        while restoring them); each such exit is recorded as a finding.
        """
        while not self.stop.wait(0.5):
            for lane in self.lanes:
                name = f"worker-{lane}"
                with self.pools:
                    p = self.stack.procs.get(name)
                    if p is None or p.poll() is None:
                        continue
                    tail = self.stack.log(name)[-3000:]
                    why = next((ln[:240] for ln in reversed(tail.splitlines()) if "rror" in ln), "")
                    self.exits.append({"t": self.log.now(), "lane": lane, "code": p.returncode})
                    self.log.add("worker.exited", lane=lane, code=p.returncode, last_error=why)
                    self.stack.procs.pop(name)
                    time.sleep(1.0)
                    self._start(lane)

    def killer(self) -> None:
        """SIGKILL a worker every few seconds; restart a whole pool as a supervisor would.

        Send lanes: the whole pool (its unacked chunk comes back via claims, the reconciler and
        the orphan audit) or one prefork child (Celery requeues its task). The dlr and webhooks
        lanes too, since the scheduler hands back what a killed pool held unacknowledged after
        ``unacked_restore_s`` (60 s here; before, it waited for Redis's visibility timeout, an
        hour, and runs killed only their children; docs/reliability.md).
        """
        weights = {"priority": 35, "bulk": 45, "dlr": 10, "webhooks": 10}
        lanes = [lane for lane in weights if lane in self.lanes]
        try:
            while self.log.now() < self.plan.kill_until_s:
                time.sleep(self.rng.uniform(*self.plan.kill_every))
                lane = self.rng.choices(lanes, [weights[x] for x in lanes])[0]
                name = f"worker-{lane}"
                whole = self.rng.random() < 0.5
                if whole:
                    with self.pools:
                        self.stack.stop(name, sig=signal.SIGKILL)
                        self.log.add("kill.pool", lane=lane)
                        self.kills[f"{lane}.pool"] += 1
                        time.sleep(1.0)  # the supervisor's restart delay
                        self._start(lane)
                    continue
                try:
                    children = self.stack.worker_children(name)
                except (KeyError, psutil.Error):  # exited on its own: the supervisor's job
                    continue
                if children:
                    pid = self.rng.choice(children)
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        continue
                    self.log.add("kill.child", lane=lane, pid=pid)
                    self.kills[f"{lane}.child"] += 1
        except Exception as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
            self.log.add("killer.error", error=repr(exc))


def _ready(api_url: str) -> bool:
    from tests.support.stack import LOCAL  # one client: httpx.get() builds one (and TLS) a call

    try:
        return LOCAL.get(api_url + "/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _nothing_to_send(stack: Any) -> bool:
    from dispatcher.store.schema import messages

    m = messages.c
    engine = stack.db()
    try:
        with engine.connect() as conn:
            n = conn.execute(
                select(func.count()).where(m.status.in_(["queued", "retrying", "sending"]))
            ).scalar_one()
    except Exception:  # the database is still coming back
        return False
    finally:
        engine.dispose()
    return int(n) == 0


def hook_account(stack: Any, url: str) -> Any:
    """A priority-enabled account whose default webhook URL is the receiver."""
    from dispatcher.store import webhook_settings
    from dispatcher.store.schema import accounts

    client = stack.account("chaos")
    engine = stack.db()
    with engine.begin() as conn:
        conn.execute(
            update(accounts).where(accounts.c.id == client.account_id).values(webhook_url=url)
        )
        webhook_settings.ensure_secret(conn, client.account_id)
    engine.dispose()
    return client


def _unfinished(stack: Any) -> tuple[int, int]:
    from dispatcher.store.schema import messages, webhook_deliveries

    m, d = messages.c, webhook_deliveries.c
    engine = stack.db()
    try:
        with engine.connect() as conn:
            open_msgs = conn.execute(
                select(func.count()).where(m.status.not_in(sorted(FINAL_STATUSES)))
            ).scalar_one()
            open_hooks = conn.execute(
                select(func.count()).where(d.state != "delivered")
            ).scalar_one()
    finally:
        engine.dispose()
    return int(open_msgs), int(open_hooks)


FINAL_STATUSES = {"delivered", "undelivered", "expired", "rejected", "failed", "cancelled"}


def collect(stack: Any, accepted: set[str], rx: RestartableReceiver) -> Verdict:
    """Read our log, the carrier's records and the receiver's, and check them."""
    from dispatcher.store.schema import messages, webhook_attempts, webhook_deliveries

    m, d, a = messages.c, webhook_deliveries.c, webhook_attempts.c
    engine = stack.db()
    with engine.connect() as conn:
        rows = [
            MessageRow(r.id, r.status, r.carrier_message_id, r.valid_until, r.next_attempt_at)
            for r in conn.execute(
                select(m.id, m.status, m.carrier_message_id, m.valid_until, m.next_attempt_at)
            )
        ]
        ok = dict(
            conn.execute(
                select(a.delivery_id, func.count())
                .where(a.status_code.between(200, 299))
                .group_by(a.delivery_id)
            ).all()
        )
        deliveries = [
            DeliveryRow(r.id, r.message_id, r.status_key, r.state, int(ok.get(r.id, 0)))
            for r in conn.execute(
                select(d.id, d.message_id, d.status_key, d.state).where(d.event == "message.status")
            )
        ]
    engine.dispose()
    refcounts = {k: int(v) for k, v in stack.sim("GET", "/_sim/refcounts").json().items()}
    hooks = []
    for req in rx.received():
        body = json.loads(req.body)
        hooks.append(
            Hook(req.headers.get("webhook-id", ""), body.get("id"), body.get("statusName"))
        )
    verdict = check(accepted, rows, refcounts, deliveries, hooks, time.time())
    verdict.figures["evidence"] = evidence(stack, verdict)
    return verdict


def evidence(stack: Any, verdict: Verdict, most: int = 5) -> dict[str, Any]:
    """For a few messages of each violation: our timeline and the carrier's submit records,
    so a failed run can be diagnosed after its database is gone."""
    from dispatcher.store.schema import message_events

    ids: set[str] = set()
    for kind in ("duplicate_submit", "report_missing", "stuck", "carrier_mismatch", "lost"):
        for item in verdict.violations.get(kind, [])[:most]:
            ids.add(
                item.split(":")[0].split("x")[0]
                if kind == "duplicate_submit"
                else item.split(":")[0]
            )
    if not ids:
        return {}
    submits = [r for r in stack.sim_submits() if r.get("ref") in ids]
    e = message_events.c
    engine = stack.db()
    with engine.connect() as conn:
        rows = conn.execute(
            select(e.message_id, e.at, e.kind, e.status, e.detail)
            .where(e.message_id.in_(sorted(ids)))
            .order_by(e.message_id, e.at)
        ).all()
    engine.dispose()
    out: dict[str, Any] = {}
    for mid in sorted(ids):
        out[mid] = {
            "carrier": [{k: r.get(k) for k in ("id", "at")} for r in submits if r["ref"] == mid],
            "timeline": [
                [round(r.at, 3), r.kind, r.status, r.detail] for r in rows if r.message_id == mid
            ],
        }
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole run; returns the result document."""
    os.environ.setdefault("SMSD_TEST_DB", "postgres")
    from tests.support.stack import running_stack, wait_until

    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**6)
    plan = Plan.make(args.quick, random.Random(seed), args.messages)
    # The long form's 20,000 reports arrive faster than one dlr process applies them here.
    lanes = {"priority": 1, "bulk": 2, "dlr": 1 if args.quick else 2, "webhooks": 1}
    started_at = time.time()
    with SentinelCluster(down_after_ms=SENTINEL_DOWN_AFTER_MS, fsync="always") as redis_server:
        rx = RestartableReceiver()
        try:
            with running_stack(
                workers=lanes,
                redis_url=redis_server.url,
                carrier_tps=plan.carrier_tps,
                carrier_batch_size=50,
                carrier_timeout_s=1,
                sending_stale_s=3,
                orphan_stale_s=4,
                outbox_stale_s=2,
                unacked_restore_s=60,
                carrier_callback_token=TOKEN,
                webhook_allow_private=True,
                webhook_timeout_s=2,
            ) as stack:
                stack.sim_config(
                    seed=seed,
                    error_rate=0.05,
                    timeout_rate=0.02,
                    timeout_s=1.5,
                    timeout_accepts=True,
                    throttle_burst_every_s=10,
                    throttle_burst_len_s=1.5,
                    reject_prefixes=[REJECT_PREFIX],
                    dlr_retries=10,
                )
                client = hook_account(stack, rx.rx.url(rx.PATH))
                log = Log()
                load = Load(stack.api_url, client.keys, plan, seed, log)
                faults = Faults(stack, redis_server, rx, plan, seed, log, lanes)
                controller = Controller(load, plan, log)
                threads = [
                    threading.Thread(target=load.run, name="load"),
                    threading.Thread(target=controller.run, name="control"),
                    threading.Thread(target=faults.schedule, name="faults"),
                    threading.Thread(target=faults.killer, name="killer"),
                ]
                keeper = threading.Thread(target=faults.supervisor, name="supervisor")
                keeper.start()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                for t in faults.measurements:
                    t.join(130)
                log.add("faults.done", kills=dict(faults.kills))
                drain_start = time.monotonic()
                try:
                    wait_until(
                        lambda: _unfinished(stack) == (0, 0),
                        plan.drain_timeout_s,
                        interval=2,
                        what="every message final and every webhook delivered",
                    )
                except AssertionError as exc:
                    log.add("drain.timeout", error=str(exc))
                drained_s = round(time.monotonic() - drain_start, 1)
                faults.stop.set()
                keeper.join()
                log.add("drained", after_s=drained_s)
                verdict = collect(stack, set(load.accepted), rx)
                sim = stack.sim_stats()
                db_url = stack.database_url
        finally:
            rx.close()
    lanes_count = Counter(load.accepted.values())
    doc: dict[str, Any] = {
        "form": "quick" if args.quick else "long",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started_at)),
        "seed": seed,
        "database": db_url.split("@")[-1].rsplit("/", 1)[0] + "/<run db>",
        "plan": vars(plan),
        "accepted_by_lane": dict(lanes_count),
        "api_answers": dict(load.answers),
        "kills": dict(faults.kills),
        "worker_exits": faults.exits,
        "recovery_s": faults.recovery,
        "drain_s": drained_s,
        "carrier": {
            k: sim.get(k)
            for k in (
                "submits",
                "unique_refs",
                "duplicate_submits",
                "rejected",
                "errors_injected",
                "timeouts_injected",
                "throttled",
                "dlr_sent",
                "dlr_failed",
                "dlr_retried",
            )
        },
        "events": log.events,
        "fault_errors": faults.errors,
        **verdict.summary(),
    }
    unexpected = load.unexpected + controller.unexpected
    if unexpected:
        doc["violations"]["api_unexpected_answer"] = len(unexpected)
        doc["examples"]["api_unexpected_answer"] = unexpected[:5]
    if faults.errors or unexpected:
        doc["ok"] = False
    return doc


def write_outputs(doc: dict[str, Any], long_form: bool) -> None:
    """JSON to var/chaos/latest.json; the long form also writes its log to chaos/results/runs/."""
    out_dir = os.path.join(ROOT, "var", "chaos")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "latest.json"), "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2)
    if long_form:
        from chaos.report import markdown_section

        runs = os.path.join(ROOT, "chaos", "results", "runs")
        os.makedirs(runs, exist_ok=True)
        start = doc["started_at"].replace("-", "").replace(":", "")
        with open(os.path.join(runs, f"{start}-seed{doc['seed']}.md"), "w", encoding="utf-8") as fh:
            fh.write(markdown_section(doc).rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(prog="python -m chaos.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the short CI form")
    parser.add_argument("--messages", type=int, help="override the number of messages")
    parser.add_argument("--seed", type=int, help="seed of every random decision")
    parser.add_argument(
        "--no-doc", action="store_true", help="long form: do not write the run's log"
    )
    args = parser.parse_args(argv)
    # SIGTERM (a CI timeout) unwinds like Ctrl-C, so every process of the run is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    doc = run(args)
    write_outputs(doc, long_form=not args.quick and not args.no_doc)
    print(json.dumps({k: doc[k] for k in ("ok", "figures", "violations", "examples")}, indent=2))
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
