"""A local webhook inbox for ``make run``: the demo account's webhooks land here.

It checks each request's signature (the secret is read from a file on every request, so a
rotation is picked up), answers 200 when it is valid and 401 when not (as a real receiver
should), and keeps the last 100 in memory: ``GET /`` lists them, newest first, with
``verified``. A new user sees a delivery report arrive without writing a receiver first.
Standard library only; loopback only.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from smsdispatch_client.webhooks import WebhookVerificationError, verify

KEEP = 100


class Inbox:
    """The received webhooks and the secret file they are verified with."""

    def __init__(self, secret_file: str) -> None:
        self.secret_file = secret_file
        self.items: deque[dict[str, Any]] = deque(maxlen=KEEP)
        self.lock = threading.Lock()

    def secrets(self) -> list[str]:
        """The secrets currently valid (one per line)."""
        try:
            with open(self.secret_file, encoding="utf-8") as fh:
                return [line.strip() for line in fh if line.strip()]
        except OSError:
            return []

    def receive(self, path: str, headers: dict[str, str], body: bytes) -> bool:
        """Verify and keep one webhook; whether its signature is valid."""
        try:
            verify(body, headers, self.secrets())
            verified, reason = True, None
        except WebhookVerificationError as exc:
            verified, reason = False, str(exc)
        try:
            payload: Any = json.loads(body)
        except ValueError:
            payload = None
        item = {
            "receivedAt": time.time(),
            "path": path,
            "webhookId": headers.get("webhook-id"),
            "verified": verified,
            "reason": reason,
            "payload": payload,
        }
        with self.lock:
            self.items.appendleft(item)
        summary = payload if isinstance(payload, dict) else {}
        # Ids and statuses only: the log never holds message texts.
        print(
            json.dumps(
                {
                    "event": "webhook.received",
                    "verified": verified,
                    "type": summary.get("type"),
                    "id": summary.get("id"),
                    "status": summary.get("statusName"),
                }
            ),
            flush=True,
        )
        return verified

    def listing(self) -> list[dict[str, Any]]:
        """Newest first."""
        with self.lock:
            return list(self.items)


def make_server(host: str, port: int, inbox: Inbox) -> ThreadingHTTPServer:
    """The HTTP server (not started)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_a: Any) -> None:
            pass  # one JSON line per webhook instead

        def _answer(self, status: int, doc: Any) -> None:
            body = json.dumps(doc, indent=2).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(length, 1 << 20))
            headers = {k.lower(): v for k, v in self.headers.items()}
            ok = inbox.receive(self.path, headers, body)
            self._answer(200 if ok else 401, {"verified": ok})

        def do_GET(self) -> None:
            self._answer(200, inbox.listing())

    return ThreadingHTTPServer((host, port), Handler)


def main(argv: list[str] | None = None) -> int:
    """``python -m devstack.webhook_inbox --port N --secret-file FILE``."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--secret-file", required=True)
    args = p.parse_args(argv)
    server = make_server(args.host, args.port, Inbox(args.secret_file))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
