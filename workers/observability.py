"""A worker pool's ``/metrics``, ``/healthz`` and ``/readyz``, driven by Celery's signals.

``smsdispatch worker`` execs Celery, so nothing on the producer side can start this server: the
handlers below do it inside the pool. They are plain functions (this module does not import
Celery; ``workers/app.py`` calls :func:`connect` with ``celery.signals``), called in this order:

1. ``import_modules`` — main process, before the task modules (and so the metrics) are imported:
   :func:`on_import_modules` gives the pool an empty multiprocess directory
   (``$SMSDISPATCH_METRICS_DIR/worker-<pid>``, default under the temporary directory; stale
   directories of dead pools are removed) and exports ``PROMETHEUS_MULTIPROC_DIR``.
2. ``worker_init`` — main process, before the pool forks: :func:`on_worker_init` learns the lane
   and concurrency and starts the HTTP server on ``SMSDISPATCH_WORKER_METRICS_HOST``
   (127.0.0.1) : ``SMSDISPATCH_WORKER_METRICS_PORT`` (default per lane: priority 9101, bulk 9102,
   dlr 9103, webhooks 9104; ``0`` turns the server off).
3. ``worker_ready`` / ``worker_shutting_down`` — readiness on and off.
4. ``worker_process_init`` — each prefork child: closes its inherited copy of the listening
   socket and counts itself as an idle slot.
5. ``task_prerun`` / ``task_postrun`` — children: busy/idle slots, task counts and run times.

Why multiprocess mode rather than another pool model: the prefork pool is what isolates a
crashing or leaking chunk from its siblings and what the crash tests exercise; threads would put
every chunk's event loop in one interpreter. Each child writes its values to its own mmap file
and the main process sums the files at each scrape; live-gauge files of children that died
(even by SIGKILL) are dropped at the next scrape.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import structlog

from dispatcher.config import Settings
from dispatcher.contract import QUEUE_PREFIX, Lane
from dispatcher.ops.health import HealthServer, alive, check_database, check_redis, json_route
from dispatcher.ops.metrics_dir import pid_alive, use_multiprocess_dir
from dispatcher.redis_clients import sync_client

log = structlog.get_logger(component="worker-observability")

DEFAULT_PORTS = {Lane.PRIORITY: 9101, Lane.BULK: 9102, Lane.DLR: 9103, Lane.WEBHOOKS: 9104}
DIR_NAME = "worker"  # the pool's directory: $SMSDISPATCH_METRICS_DIR/worker-<pid>


@dataclass
class _State:
    """This process's view of its pool (copied into the children by fork)."""

    lane: str = "unknown"
    concurrency: int = 0
    ready: bool = False
    shutting_down: bool = False
    server: HealthServer | None = None
    prepared_pid: int = 0
    started: dict[str, float] = field(default_factory=dict)  # task id → prerun time (children)


STATE = _State()


# -- 1. the multiprocess directory ---------------------------------------------------------------
def prepare_multiprocess(root: str | None = None) -> str:
    """Create this pool's empty directory, remove dead pools' ones, export the variable."""
    if STATE.prepared_pid == os.getpid():
        return os.environ["PROMETHEUS_MULTIPROC_DIR"]
    if "workers.metrics" in sys.modules:
        # Values created before this point live in this process only: children's counts
        # would never reach /metrics. Say so loudly rather than serve wrong numbers.
        log.error(
            "worker.metrics_imported_too_early",
            hint="import workers.metrics / prometheus_client only from task modules",
        )
    path = use_multiprocess_dir(DIR_NAME, root)
    if "prometheus_client.values" in sys.modules:
        # prometheus_client chose its value class when first imported, before the directory
        # existed: Celery's command line imports its plugins first (Flower's imports
        # prometheus_client). No metric of ours exists yet, so choose again: the metrics
        # created from now on write to the directory.
        from prometheus_client import values

        values.ValueClass = values.get_value_class()
    STATE.prepared_pid = os.getpid()
    return path


def on_import_modules(**_kwargs: Any) -> None:
    """``import_modules`` handler (fires before Celery imports the task modules)."""
    prepare_multiprocess()


# -- 2./3. the server in the main process ---------------------------------------------------------
def lane_of(hostname: str, queues: Any) -> str:
    """The pool's lane, from the queues it consumes (else its ``lane@host`` node name)."""
    names = [str(q) for q in (queues or ())]
    lanes = {n[len(QUEUE_PREFIX) :] for n in names if n.startswith(QUEUE_PREFIX)}
    if len(lanes) == 1:
        return lanes.pop()
    head = hostname.split("@", 1)[0]
    return head if head in {str(lane) for lane in Lane} else "unknown"


def listen_address(lane: str, env: dict[str, str] | None = None) -> tuple[str, int]:
    """Host and port of the pool's server; port 0 means no server."""
    settings = Settings.from_env(env)
    host, port = settings.worker_metrics_host, settings.worker_metrics_port
    if port is not None:
        return host, port
    return host, DEFAULT_PORTS.get(Lane(lane), 9100) if lane in set(Lane) else 9100


