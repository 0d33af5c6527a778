"""Run the API: one uvicorn process, or several that each own a ``SO_REUSEPORT`` socket.

Why not uvicorn's own ``--workers``: its processes share one listening socket, and whichever
is awake when clients connect accepts them all, so with keep-alive clients one process can
serve nearly every request while the others idle, and the API runs on one core. With a socket
per process the kernel spreads new connections across the processes by a hash of the address
pair (``docs/benchmarks.md``, "Measurements behind code choices").

Each process freezes the garbage collector's view of what exists once it has started (the app,
its settings, pools, imported modules: nothing that becomes garbage), so a full collection scans
the few thousand objects of requests in flight instead of every start-up object: collections
that walk all of those stall the event loop and set the latency tail (docs/benchmarks.md).

The parent binds nothing and serves nothing: it starts the children, restarts one that dies
(a child that fails at startup stops the whole API instead, as a bad configuration would fail
every restart), and forwards SIGTERM/SIGINT so each child drains its requests and stops.
"""

from __future__ import annotations

import gc
import multiprocessing
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.context import SpawnProcess
from types import FrameType
from typing import Any

import structlog

log = structlog.get_logger(component="api")

APP = "dispatcher.api.app:create_app"
STARTUP_FAILURE = 3  # uvicorn's exit code when the app or the socket cannot start
RESTART_PAUSE_S = 1.0  # between restarts of a dying child: no busy loop on a crash at startup
_spawn = multiprocessing.get_context("spawn")


@dataclass(frozen=True)
class ServeOptions:
    """What every API process needs to serve (picklable: it crosses into the children)."""

    host: str
    port: int
    graceful_s: int = 20

    def uvicorn_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :class:`uvicorn.Config`, shared by both modes."""
        from dispatcher.api.http_protocol import CoalescingHttpToolsProtocol

        return {
            "app": APP,
            "factory": True,
            "host": self.host,
            "port": self.port,
            "loop": "uvloop",
            "http": CoalescingHttpToolsProtocol,  # one write per response, not two
            "access_log": False,
            # Forwarded headers are applied by dispatcher.api.proxies, from the configured
            # proxies only; uvicorn's own handling trusts loopback by default.
            "proxy_headers": False,
            "log_config": None,
            "timeout_graceful_shutdown": self.graceful_s,
        }


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT``, not yet listening."""
    return _bound(host, port, reuse_port=True)


def _plain_socket(host: str, port: int) -> socket.socket:
    return _bound(host, port, reuse_port=False)


def _bound(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT does not block
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def serve(options: ServeOptions, workers: int) -> int:
    """Serve until SIGTERM/SIGINT; the exit code for the command line."""
    if workers <= 1:
        server = _server(options)
        server.run()
        return 0 if server.started else STARTUP_FAILURE
    return _Supervisor(options, workers).run()


def _server(options: ServeOptions) -> Any:
    import uvicorn

    class FrozenAfterStartup(uvicorn.Server):
        """uvicorn's server that freezes the collector once the app's lifespan has started."""

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                gc.collect()
                gc.freeze()

    return FrozenAfterStartup(uvicorn.Config(**options.uvicorn_kwargs()))


def _child(options: ServeOptions) -> None:
    """One API process: its own socket in the port's ``SO_REUSEPORT`` group."""
    from dispatcher.config import Settings
    from dispatcher.ops.logs import configure

    # A spawned process starts with logging unconfigured: same output as the parent's.
    settings = Settings.from_env()
    configure(settings.log_level, settings.log_format)
    try:
        sock = reuse_port_socket(options.host, options.port)
    except OSError as exc:
        log.error("api.bind_failed", host=options.host, port=options.port, error=str(exc))
        sys.exit(STARTUP_FAILURE)
    server = _server(options)
    server.run(sockets=[sock])
    if not server.started:
        sys.exit(STARTUP_FAILURE)


class _Supervisor:
    def __init__(self, options: ServeOptions, workers: int) -> None:
        self.options = options
        self.workers = workers
        self.stopping = threading.Event()
        self.children: list[SpawnProcess] = []

    def _start_child(self) -> SpawnProcess:
        child = _spawn.Process(target=_child, args=(self.options,), name="smsdispatch-api")
        child.start()
        return child

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping.set()

    def run(self) -> int:
        # Fail fast, in the parent, on an address already in use, by anything: a plain bind
        # fails next to any bound socket, ``SO_REUSEPORT`` ones included, so a second API
        # (a stale ``make run``) cannot silently join this one's group.
        try:
            _plain_socket(self.options.host, self.options.port).close()
        except OSError as exc:
            log.error(
                "api.bind_failed", host=self.options.host, port=self.options.port, error=str(exc)
            )
            return STARTUP_FAILURE
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        self.children = [self._start_child() for _ in range(self.workers)]
        log.info("api.processes_started", processes=self.workers, port=self.options.port)
        code = 0
        while not self.stopping.wait(0.5):
            for i, child in enumerate(self.children):
                if child.is_alive():
                    continue
                if child.exitcode == STARTUP_FAILURE:
                    log.error("api.process_failed_to_start", pid=child.pid)
                    self.stopping.set()
                    code = STARTUP_FAILURE
                    break
                log.warning("api.process_died", pid=child.pid, exitcode=child.exitcode)
                if self.stopping.wait(RESTART_PAUSE_S):
                    break  # the whole group was signalled: do not bring one back
                self.children[i] = self._start_child()
        self._stop_children()
        log.info("api.stopped")
        return code

    def _stop_children(self) -> None:
        for child in self.children:
            if child.is_alive() and child.pid is not None:
                child.terminate()  # SIGTERM: uvicorn stops accepting and drains
        deadline = time.monotonic() + self.options.graceful_s + 5
        for child in self.children:
            child.join(max(0.0, deadline - time.monotonic()))
            if child.is_alive():
                log.warning("api.process_killed", pid=child.pid)
                child.kill()
                child.join()
