"""uvicorn's httptools protocol, writing each response in one ``send`` instead of two.

uvicorn writes a response's head as soon as the app sends ``http.response.start`` and its body
on ``http.response.body``: two ``write`` calls, two system calls, two TCP segments on the wire
for a 200-byte answer. Here the transport's writes are held until the end of the event-loop
iteration (or until they reach :data:`FLUSH_BYTES`) and go out together. Nothing waits longer
than the current iteration: the app's two sends happen in the same one.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

FLUSH_BYTES = 64 * 1024  # a streamed body goes out at once past this: no unbounded buffering


class CoalescingTransport:
    """A transport proxy that joins the writes of one loop iteration into one."""

    __slots__ = ("_loop", "_pending", "_size", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data``; the iteration's writes leave together."""
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))
        self._size += len(data)
        if self._size >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write what is queued now (a no-op when nothing is)."""
        if not self._pending:
            return
        pending, self._pending, self._size = self._pending, [], 0
        if not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        """Flush, then close: an answer followed by ``Connection: close`` still arrives."""
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        # Everything else (is_closing, abort, pause_reading, get_extra_info, ...) is the
        # transport's own. abort() drops what is queued, as it drops the transport's buffer.
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a :class:`CoalescingTransport`."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Wrap the connection's transport, then let uvicorn set the connection up."""
        wrapped: Any = CoalescingTransport(transport, self.loop)  # type: ignore[arg-type]
        super().connection_made(wrapped)