def on_worker_init(sender: Any = None, **_kwargs: Any) -> None:
    """``worker_init`` handler: remember the pool's shape and start the HTTP server."""
    prepare_multiprocess()
    hostname = str(getattr(sender, "hostname", "") or "")
    queues = getattr(getattr(getattr(sender, "app", None), "amqp", None), "queues", None)
    consume = getattr(queues, "consume_from", None) or {}
    STATE.lane = lane_of(hostname, list(consume))
    STATE.concurrency = int(getattr(sender, "concurrency", 0) or 0)
    host, port = listen_address(STATE.lane)
    if port == 0:
        return
    try:
        STATE.server = serve(host, port)
    except OSError as exc:
        # Sending must not stop because a port is taken; the probes will say so.
        log.error("worker.metrics_unavailable", host=host, port=port, error=str(exc))
        return
    log.info("worker.metrics_listening", lane=STATE.lane, host=host, port=port)


def on_worker_ready(**_kwargs: Any) -> None:
    """``worker_ready`` handler: the consumer is running."""
    STATE.ready = True


def on_worker_shutting_down(**_kwargs: Any) -> None:
    """``worker_shutting_down`` handler: no longer ready (in-flight tasks still finish)."""
    STATE.shutting_down = True


def on_worker_shutdown(**_kwargs: Any) -> None:
    """``worker_shutdown`` handler: release the port."""
    if STATE.server is not None:
        STATE.server.close()
        STATE.server = None


# -- 4./5. the children ---------------------------------------------------------------------------
def on_process_init(**_kwargs: Any) -> None:
    """``worker_process_init`` handler (each child)."""
    if STATE.server is not None:
        STATE.server.close_inherited_socket()
        STATE.server = None
    STATE.started = {}
    from workers import metrics

    metrics.SLOTS.labels(STATE.lane, "busy").set(0)
    metrics.SLOTS.labels(STATE.lane, "idle").set(1)


def on_task_prerun(task_id: str = "", **_kwargs: Any) -> None:
    """``task_prerun`` handler: this slot is busy."""
    from workers import metrics

    STATE.started[task_id] = time.perf_counter()
    metrics.SLOTS.labels(STATE.lane, "busy").set(1)
    metrics.SLOTS.labels(STATE.lane, "idle").set(0)


def on_task_postrun(
    task_id: str = "", task: Any = None, state: str | None = None, **_kwargs: Any
) -> None:
    """``task_postrun`` handler: count the task, time it, this slot is idle again."""
    from workers import metrics

    name = str(getattr(task, "name", "unknown"))
    started = STATE.started.pop(task_id, None)
    if started is not None:
        metrics.TASK_DURATION.labels(STATE.lane, name).observe(time.perf_counter() - started)
    metrics.TASKS.labels(STATE.lane, name, str(state or "UNKNOWN")).inc()
    metrics.SLOTS.labels(STATE.lane, "busy").set(0)
    metrics.SLOTS.labels(STATE.lane, "idle").set(1)


def connect(signals: Any) -> None:
    """Connect every handler to ``celery.signals`` (passed in: this module stays Celery-free).

    Call it at import time of the Celery app module, so ``import_modules`` is caught.
    """
    signals.import_modules.connect(on_import_modules, weak=False)
    signals.worker_init.connect(on_worker_init, weak=False)
    signals.worker_ready.connect(on_worker_ready, weak=False)
    signals.worker_shutting_down.connect(on_worker_shutting_down, weak=False)
    signals.worker_shutdown.connect(on_worker_shutdown, weak=False)
    signals.worker_process_init.connect(on_process_init, weak=False)
    signals.task_prerun.connect(on_task_prerun, weak=False)
    signals.task_postrun.connect(on_task_postrun, weak=False)


# -- the HTTP server ------------------------------------------------------------------------------
def render_metrics() -> bytes:
    """Every process's values summed (children dead or alive), plus the pool's concurrency."""
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess
    from prometheus_client.core import GaugeMetricFamily

    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    forget_dead_processes(path)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)

    class _Pool:
        def collect(self) -> Iterator[GaugeMetricFamily]:
            g = GaugeMetricFamily(
                "smsdispatch_worker_concurrency",
                "Configured prefork processes (task slots) of a worker pool.",
                labels=["lane"],
            )
            g.add_metric([STATE.lane], STATE.concurrency)
            yield g

    registry.register(_Pool())
    return generate_latest(registry)


def forget_dead_processes(path: str) -> None:
    """Drop live-gauge files of children that exited, however they died."""
    from prometheus_client import multiprocess

    pids: set[int] = set()
    for name in os.listdir(path):
        if name.startswith("gauge_live") and name.endswith(".db"):
            digits = name[: -len(".db")].rsplit("_", 1)[-1]
            if digits.isdigit():
                pids.add(int(digits))
    for pid in pids:
        if not pid_alive(pid):
            multiprocess.mark_process_dead(pid, path)


def readiness() -> dict[str, str]:
    """Redis and the database answer, and the consumer is running (fresh connections each
    time: nothing is held open in the main process that a forked child could inherit)."""
    settings = Settings.from_env()
    checks = {"consumer": "ok" if STATE.ready and not STATE.shutting_down else "not_running"}
    try:
        client = sync_client(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
        try:
            checks["redis"] = check_redis(client)
        finally:
            client.close()
    except Exception as exc:  # a probe reports, it does not raise (a malformed URL, say)
        checks["redis"] = type(exc).__name__
    checks["database"] = check_database(settings.database_url)
    return checks


def serve(host: str, port: int) -> HealthServer:
    """Start the pool's HTTP server in a daemon thread."""
    from prometheus_client import CONTENT_TYPE_LATEST

    def metrics() -> tuple[int, str, bytes]:
        return 200, CONTENT_TYPE_LATEST, render_metrics()

    routes = {"/metrics": metrics, "/healthz": alive, "/readyz": json_route(readiness)}
    return HealthServer(host, port, routes, name="worker-metrics")
