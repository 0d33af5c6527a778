"""``--workers N``: N forked simulator processes sharing one port through ``SO_REUSEPORT``.

The kernel spreads *connections* over the workers, so each worker keeps its own records,
counters and token bucket (enforcing ``tps_cap / N``). To keep the control API and the
carrier-side lookups correct, every worker also listens on a private loopback port, and
the public endpoints that need a global view fan out to all workers and merge:

* ``GET /_sim/stats`` sums counters and recomputes duplicate figures from per-ref counts;
* ``GET /_sim/submits`` merges every worker's records by time;
* ``POST /_sim/config`` and ``POST /_sim/reset`` are applied on every worker;
* ``GET /v1/sms?ref=`` and ``POST /v1/sms/lookup`` search every worker.

Use it for throughput beyond one core; for exact rate limiting prefer a single worker, since
uneven connection spread makes the effective global cap lower than ``tps_cap``.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.connection
import signal
import socket
import sys
import time
from collections import Counter
from typing import Any

import aiohttp
import orjson

from simulator.api import UNAUTHORIZED, SimApp
from simulator.config import SimConfig
from simulator.http import HttpServer, Reply, Request, Router, ok_json, response
from simulator.server import SimulatorServer, new_event_loop

_READY_TIMEOUT_S = 20.0


class ClusterControl:
    """Fan-out handlers installed on a worker's public router."""

    def __init__(self, app: SimApp, peer_ports: list[int]) -> None:
        self.app = app
        self.peers = [f"http://127.0.0.1:{p}" for p in peer_ports]
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Create the client session used to reach the other workers."""
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=60),
        )

    async def stop(self) -> None:
        """Close the client session."""
        if self.session is not None:
            await self.session.close()
            self.session = None

    def install(self, router: Router) -> None:
        """Replace the endpoints that need a global view with fan-out versions."""
        router.add("GET", "/_sim/stats", self.stats)
        router.add("GET", "/_sim/submits", self.submits)
        router.add("GET", "/_sim/refcounts", self.refcounts)
        router.add("POST", "/_sim/config", self.broadcast)
        router.add("POST", "/_sim/reset", self.broadcast)
        router.add("GET", "/v1/sms", self.get_by_ref)
        router.add("POST", "/v1/sms/lookup", self.lookup)

    async def _call(
        self, method: str, path: str, req: Request | None = None
    ) -> list[tuple[int, bytes]]:
        assert self.session is not None
        headers: dict[str, str] = {}
        if req is not None and req.auth is not None:
            headers["Authorization"] = req.auth.decode("latin-1")
        body = req.body if req is not None and method == "POST" else None
        query = req.query.decode("latin-1") if req is not None and req.query else ""
        url_path = f"{path}?{query}" if query else path

        async def one(base: str) -> tuple[int, bytes]:
            assert self.session is not None
            async with self.session.request(
                method, base + url_path, data=body, headers=headers
            ) as resp:
                return resp.status, await resp.read()

        return list(await asyncio.gather(*(one(b) for b in self.peers)))

    def _unauthorized(self, req: Request) -> Reply | None:
        app = self.app
        if app.config.token and not app._authorized(req):
            app.state.counters.unauthorized += 1
            return UNAUTHORIZED
        return None

    def stats(self, req: Request) -> Reply:
        """Merged ``/_sim/stats`` of every worker."""

        async def run() -> bytes:
            results = await self._call("GET", "/_sim/stats")
            counts = await self._call("GET", "/_sim/refcounts")
            merged: dict[str, Any] = {}
            per_second: Counter[str] = Counter()
            firsts: list[float] = []
            lasts: list[float] = []
            for _, body in results:
                doc = orjson.loads(body)
                for k, v in doc.items():
                    if k == "per_second":
                        per_second.update(v)
                    elif k == "first_at":
                        if v is not None:
                            firsts.append(v)
                    elif k == "last_at":
                        if v is not None:
                            lasts.append(v)
                    elif isinstance(v, int | float):
                        merged[k] = merged.get(k, 0) + v
            refs: Counter[str] = Counter()
            for _, body in counts:
                refs.update(orjson.loads(body))
            merged["unique_refs"] = len(refs)
            merged["duplicate_refs"] = sum(1 for c in refs.values() if c > 1)
            merged["duplicate_submits"] = sum(c - 1 for c in refs.values())
            merged["per_second"] = dict(sorted(per_second.items(), key=lambda kv: int(kv[0])))
            merged["first_at"] = min(firsts) if firsts else None
            merged["last_at"] = max(lasts) if lasts else None
            merged["workers"] = len(self.peers)
            return ok_json(orjson.dumps(merged))

        return run()

    def refcounts(self, req: Request) -> Reply:
        """Merged ``{ref: submits}`` of every worker."""

        async def run() -> bytes:
            refs: Counter[str] = Counter()
            for _, body in await self._call("GET", "/_sim/refcounts"):
                refs.update(orjson.loads(body))
            return ok_json(orjson.dumps(dict(refs)))

        return run()

    def submits(self, req: Request) -> Reply:
        """Every worker's records merged by receive time (``offset``/``limit`` apply after)."""

        async def run() -> bytes:
            rows: list[tuple[float, bytes]] = []
            for status, body in await self._call("GET", "/_sim/submits"):
                if status != 200:
                    return response(status, body)
                for line in body.splitlines():
                    if line:
                        rows.append((orjson.loads(line)["at"], line))
            rows.sort(key=lambda r: r[0])
            q = req.query.decode("latin-1")
            params = dict(p.partition("=")[::2] for p in q.split("&") if p)
            try:
                offset = int(params.get("offset", "0"))
                limit = int(params["limit"]) if "limit" in params else None
            except ValueError:
                return response(400, b'{"error":{"code":"invalid_request"}}')
            end = None if limit is None else offset + limit
            out = b"".join(line + b"\n" for _, line in rows[offset:end])
            return response(200, out, b"application/x-ndjson")

        return run()

    def broadcast(self, req: Request) -> Reply:
        """Apply a config change or reset on every worker; answer with the first worker's reply
        (or the first error)."""

        async def run() -> bytes:
            results = await self._call("POST", req.path.decode(), req)
            for status, body in results:
                if status != 200:
                    return response(status, body)
            status, body = results[0]
            return response(status, body)

        return run()

    def get_by_ref(self, req: Request) -> Reply:
        """``GET /v1/sms?ref=`` across workers: the earliest record, total submit count."""
        denied = self._unauthorized(req)
        if denied is not None:
            return denied

        async def run() -> bytes:
            found: list[dict[str, Any]] = []
            fallback: tuple[int, bytes] | None = None
            for status, body in await self._call("GET", "/v1/sms", req):
                if status == 200:
                    found.append(orjson.loads(body))
                elif fallback is None or status != 404:
                    fallback = (status, body)
            if not found:
                assert fallback is not None
                return response(*fallback)
            best = min(found, key=lambda d: d["submitted_at"])
            best["submits"] = sum(d["submits"] for d in found)
            return ok_json(orjson.dumps(best))

        return run()

    def lookup(self, req: Request) -> Reply:
        """``POST /v1/sms/lookup`` across workers."""
        denied = self._unauthorized(req)
        if denied is not None:
            return denied

        async def run() -> bytes:
            merged: dict[str, str] = {}
            for status, body in await self._call("POST", "/v1/sms/lookup", req):
                if status != 200:
                    return response(status, body)
                for ref, cid in orjson.loads(body)["found"].items():
                    merged.setdefault(ref, cid)
            return ok_json(orjson.dumps({"found": merged}))

        return run()


