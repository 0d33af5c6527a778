"""Tiny closed-loop load generator for measuring the simulator's ceiling.

``python -m simulator.loadgen --url http://127.0.0.1:9090 --connections 64 --duration 10``

Each connection keeps one request in flight over HTTP/1.1 keep-alive (no pipelining) with a
unique ``ref`` per message. It uses raw asyncio protocols and httptools so that the generator
itself is cheap; on a 2-core box pin it and the simulator to different cores with ``taskset``.
Only loopback targets make sense; the run is bounded by ``--duration``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from functools import partial
from urllib.parse import urlsplit

import httptools
import orjson

from simulator.server import new_event_loop


class _Client(asyncio.Protocol):
    """One keep-alive connection sending requests back to back."""

    def __init__(self, gen: _LoadGen, index: int) -> None:
        self.gen = gen
        self.index = index
        self.n = 0
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.sent_at = 0.0
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.gen.errors += 1
            if self.transport is not None:
                self.transport.close()

    def on_message_complete(self) -> None:
        gen = self.gen
        status = self.parser.get_status_code()
        gen.statuses[status] = gen.statuses.get(status, 0) + 1
        if status == 200:
            gen.messages += gen.per_request
        gen.latencies.append(time.perf_counter() - self.sent_at)
        if gen.running:
            self._send()
        elif self.transport is not None:
            self.transport.close()

    def _send(self) -> None:
        self.n += 1
        self.sent_at = time.perf_counter()
        assert self.transport is not None
        self.transport.write(self.gen.build(self.index, self.n))


class _LoadGen:
    def __init__(self, args: argparse.Namespace) -> None:
        u = urlsplit(args.url)
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or 80
        self.token = args.token
        self.batch = args.batch
        self.per_request = max(1, args.batch)
        self.running = True
        self.statuses: dict[int, int] = {}
        self.messages = 0
        self.errors = 0
        self.latencies: list[float] = []
        auth = f"Authorization: Bearer {self.token}\r\n".encode() if self.token else b""
        path = b"/v1/sms/batch" if self.batch else b"/v1/sms"
        self.head = (
            b"POST "
            + path
            + b" HTTP/1.1\r\nHost: "
            + self.host.encode()
            + b"\r\n"
            + auth
            + b"Content-Type: application/json\r\nContent-Length: "
        )
        self.text = args.text

    def build(self, conn: int, n: int) -> bytes:
        """Build the request bytes for message/batch number ``n`` of connection ``conn``."""
        if self.batch:
            recipients = [
                {"to": f"+4860{i:07d}", "ref": f"lg-{conn}-{n}-{i}"} for i in range(self.batch)
            ]
            body = orjson.dumps(
                {"from": "BENCH", "text": self.text, "parts": 1, "recipients": recipients}
            )
        else:
            body = b'{"to":"+48600100200","from":"BENCH","text":%s,"ref":"lg-%d-%d","parts":1}' % (
                orjson.dumps(self.text),
                conn,
                n,
            )
        return self.head + str(len(body)).encode() + b"\r\n\r\n" + body


async def _run(args: argparse.Namespace) -> dict[str, object]:
    gen = _LoadGen(args)
    loop = asyncio.get_running_loop()
    clients: list[_Client] = []
    for i in range(args.connections):
        _, proto = await loop.create_connection(partial(_Client, gen, i), gen.host, gen.port)
        clients.append(proto)
    if args.warmup > 0:
        await asyncio.sleep(args.warmup)
    start_msgs, start_lat = gen.messages, len(gen.latencies)
    start_status = dict(gen.statuses)
    t0 = time.perf_counter()
    await asyncio.sleep(args.duration)
    elapsed = time.perf_counter() - t0
    msgs = gen.messages - start_msgs
    lat = sorted(gen.latencies[start_lat:])
    gen.running = False
    await asyncio.wait([c.closed for c in clients], timeout=5)
    statuses = {
        str(k): v - start_status.get(k, 0)
        for k, v in sorted(gen.statuses.items())
        if v - start_status.get(k, 0)
    }
    requests = len(lat)

    def pct(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 3) if lat else 0.0

    return {
        "mode": "batch" if args.batch else "single",
        "batch": args.batch,
        "connections": args.connections,
        "duration_s": round(elapsed, 3),
        "requests": requests,
        "requests_per_s": round(requests / elapsed, 1),
        "messages_per_s": round(msgs / elapsed, 1),
        "statuses": statuses,
        "errors": gen.errors,
        "latency_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)},
    }


def main(argv: list[str] | None = None) -> int:
    """Run the load generator and print one JSON result line."""
    p = argparse.ArgumentParser(prog="python -m simulator.loadgen", description=__doc__)
    p.add_argument("--url", default="http://127.0.0.1:9090")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=0, help="recipients per batch (0 = single)")
    p.add_argument("--token", default=None)
    p.add_argument("--text", default="Hello from the load generator")
    args = p.parse_args(argv)
    loop = new_event_loop()
    try:
        result = loop.run_until_complete(_run(args))
    finally:
        loop.close()
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
