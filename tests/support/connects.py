"""Seeing every connection a test makes: a socket-level recorder and a raw loopback listener.

:func:`recording_connects` records each ``socket.connect`` the process attempts (the
``socket.connect`` audit event, raised by every Python socket whichever library opened it:
aiohttp, the carrier client, the standard library) and refuses all that do not go to
loopback, so a guard that fails never sends a packet off the machine. :class:`Listener` is a
real TCP listener on loopback that counts the connections it accepts (and answers each with an
empty HTTP 200), so a test can also see that nothing arrived.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any

_active: list[list[tuple[str, int]]] = []
_installed = False


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event != "socket.connect" or not _active:
        return
    address = args[1]
    if not isinstance(address, tuple):
        return  # a Unix socket
    host, port = str(address[0]), int(address[1])
    _active[-1].append((host, port))
    try:
        loopback = ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        loopback = False
    mapped = host.startswith("::ffff:127.")
    if not (loopback or mapped):
        raise ConnectionRefusedError(f"test guard: no connections to {host} from tests")


@contextlib.contextmanager
def recording_connects() -> Iterator[list[tuple[str, int]]]:
    """Every ``(host, port)`` this process tries to connect to while inside the block."""
    global _installed
    if not _installed:
        sys.addaudithook(_hook)  # cannot be removed: it acts only inside this context
        _installed = True
    seen: list[tuple[str, int]] = []
    _active.append(seen)
    try:
        yield seen
    finally:
        _active.remove(seen)


class Listener:
    """A TCP listener on 127.0.0.1 (and ::1 on the same port when possible) that counts the
    connections it accepts; ``with Listener() as lst: lst.port``."""

    def __init__(self) -> None:
        self.accepted = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        v4 = socket.create_server(("127.0.0.1", 0))
        self.port = int(v4.getsockname()[1])
        self._socks.append(v4)
        with contextlib.suppress(OSError):
            self._socks.append(socket.create_server(("::1", self.port), family=socket.AF_INET6))
        self._threads = [threading.Thread(target=self._serve, args=(s,)) for s in self._socks]

    def _serve(self, server: socket.socket) -> None:
        server.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                self.accepted += 1
            with conn, contextlib.suppress(OSError):
                conn.settimeout(1)
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    def __enter__(self) -> Listener:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2)
        for s in self._socks:
            s.close()