async def _worker(
    index: int,
    workers: int,
    config: SimConfig,
    host: str,
    port: int,
    conn: multiprocessing.connection.Connection,
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = SimulatorServer(config, host, port, reuse_port=True)
    app = server.app
    app.faults.share = 1.0 / workers
    app.state.set_id_sequence(index + 1, workers)
    app.emitter.set_id_sequence(index + 1, workers)
    app.faults.seed_salt = app.emitter.seed_salt = f":worker{index}"
    app.faults.reseed()
    app.emitter.reseed()
    app.faults.reset_bucket()
    local_router = Router()
    app.register_routes(local_router)
    private = HttpServer(local_router.dispatch, app.on_handler_error)
    try:
        await server.start()
        private_port = await private.listen("127.0.0.1", 0)
    except OSError as exc:
        conn.send(("error", str(exc)))
        await server.stop()
        return
    conn.send(("ready", private_port))
    msg = await loop.run_in_executor(None, conn.recv)
    control = ClusterControl(app, list(msg[1]))
    await control.start()
    control.install(app.router)
    try:
        await stop.wait()
    finally:
        await server.stop()
        await private.close()
        await control.stop()


def _worker_main(
    index: int,
    workers: int,
    config: dict[str, Any],
    host: str,
    port: int,
    conn: multiprocessing.connection.Connection,
    reserved: socket.socket,
) -> None:
    reserved.close()
    cfg = SimConfig()
    cfg.apply(config)
    loop = new_event_loop()
    try:
        loop.run_until_complete(_worker(index, workers, cfg, host, port, conn))
    finally:
        loop.close()


def run_cluster(config: SimConfig, host: str, port: int, workers: int, logger: Any) -> int:
    """Fork ``workers`` simulator processes on one port; return the exit code when stopped."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    reserved = socket.socket(family, socket.SOCK_STREAM)
    reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        reserved.bind((host, port))
    except OSError as exc:
        print(f"simulator: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        reserved.close()
        return 1
    port = int(reserved.getsockname()[1])
    ctx = multiprocessing.get_context("fork")
    procs: list[Any] = []
    conns: list[multiprocessing.connection.Connection] = []
    for i in range(workers):
        parent_end, child_end = ctx.Pipe()
        proc = ctx.Process(
            target=_worker_main,
            args=(i, workers, config.to_dict(), host, port, child_end, reserved),
            name=f"simulator-worker-{i}",
        )
        proc.start()
        child_end.close()
        procs.append(proc)
        conns.append(parent_end)

    stopping = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    old_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    code = 0
    try:
        peers: list[int] = []
        for c in conns:
            if not c.poll(_READY_TIMEOUT_S):
                raise RuntimeError("a worker did not start in time")
            kind, value = c.recv()
            if kind != "ready":
                raise RuntimeError(f"a worker failed to start: {value}")
            peers.append(int(value))
        for c in conns:
            c.send(("peers", peers))
        reserved.close()
        logger.info("simulator.listening", host=host, port=port, workers=workers)
        sys.stdout.flush()
        while not stopping:
            if any(not p.is_alive() for p in procs):
                print("simulator: a worker exited unexpectedly", file=sys.stderr)
                code = 1
                break
            time.sleep(0.2)
    except (RuntimeError, EOFError, OSError) as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        code = 1
    finally:
        reserved.close()
        for p in procs:
            if p.is_alive():
                p.terminate()
        deadline = time.monotonic() + 10
        for p in procs:
            p.join(max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join(2)
        for s, h in old_handlers.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(s, h)
    logger.info("simulator.stopped", port=port)
    sys.stdout.flush()
    return code
