"""Free loopback ports for the processes a stack starts (``make run``, tests, benchmarks)."""

from __future__ import annotations

import random
import socket

_issued: set[int] = set()
_pick = random.SystemRandom()


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free loopback port, never the same one twice in this process.

    A port found by binding to port 0 is released before the server binds it, seconds later on
    a busy machine, so the kernel may give it to the next caller as well (a stack's simulator
    and API once got the same one) or to an outgoing connection in between. Ports are therefore
    drawn at random below the kernel's ephemeral range, which outgoing connections never use,
    and remembered.
    """
    high = min(_ephemeral_low(), 32768)
    for _ in range(500):
        port = _pick.randrange(15000, high)
        if port in _issued:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _issued.add(port)
        return port
    raise RuntimeError("no free loopback port found")
