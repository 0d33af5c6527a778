"""A webhook receiver for tests: a loopback HTTP server that records every request and answers
from a per-path script (status, headers, body, delay)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Answer:
    """One scripted answer."""

    status: int = 200
    body: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float


class _Server(ThreadingHTTPServer):
    # The default backlog (5) drops the SYNs of a burst of concurrent webhook posts; the
    # retransmission a second later can outlast the sender's timeout, and a webhook that was
    # received gets posted again.
    request_queue_size = 128


class Receiver:
    """Start with ``with Receiver() as r:``; ``r.url("/a")`` is an address to register."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, list[Answer]] = {}
        self._received: list[Received] = []
        self._server = _Server((host, port), self._handler())
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- set-up ---------------------------------------------------------------------------------
    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self._server.server_address[1])

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        """The URL of ``path`` on this receiver."""
        return f"http://{host}:{self.port}{path}"

    def script(self, path: str, *answers: Answer | int) -> None:
        """Answer requests to ``path`` with ``answers`` in order; the last one repeats."""
        with self._lock:
            self._scripts[path] = [a if isinstance(a, Answer) else Answer(a) for a in answers]

    # -- inspection -----------------------------------------------------------------------------
    def requests(self, path: str | None = None) -> list[Received]:
        """Requests received so far (to ``path`` only, when given)."""
        with self._lock:
            return [r for r in self._received if path is None or r.path == path]

    def wait_for(self, n: int, path: str | None = None, timeout: float = 30.0) -> list[Received]:
        """Wait until at least ``n`` requests (to ``path``) arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.requests(path)
            if len(got) >= n:
                return got
            time.sleep(0.02)
        raise AssertionError(f"receiver: {len(self.requests(path))} of {n} requests to {path}")

    def __iter__(self) -> Iterator[Received]:
        return iter(self.requests())

    # -- serving --------------------------------------------------------------------------------
    def _next_answer(self, path: str) -> Answer:
        with self._lock:
            script = self._scripts.get(path)
            if not script:
                return Answer()
            return script.pop(0) if len(script) > 1 else script[0]

    def _record(self, r: Received) -> None:
        with self._lock:
            self._received.append(r)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver._record(Received(path, headers, body, time.time()))
                answer = receiver._next_answer(path)
                if answer.delay_s:
                    time.sleep(answer.delay_s)
                data = answer.body.encode()
                try:
                    self.send_response(answer.status)
                    for k, v in answer.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *_args: Any) -> None:
                return

        return Handler
