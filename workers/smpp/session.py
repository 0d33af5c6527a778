"""One SMPP bind over one TCP (or TLS) connection, in plain asyncio.

:class:`Session` is a connection's life: connect, bind, a window of outstanding requests
matched to their responses by sequence number, ``enquire_link`` when the line is idle,
``deliver_sm`` handed to the caller and answered only once the caller's handler returns (the
caller commits first), ``generic_nack`` both ways, and ``unbind`` on a graceful close. It never
reconnects: :mod:`workers.smpp.bind` does that.

What a submit can end as, and why it matters: a ``submit_sm_resp`` (accepted, or refused with
a status), or :class:`~workers.smpp.errors.SubmitUnanswered` when the request was written and
no answer came (timeout, connection lost): the SMSC may have the message, so the caller must
treat it as ambiguous. A submit that never left (no bind, window full before its deadline)
raises :class:`~workers.smpp.errors.NotBound` / :class:`WindowBusy`: certainly not sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import cast

import structlog

from workers.smpp import pdu as p
from workers.smpp.constants import (
    ESME_RINVCMDID,
    ESME_RINVCMDLEN,
    ESME_ROK,
    ESME_RSYSERR,
    ESME_RX_T_APPN,
)
from workers.smpp.errors import BindFailed, ConnectFailed, NotBound, SmppError, SubmitUnanswered

log = structlog.get_logger(component="smpp")
MAX_SEQUENCE = 0x7FFFFFFF

DeliverHandler = Callable[[p.DeliverSm], Awaitable[int]]
"""Takes a deliver_sm, commits it, returns the command_status for its deliver_sm_resp."""
LateHandler = Callable[[p.Pdu], None]
"""Gets a response that came after its request was given up as unanswered (same session)."""


class BindMode(StrEnum):
    """What a bind may do."""

    TRANSCEIVER = "transceiver"
    TRANSMITTER = "transmitter"
    RECEIVER = "receiver"


_BIND_PDU: dict[BindMode, type[p.Bind]] = {
    BindMode.TRANSCEIVER: p.BindTransceiver,
    BindMode.TRANSMITTER: p.BindTransmitter,
    BindMode.RECEIVER: p.BindReceiver,
}


@dataclass(frozen=True)
class SessionConfig:
    """Where and how to bind; timings in seconds."""

    host: str
    port: int
    system_id: str
    password: str = field(repr=False)
    system_type: str = ""
    mode: BindMode = BindMode.TRANSCEIVER
    tls: ssl.SSLContext | None = None
    window: int = 10  # outstanding submit_sm at once on this bind
    response_timeout_s: float = 10.0  # a request with no response by then is unanswered
    bind_timeout_s: float = 10.0
    enquire_link_s: float = 30.0  # idle this long → enquire_link
    unbind_timeout_s: float = 2.0
    drain_timeout_s: float = 5.0  # graceful close: wait this long for outstanding answers
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""


class WindowBusy(SmppError):
    """No window slot came free before the caller's deadline: nothing was sent."""


