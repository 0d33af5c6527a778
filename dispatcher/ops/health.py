"""A small threaded HTTP server for ``/metrics``, ``/healthz`` and ``/readyz`` of processes that
have no web framework (the exporter, the worker pools), and the readiness checks they share.

Only ``GET`` of the registered paths is answered; everything else is a 404. Request logging is
off: probes and scrapes would drown the process's own logs.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import redis
from sqlalchemy import Engine

from dispatcher.store.db import StoreUnavailable, ping, ping_url

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

Reply = tuple[int, str, bytes]
Route = Callable[[], Reply]


def metrics_route(registry: CollectorRegistry) -> Route:
    """``/metrics``: the registry in the text exposition format."""
    # Imported here, not at the top: a worker pool imports this module before it has chosen
    # its multiprocess directory, and prometheus_client fixes its value class at import.
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    def route() -> Reply:
        return 200, CONTENT_TYPE_LATEST, generate_latest(registry)

    return route


def json_route(check: Callable[[], dict[str, str]]) -> Route:
    """A probe: 200 when every check says ``ok``, else 503; the checks as JSON either way."""

    def route() -> Reply:
        checks = check()
        ok = all(v == "ok" for v in checks.values())
        body = {"status": "ok" if ok else "unavailable", "checks": checks}
        return (200 if ok else 503), "application/json", json.dumps(body).encode()

    return route


def alive() -> Reply:
    """``/healthz``: the process answers."""
    return 200, "application/json", b'{"status": "ok"}'


def check_redis(client: redis.Redis) -> str:
    """``ok`` or the error's class name."""
    try:
        client.ping()
    except Exception as exc:  # a probe reports, it does not raise
        return type(exc).__name__
    return "ok"


def check_database(target: Engine | str) -> str:
    """``ok`` or the error's class name; ``target`` an engine, or a URL to open a connection
    to for this check alone (a process that holds no engine)."""
    try:
        ping(target) if isinstance(target, Engine) else ping_url(target)
    except StoreUnavailable as exc:  # a probe reports, it does not raise
        return str(exc)  # the driver's error class
    except Exception as exc:
        return type(exc).__name__
    return "ok"


class _Handler(BaseHTTPRequestHandler):
    routes: Mapping[str, Route] = {}

    def do_GET(self) -> None:
        route = self.routes.get(self.path.split("?", 1)[0])
        if route is None:
            status, ctype, body = 404, "text/plain", b"not found\n"
        else:
            try:
                status, ctype, body = route()
            except Exception as exc:  # a broken collector must not kill the server thread
                status, ctype, body = 500, "text/plain", f"{type(exc).__name__}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: scrapes and probes are not log events."""


class HealthServer:
    """A daemon-threaded HTTP server; :meth:`close` stops it."""

    def __init__(
        self, host: str, port: int, routes: Mapping[str, Route], name: str = "health-http"
    ) -> None:
        handler = type("Handler", (_Handler,), {"routes": dict(routes)})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, name=name, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port."""
        self.httpd.shutdown()
        self.httpd.server_close()

    def close_inherited_socket(self) -> None:
        """In a forked child: close this copy of the listening socket (the parent keeps
        serving; the child has no serving thread, so there is nothing to shut down)."""
        self.httpd.socket.close()
