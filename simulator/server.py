"""Simulator lifecycle: start/stop inside a running loop, or in a background thread for tests."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from simulator.api import SimApp
from simulator.config import SimConfig
from simulator.http import HttpServer


def new_event_loop() -> asyncio.AbstractEventLoop:
    """Return a uvloop event loop when uvloop is importable, else a default asyncio loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency, but stay usable without
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class SimulatorServer:
    """One simulator instance: the app (state, faults, emitter) plus its HTTP listener."""

    def __init__(
        self,
        config: SimConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        reuse_port: bool = False,
    ) -> None:
        self.app = SimApp(config)
        self.host = host
        self.requested_port = port
        self.reuse_port = reuse_port
        self.port = 0
        self.http = HttpServer(self.app.router.dispatch, self.app.on_handler_error)
        self._started = False

    @property
    def config(self) -> SimConfig:
        """The live configuration."""
        return self.app.config

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:9090``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Start the outbound emitter and listen; :attr:`port` holds the bound port after."""
        await self.app.emitter.start()
        try:
            self.port = await self.http.listen(
                self.host, self.requested_port, reuse_port=self.reuse_port
            )
        except BaseException:
            await self.app.emitter.stop()
            raise
        self._started = True

    async def stop(self) -> None:
        """Stop listening, drop connections and outbound work."""
        if not self._started:
            return
        self._started = False
        await self.http.close()
        await self.app.emitter.stop()


class SimulatorThread:
    """Runs a :class:`SimulatorServer` on its own event loop in a daemon thread.

    Usage::

        with SimulatorThread(SimConfig(tps_cap=100)) as sim:
            httpx.post(sim.url + "/v1/sms", json={...})
            sim.call(lambda app: app.state.stats())   # run code on the simulator's loop
    """

    def __init__(
        self, config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.server = SimulatorServer(config, host, port)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """Base URL of the running simulator."""
        return self.server.url

    @property
    def port(self) -> int:
        """Bound port."""
        return self.server.port

    def start(self, timeout: float = 10.0) -> SimulatorThread:
        """Start the thread and wait until the server listens."""
        self._thread = threading.Thread(target=self._run, name="simulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("simulator did not start in time")
        if self._error is not None:
            raise RuntimeError("simulator failed to start") from self._error
        return self

    def _run(self) -> None:
        loop = new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _main(self) -> None:
        self._stopped = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stopped.wait()
        finally:
            await self.server.stop()

    def call(self, fn: Callable[[SimApp], Any], timeout: float = 10.0) -> Any:
        """Run ``fn(app)`` on the simulator's loop and return its result (thread-safe)."""
        assert self._loop is not None

        async def run() -> Any:
            return fn(self.server.app)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server and join the thread."""
        loop, stopped = self._loop, self._stopped
        if loop is not None and stopped is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopped.set)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