class Session(asyncio.Protocol):
    """One bind. Build with :meth:`open`; use :meth:`submit`, :meth:`query`, :meth:`close`."""

    def __init__(
        self,
        config: SessionConfig,
        on_deliver: DeliverHandler | None = None,
        on_late: LateHandler | None = None,
    ) -> None:
        self.config = config
        self.on_deliver = on_deliver
        self.on_late = on_late
        self.bound = False
        self.closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._frames = p.FrameReader()
        self._seq = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future[p.Pdu], asyncio.TimerHandle]] = {}
        self._window = asyncio.Semaphore(config.window)
        self._in_window = 0
        self._last_heard = time.monotonic()
        self._keepalive: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._closing = False

    # -- life ----------------------------------------------------------------------------------
    @classmethod
    async def open(
        cls,
        config: SessionConfig,
        on_deliver: DeliverHandler | None = None,
        on_late: LateHandler | None = None,
    ) -> Session:
        """Connect and bind. Raises :class:`ConnectFailed` or :class:`BindFailed`."""
        loop = asyncio.get_running_loop()
        session = cls(config, on_deliver, on_late)
        try:
            async with asyncio.timeout(config.bind_timeout_s):
                await loop.create_connection(
                    lambda: session,
                    config.host,
                    config.port,
                    ssl=config.tls,
                    server_hostname=config.host if config.tls else None,
                )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise ConnectFailed(f"{type(exc).__name__}: {exc}") from exc
        bind = _BIND_PDU[config.mode](
            system_id=config.system_id,
            password=config.password,
            system_type=config.system_type,
            addr_ton=config.addr_ton,
            addr_npi=config.addr_npi,
            address_range=config.address_range,
        )
        try:
            resp = await session.request(bind, config.bind_timeout_s)
        except SubmitUnanswered as exc:
            session.abort()
            raise ConnectFailed(f"no bind response: {exc.reason}") from exc
        if resp.status != ESME_ROK:
            session.abort()
            raise BindFailed(resp.status)
        session.bound = True
        session._keepalive = loop.create_task(session._keep_alive())
        log.info("smpp.bound", host=config.host, port=config.port, mode=str(config.mode))
        return session

    async def close(self) -> None:
        """Graceful: stop taking submits, let outstanding answers arrive (up to the drain
        timeout), unbind, close."""
        if self._closing or self._transport is None:
            await asyncio.shield(self.closed)
            return
        self.bound = False
        self._closing = True
        deadline = self._loop.time() + self.config.drain_timeout_s
        while self._pending and self._loop.time() < deadline and not self.closed.done():
            await asyncio.sleep(0.01)
        if not self.closed.done():
            with contextlib.suppress(SmppError):  # closing anyway
                await self.request(p.Unbind(), self.config.unbind_timeout_s, force=True)
        self.abort()
        await asyncio.shield(self.closed)

    def abort(self) -> None:
        """Drop the connection now (outstanding requests end unanswered)."""
        self.bound = False
        if self._transport is not None:
            self._transport.abort()

    @property
    def in_window(self) -> int:
        """Outstanding submit_sm now."""
        return self._in_window

    # -- requests ------------------------------------------------------------------------------
    async def submit(self, sm: p.SubmitSm, deadline: float | None = None) -> p.SubmitSmResp:
        """Send one submit_sm within the window; its response (``status`` may be an error).

        ``deadline`` (``loop.time()``) bounds the wait for a window slot: past it,
        :class:`WindowBusy`. Unanswered → :class:`SubmitUnanswered` (ambiguous).
        """
        if not self.bound:
            raise NotBound("not bound")
        if self._window.locked():
            wait = None if deadline is None else max(0.0, deadline - self._loop.time())
            try:
                await asyncio.wait_for(self._window.acquire(), wait)
            except TimeoutError:
                raise WindowBusy("window full") from None
        else:
            await self._window.acquire()
        self._in_window += 1
        try:
            if not self.bound:
                raise NotBound("bind lost while waiting for the window")
            resp = await self.request(sm, self.config.response_timeout_s)
        finally:
            self._in_window -= 1
            self._window.release()
        if isinstance(resp, p.SubmitSmResp):
            return resp
        # generic_nack: the SMSC could not read it, so it did not take it.
        return p.SubmitSmResp(resp.sequence, resp.status or ESME_RSYSERR)

    async def query(self, message_id: str, source: p.SubmitSm | None = None) -> p.QuerySmResp:
        """``query_sm`` for a message we submitted (``source``: its submit_sm, whose
        source address the SMSC may need)."""
        if not self.bound:
            raise NotBound("not bound")
        q = p.QuerySm(message_id=message_id)
        if source is not None:
            q.source_addr_ton, q.source_addr_npi = source.source_addr_ton, source.source_addr_npi
            q.source_addr = source.source_addr
        resp = await self.request(q, self.config.response_timeout_s)
        if isinstance(resp, p.QuerySmResp):
            return resp
        return p.QuerySmResp(resp.sequence, resp.status or ESME_RSYSERR)

    async def request(self, pdu: p.Pdu, timeout: float, force: bool = False) -> p.Pdu:
        """Write a request and wait for its response (or generic_nack)."""
        transport = self._transport
        if transport is None or transport.is_closing() or (self._closing and not force):
            raise NotBound("connection closed")
        pdu.sequence = self._next_sequence()
        data = p.encode(pdu)  # PduError leaves before anything is written
        fut: asyncio.Future[p.Pdu] = self._loop.create_future()
        timer = self._loop.call_later(timeout, _expire, fut, "timeout")
        self._pending[pdu.sequence] = (fut, timer)
        transport.write(data)
        try:
            return await fut
        except SubmitUnanswered as exc:
            exc.sequence = pdu.sequence  # a late answer to it can still be matched
            raise
        finally:
            self._pending.pop(pdu.sequence, None)
            timer.cancel()

    def _next_sequence(self) -> int:
        seq = next(self._seq)
        if seq > MAX_SEQUENCE:  # sequence numbers run 1..0x7FFFFFFF, then start again
            self._seq = itertools.count(2)
            seq = 1
        return seq

    # -- keep-alive ----------------------------------------------------------------------------
    async def _keep_alive(self) -> None:
        period = self.config.enquire_link_s
        while not self.closed.done():
            idle = time.monotonic() - self._last_heard
            if idle < period:
                await asyncio.sleep(period - idle)
                continue
            try:
                await self.request(p.EnquireLink(), self.config.response_timeout_s, force=True)
            except SubmitUnanswered:
                log.warning("smpp.enquire_link_unanswered", host=self.config.host)
                self.abort()
                return
            except SmppError:
                return

    # -- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._last_heard = time.monotonic()
        try:
            frames = self._frames.feed(data)
        except p.PduError as exc:
            log.warning("smpp.stream_broken", reason=str(exc))
            self.abort()
            return
        for frame in frames:
            self._frame(frame)

    def _frame(self, frame: bytes) -> None:
        try:
            pdu = p.decode(frame)
        except p.PduError as exc:
            # Framed but unreadable: tell the SMSC (generic_nack with its sequence number).
            log.warning("smpp.pdu_unreadable", reason=str(exc))
            seq = int.from_bytes(frame[12:16], "big")
            self._reply(p.GenericNack(seq, ESME_RINVCMDLEN))
            return
        if pdu.is_response:
            pending = self._pending.get(pdu.sequence)
            if pending is not None and not pending[0].done():
                pending[0].set_result(pdu)
            else:
                log.info("smpp.late_response", command=type(pdu).__name__, sequence=pdu.sequence)
                if self.on_late is not None:
                    self.on_late(pdu)
            return
        if isinstance(pdu, p.DeliverSm):
            task = self._loop.create_task(self._deliver(pdu))
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        elif isinstance(pdu, p.EnquireLink):
            self._reply(p.EnquireLinkResp(pdu.sequence))
        elif isinstance(pdu, p.Unbind):
            self.bound = False
            self._closing = True
            self._reply(p.UnbindResp(pdu.sequence))
            log.info("smpp.unbound_by_smsc", host=self.config.host)
            self._loop.call_later(0.05, self.abort)
        else:
            self._reply(p.GenericNack(pdu.sequence, ESME_RINVCMDID))

    async def _deliver(self, pdu: p.DeliverSm) -> None:
        # Not taken (no handler, or it failed before committing): a temporary error, so the
        # SMSC keeps the message and delivers it again later.
        status = ESME_RX_T_APPN
        if self.on_deliver is not None:
            try:
                status = await self.on_deliver(pdu)
            except Exception as exc:
                log.warning("smpp.deliver_failed", error=type(exc).__name__)
        self._reply(p.DeliverSmResp(pdu.sequence, status))

    def _reply(self, pdu: p.Pdu) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(p.encode(pdu))

    def connection_lost(self, exc: Exception | None) -> None:
        self.bound = False
        for fut, timer in list(self._pending.values()):
            timer.cancel()
            _expire(fut, "disconnected")
        if self._keepalive is not None:
            self._keepalive.cancel()
        if not self.closed.done():
            self.closed.set_result("closed" if exc is None else type(exc).__name__)


def _expire(fut: asyncio.Future[p.Pdu], reason: str) -> None:
    if not fut.done():
        fut.set_exception(SubmitUnanswered(reason))
