"""A bind kept up: reconnect with backoff and jitter, report state changes, unbind on stop.

:class:`Bind` owns at most one :class:`~workers.smpp.session.Session` at a time. When the
connection drops, every outstanding submit ends as unanswered (ambiguous) in the session; the
bind waits a backoff (exponential, with jitter so that many binds do not reconnect in step)
and binds again. A refused bind is reported (``on_state``) and retried more slowly when the
credentials are wrong: the SMSC will not change its mind soon, and hammering it with bad
passwords gets accounts locked.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from workers.smpp import pdu as p
from workers.smpp.errors import BindFailed, ConnectFailed, NotBound
from workers.smpp.session import DeliverHandler, LateHandler, Session, SessionConfig

log = structlog.get_logger(component="smpp")


@dataclass(frozen=True)
class Backoff:
    """Reconnect delays: ``base · 2ⁿ`` capped at ``cap``, each drawn in [½, 1] of that."""

    base_s: float = 0.5
    cap_s: float = 30.0
    credentials_cap_s: float = 300.0  # after a refused password or system_id

    def delay(self, attempt: int, rng: random.Random, credentials: bool = False) -> float:
        """Seconds before reconnect ``attempt`` (1 for the first after a loss)."""
        cap = self.credentials_cap_s if credentials else self.cap_s
        full = min(cap, self.base_s * 2 ** max(0, attempt - 1))
        return full * (0.5 + rng.random() / 2)


StateListener = Callable[[str, str], None]
"""Called with ``(state, detail)``: ``up``, ``down`` (reason), ``bind_failed`` (status name)."""


class Bind:
    """One bind, reconnected until :meth:`stop`."""

    def __init__(
        self,
        config: SessionConfig,
        on_deliver: DeliverHandler | None = None,
        on_state: StateListener | None = None,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
        on_late: LateHandler | None = None,
    ) -> None:
        self.config = config
        self.on_deliver = on_deliver
        self.on_late = on_late
        self.on_state = on_state
        self.backoff = backoff or Backoff()
        self.rng = rng or random.Random()
        self.session: Session | None = None
        self.last_error: str = ""
        self._up = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start binding in the background."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    @property
    def bound(self) -> bool:
        """Whether a bound session is up now."""
        return self.session is not None and self.session.bound

    async def wait_bound(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the bind to be up."""
        try:
            async with asyncio.timeout(timeout):
                await self._up.wait()
        except TimeoutError:
            return False
        return self.bound

    async def submit(self, sm: p.SubmitSm, deadline: float | None = None) -> p.SubmitSmResp:
        """Submit on the current session; :class:`NotBound` when none is up."""
        session = self.session
        if session is None or not session.bound:
            raise NotBound(self.last_error or "not bound")
        return await session.submit(sm, deadline)

    async def stop(self) -> None:
        """Unbind gracefully and stop reconnecting."""
        self._stopping.set()
        if self.session is not None:
            await self.session.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _state(self, state: str, detail: str = "") -> None:
        if self.on_state is not None:
            self.on_state(state, detail)

    async def _run(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            credentials = False
            try:
                session = await Session.open(self.config, self.on_deliver, self.on_late)
            except BindFailed as exc:
                self.last_error = str(exc)
                credentials = exc.credentials
                log.error(
                    "smpp.bind_refused",
                    host=self.config.host,
                    system_id=self.config.system_id,
                    status=str(exc),
                )
                self._state("bind_failed", str(exc))
            except ConnectFailed as exc:
                self.last_error = str(exc)
                log.warning("smpp.connect_failed", host=self.config.host, error=str(exc))
                self._state("down", str(exc))
            else:
                attempt = 0
                self.session = session
                self.last_error = ""
                self._up.set()
                self._state("up")
                reason = await asyncio.shield(session.closed)
                self._up.clear()
                self.last_error = f"connection closed: {reason}"
                if self._stopping.is_set():
                    return
                log.warning("smpp.connection_lost", host=self.config.host, reason=reason)
                self._state("down", reason)
            attempt += 1
            delay = self.backoff.delay(attempt, self.rng, credentials)
            try:
                async with asyncio.timeout(delay):
                    await self._stopping.wait()
            except TimeoutError:
                pass
