"""The session holder of one SMPP connection: its binds, its windows, the lanes' requests.

One long-lived process (``smsdispatch smpp``, :mod:`workers.smpp.process`) runs a
:class:`ConnectionHolder` per ``smpp`` connection. It

* owns bind slots through Redis leases (:mod:`workers.smpp.leases`): never more binds open for
  the connection over every host than the operator allows; a slot whose lease is lost is
  closed at once;
* keeps a :class:`~workers.smpp.bind.Bind` per slot (reconnect with backoff and jitter,
  enquire_link, generic_nack, unbind on stop);
* pops requests from the lanes' queues only while a window slot of that lane is free: each
  bind keeps ``priority_window`` of its window for the priority lane, so OTPs never wait
  behind bulk's outstanding submits;
* marks each message before its first submit_sm leaves and after its answer
  (:mod:`workers.smpp.handoff`), so a reply lost with a sender is never a blind resend;
* retries ``ESME_RTHROTTLED`` / ``ESME_RMSGQFUL`` itself (the SMSC did not take it) and lowers
  the share of ``tps`` the limiter grants; the share recovers while no throttling comes;
* commits deliver_sm before answering it (:mod:`workers.smpp.deliveries`).

Longer than 400 lines on purpose: the tasks of one holder (binds, leases, windows, the lanes'
requests) share its state under one event loop; split, that shared state would be spread
over files.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from redis.exceptions import RedisError

from dispatcher.routing import ConnectionConfig
from dispatcher.routing.model import SmppConfig
from workers.connectors.registry import SMPP_QUEUE_SHARE
from workers.smpp import handoff as h
from workers.smpp import metrics as m
from workers.smpp import pdu as p
from workers.smpp.bind import Bind
from workers.smpp.coding import Concat, DefaultAlphabet, EncodingRules, build_submits
from workers.smpp.constants import ESME_ROK
from workers.smpp.errors import THROTTLE_PAUSE_S, THROTTLING, SmppError, SubmitUnanswered
from workers.smpp.leases import BindLeases
from workers.smpp.session import BindMode, SessionConfig, WindowBusy

log = structlog.get_logger(component="smpp")

LANES = ("priority", "bulk")
REPLY_TTL_S = 120
MIN_SHARE = 0.05  # throttling never stops a connection entirely
CUT_EVERY_S = 1.0  # one cut per second, however many answers said "throttled" meanwhile
RECOVER_AFTER_S = 2.0  # no throttling this long: raise the share again …
RECOVER_FACTOR = 1.25  # … by this much per second
PART_GRACE_S = 30.0  # later parts of a message whose first part was taken keep trying this long
FETCH_MAX = 64  # requests popped in one round trip
LATE_MAX = 10_000  # timed-out submits remembered per bind for a late answer
LEASE_SAFETY = 0.7  # unrenewed for this share of the lease: close the binds before it ends


@dataclass(frozen=True)
class HolderOptions:
    """Timings of a holder process."""

    lease_ttl_s: float = 10.0
    renew_s: float = 2.0
    max_binds: int | None = None  # binds per connection in this process (None: all it can get)
    stop_drain_s: float = 5.0


def encoding_rules(s: SmppConfig) -> EncodingRules:
    """The coding rules of a configured connection."""
    return EncodingRules(
        default_alphabet=DefaultAlphabet(s.default_alphabet),
        concat=Concat(s.concat),
        registered_delivery=s.registered_delivery,
        source_ton_npi={k: (ton, npi) for k, ton, npi in s.source_ton_npi} or None,
        dest_ton_npi=s.dest_ton_npi,
        service_type=s.service_type,
    )


def session_config(cfg: ConnectionConfig, mode: BindMode) -> SessionConfig:
    """How one bind of the connection connects."""
    s = cfg.smpp
    assert s is not None
    return SessionConfig(
        host=s.host,
        port=s.port,
        system_id=s.system_id,
        password=s.password,
        system_type=s.system_type,
        mode=mode,
        tls=ssl.create_default_context() if s.tls else None,
        window=s.window,
        response_timeout_s=cfg.timeout_s * (1 - SMPP_QUEUE_SHARE),
        enquire_link_s=s.enquire_link_s,
    )


@dataclass
class _Slot:
    """One leased bind slot and its share of the window in use."""

    number: int
    bind: Bind
    sends: bool
    in_use: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LANES, 0))
    # Sequence number of a timed-out single-part submit_sm → its mark key: a late answer on
    # the same session still records the message_id (the look-up then finds it).
    late: dict[int, str] = field(default_factory=dict)


class ConnectionHolder:
    """Binds, windows and the hand-off of one connection (see the module doc)."""

    def __init__(
        self,
        cfg: ConnectionConfig,
        redis: Any,
        holder_id: str,
        on_deliver: Callable[[p.DeliverSm], Awaitable[int]] | None,
        options: HolderOptions | None = None,
        rng: random.Random | None = None,
    ) -> None:
        assert cfg.smpp is not None
        self.cfg = cfg
        self.smpp = cfg.smpp
        self.name = cfg.name
        self.redis = redis
        self.holder_id = holder_id
        self.on_deliver = on_deliver
        self.options = options or HolderOptions()
        self.rng = rng or random.Random()
        self.rules = encoding_rules(cfg.smpp)
        self.leases = BindLeases(
            redis, cfg.name, cfg.smpp.binds, holder_id, self.options.lease_ttl_s
        )
        self.slots: dict[int, _Slot] = {}
        self.share = 1.0
        self._last_cut = 0.0
        self._last_throttle = 0.0
        self._changed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._handlers: set[asyncio.Task[None]] = set()
        self._outbox: list[tuple[list[tuple[str, str]], str, bytes]] = []
        self._flushing = False
        # Children looked up once: a labels() call per submit was a visible share of the
        # holder's CPU (benchmark G's profile).
        self._m_window = {lane: m.WINDOW_IN_USE.labels(cfg.name, lane) for lane in LANES}
        self._m_latency = m.SUBMIT_LATENCY.labels(cfg.name)
        self._m_responses: dict[int, Any] = {}
        m.BINDS_ALLOWED.labels(cfg.name).set(cfg.smpp.binds)
        m.BINDS_UP.labels(cfg.name).set(0)  # a holder without slots says so
        m.RATE_SHARE.labels(cfg.name).set(1.0)

    # -- life ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Start taking slots and requests in the background."""
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._lease_loop()), loop.create_task(self._recover())]
        self._tasks += [loop.create_task(self._fetch(lane)) for lane in LANES]

    async def stop(self) -> None:
        """Graceful: take no more requests, let those taken finish, unbind, give slots back."""
        self._stopping.set()
        self._changed.set()
        fetchers = self._tasks[2:]
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(asyncio.gather(*fetchers, return_exceptions=True), 3.0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.stop_drain_s
        while self._handlers and loop.time() < deadline:  # submits, then their replies' flush
            await asyncio.wait(set(self._handlers), timeout=max(0.01, deadline - loop.time()))
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        slots = list(self.slots.values())
        await asyncio.gather(*(s.bind.stop() for s in slots), return_exceptions=True)
        self.slots.clear()
        m.BINDS_UP.labels(self.name).set(0)
        with contextlib.suppress(RedisError, OSError):
            await self.leases.release([s.number for s in slots])
            await self.redis.hdel(h.up_key(self.name), self.holder_id)

    @property
    def binds_up(self) -> int:
        """Binds of this process that are bound now."""
        return sum(1 for s in self.slots.values() if s.bind.bound)

    # -- slots ---------------------------------------------------------------------------------
    def _mode(self, slot: int) -> tuple[BindMode, bool]:
        if self.smpp.bind_mode == "transmitter_receiver":
            if slot == 0:
                return BindMode.RECEIVER, False
            return BindMode.TRANSMITTER, True
        return BindMode.TRANSCEIVER, True

    def _on_state(self, slot: int) -> Callable[[str, str], None]:
        def changed(state: str, detail: str) -> None:
            m.BINDS_UP.labels(self.name).set(self.binds_up)
            if slot in self.slots:
                self.slots[slot].late.clear()  # sequence numbers belong to one session
            if state == "bind_failed":
                status = detail.removeprefix("bind refused: ")
                m.BIND_FAILURES.labels(self.name, status).inc()
                task = asyncio.get_running_loop().create_task(self._bind_refused(status))
                self._handlers.add(task)
                task.add_done_callback(self._handlers.discard)
            self._changed.set()
            up = asyncio.get_running_loop().create_task(self._publish_up())
            self._handlers.add(up)
            up.add_done_callback(self._handlers.discard)

        return changed

    def _on_late(self, slot: int) -> Callable[[p.Pdu], None]:
        def late(pdu: p.Pdu) -> None:
            owner = self.slots.get(slot)
            mark = owner.late.pop(pdu.sequence, None) if owner is not None else None
            if mark is None or not isinstance(pdu, p.SubmitSmResp):
                return
            m.RESPONSES.labels(self.name, "late_" + m.status_label(pdu.status)).inc()
            value = h.ID_PREFIX + pdu.message_id if pdu.status == ESME_ROK else h.NOT_SENT
            log.warning("smpp.late_answer", connection=self.name, accepted=pdu.status == ESME_ROK)
            task = asyncio.get_running_loop().create_task(self._set_mark(mark, value))
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)

        return late

    async def _set_mark(self, key: str, value: str) -> None:
        with contextlib.suppress(RedisError, OSError):  # else the mark stays "w": cannot tell
            await self.redis.set(key, value, ex=h.MARK_TTL_S)

    async def _bind_refused(self, status: str) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.redis.set(h.bind_error_key(self.name), status, ex=60)

    async def _publish_up(self) -> None:
        # One hash per connection: holder → "binds up:expires at", read by the senders.
        value = f"{self.binds_up}:{time.time() + self.options.lease_ttl_s:.3f}"
        with contextlib.suppress(RedisError, OSError):
            await self.redis.hset(h.up_key(self.name), self.holder_id, value)
            if self.binds_up:
                await self.redis.delete(h.bind_error_key(self.name))

    async def _lease_loop(self) -> None:
        want = self.smpp.binds if self.options.max_binds is None else self.options.max_binds
        renewed = time.monotonic()
        while not self._stopping.is_set():
            try:
                kept = await self.leases.renew(self.slots)
                renewed = time.monotonic()
                for number in set(self.slots) - kept:
                    log.error("smpp.lease_lost", connection=self.name, slot=number)
                    await self._drop(number)
                for number in await self.leases.acquire(want, self.slots):
                    mode, sends = self._mode(number)
                    bind = Bind(
                        session_config(self.cfg, mode),
                        on_deliver=self.on_deliver if mode != BindMode.TRANSMITTER else None,
                        on_state=self._on_state(number),
                        rng=self.rng,
                        on_late=self._on_late(number),
                    )
                    self.slots[number] = _Slot(number, bind, sends)
                    bind.start()
                    log.info("smpp.slot_taken", connection=self.name, slot=number, mode=str(mode))
                await self._publish_up()
            except (RedisError, OSError) as exc:
                log.warning("smpp.lease_renew_failed", connection=self.name, error=str(exc))
                # Leases that cannot be renewed expire on their own: close their binds before
                # they do, so another holder taking the slots never doubles the binds.
                if time.monotonic() - renewed > self.options.lease_ttl_s * LEASE_SAFETY:
                    for number in list(self.slots):
                        log.error("smpp.lease_expiring", connection=self.name, slot=number)
                        await self._drop(number)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.options.renew_s)

    async def _drop(self, number: int) -> None:
        """Close a slot's bind at once (no drain: the slot is, or is about to be, another's)."""
        lost = self.slots.pop(number)
        if lost.bind.session is not None:
            lost.bind.session.abort()
        await lost.bind.stop()
        m.BINDS_UP.labels(self.name).set(self.binds_up)

    # -- the window ----------------------------------------------------------------------------
    def _capacity(self, lane: str) -> int:
        reserve = self.smpp.priority_window
        return reserve if lane == "priority" else self.smpp.window - reserve

    def _free(self, lane: str) -> tuple[_Slot, str] | None:
        """A bound sending slot with room for ``lane`` (priority may also borrow bulk's)."""
        lanes = ("priority", "bulk") if lane == "priority" else ("bulk",)
        for use in lanes:
            for s in self.slots.values():
                if s.sends and s.bind.bound and s.in_use[use] < self._capacity(use):
                    return s, use
        return None

    async def _take(self, lane: str) -> tuple[_Slot, str] | None:
        while not self._stopping.is_set():
            got = self._free(lane)
            if got is not None:
                self._reserve(got)
                return got
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 1.0)
        return None

    def _reserve(self, taken: tuple[_Slot, str]) -> None:
        taken[0].in_use[taken[1]] += 1
        self._m_window[taken[1]].inc()

    def _give(self, slot: _Slot, use: str) -> None:
        slot.in_use[use] -= 1
        self._m_window[use].dec()
        self._changed.set()

    async def _fetch(self, lane: str) -> None:
        """Pop the lane's requests while it has free window slots: one blocking pop, then as
        many more as there are free slots in one round trip; their marks in one more."""
        key = h.queue_key(self.name, lane)
        while not self._stopping.is_set():
            first = await self._take(lane)
            if first is None:
                return
            try:
                got = await self.redis.blpop([key], timeout=1)
            except (RedisError, OSError) as exc:
                self._give(*first)
                log.warning("smpp.queue_unreadable", connection=self.name, error=str(exc))
                await asyncio.sleep(1.0)
                continue
            if got is None:
                self._give(*first)
                continue
            taken, raws = [first], [got[1]]
            while len(taken) < FETCH_MAX and (more := self._free(lane)) is not None:
                self._reserve(more)
                taken.append(more)
            if len(taken) > 1:
                try:
                    raws += await self.redis.lpop(key, len(taken) - 1) or []
                except (RedisError, OSError) as exc:
                    log.warning("smpp.queue_unreadable", connection=self.name, error=str(exc))
            for unused in taken[len(raws) :]:
                self._give(*unused)
            await self._start(list(zip(taken, raws, strict=False)))

    async def _start(self, batch: list[tuple[tuple[_Slot, str], bytes]]) -> None:
        """Mark the popped requests written (one round trip), then submit each."""
        reqs: list[tuple[tuple[_Slot, str], h.Request]] = []
        for taken, raw in batch:
            try:
                reqs.append((taken, h.Request.decode(raw)))
            except (ValueError, TypeError, KeyError):
                log.error("smpp.request_unreadable", connection=self.name)
                self._give(*taken)
        marked = True
        if reqs:
            # Written before anything leaves: a crash from here on leaves "w", never a blind
            # resend (the look-up cannot tell, and says so).
            pipe = self.redis.pipeline(transaction=False)
            for _, req in reqs:
                pipe.set(h.mark_key(self.name, req.ref), h.WRITTEN, ex=h.MARK_TTL_S)
            try:
                await pipe.execute()
            except (RedisError, OSError) as exc:
                log.warning("smpp.mark_failed", connection=self.name, error=str(exc))
                marked = False
        for taken, req in reqs:
            task = asyncio.get_running_loop().create_task(self._handle(taken, req, marked))
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)

    # -- one message ---------------------------------------------------------------------------
    async def _handle(self, taken: tuple[_Slot, str], req: h.Request, marked: bool) -> None:
        try:
            if marked:
                reply, marks = await self._submit(taken[0], req)
            else:
                reply, marks = h.Reply(req.key, h.NOT_WRITTEN, reason="redis"), []
            self._outbox.append((marks, req.reply, reply.encode()))
            if not self._flushing:
                self._flushing = True
                task = asyncio.get_running_loop().create_task(self._flush())
                self._handlers.add(task)
                task.add_done_callback(self._handlers.discard)
        finally:
            self._give(*taken)

    async def _flush(self) -> None:
        """Write the marks and replies that accumulated, one pipeline per round."""
        try:
            while self._outbox:
                batch, self._outbox = self._outbox, []
                pipe = self.redis.pipeline(transaction=False)
                replies: dict[str, list[bytes]] = {}
                for marks, reply_key, reply in batch:
                    for key, value in marks:
                        pipe.set(key, value, ex=h.MARK_TTL_S)
                    replies.setdefault(reply_key, []).append(reply)
                for reply_key, raws in replies.items():  # one push per sender process
                    pipe.rpush(reply_key, *raws)
                    pipe.expire(reply_key, REPLY_TTL_S)
                try:
                    await pipe.execute()
                except (RedisError, OSError) as exc:
                    # The senders time out and look the messages up: the marks say "written".
                    log.error("smpp.reply_lost", connection=self.name, error=str(exc))
        finally:
            self._flushing = False

    async def _submit(self, slot: _Slot, req: h.Request) -> tuple[h.Reply, list[tuple[str, str]]]:
        mark = h.mark_key(self.name, req.ref)
        if time.time() > req.by:
            return h.Reply(req.key, h.NOT_WRITTEN, reason="deadline"), [(mark, h.NOT_SENT)]
        valid_s = None
        if self.smpp.send_validity and req.valid_until is not None:
            valid_s = max(60.0, req.valid_until - time.time())
        try:
            pdus = build_submits(
                req.ref, req.to, req.sender, req.text, self.rules, req.flash, valid_s
            )
        except ValueError:
            return h.Reply(req.key, h.STATUS, status=0x01, reason="encoding"), [(mark, h.NOT_SENT)]
        started = time.monotonic()
        ids: list[str] = []
        for i, sm in enumerate(pdus):
            # The first part must leave before the claim's deadline; later ones keep trying a
            # while (the message is on its way and must be completed, never resent).
            until = req.by if not ids else req.by + PART_GRACE_S
            outcome = await self._one(slot, sm, until, mark if len(pdus) == 1 else None)
            if isinstance(outcome, p.SubmitSmResp) and outcome.status == ESME_ROK:
                ids.append(outcome.message_id)
                continue
            if ids:  # a later part failed: the message is partly out; keep it "sent"
                log.warning(
                    "smpp.part_not_sent",
                    connection=self.name,
                    message_id=req.ref,
                    part=i + 1,
                    outcome=str(outcome if isinstance(outcome, str) else outcome.status),
                )
                break
            latency = (time.monotonic() - started) * 1000
            if isinstance(outcome, p.SubmitSmResp):
                return (
                    h.Reply(req.key, h.STATUS, status=outcome.status, latency_ms=latency),
                    [(mark, h.NOT_SENT)],
                )
            if outcome in ("timeout", "disconnected", "unexpected"):
                return h.Reply(req.key, h.UNANSWERED, reason=outcome, latency_ms=latency), []
            return h.Reply(req.key, h.NOT_WRITTEN, reason=outcome), [(mark, h.NOT_SENT)]
        first = ids[0]
        marks = [(mark, h.ID_PREFIX + first)]
        marks += [(h.part_key(self.name, other), first) for other in ids[1:]]
        latency = (time.monotonic() - started) * 1000
        return h.Reply(req.key, h.OK, carrier_id=first, latency_ms=latency), marks

    async def _one(
        self, slot: _Slot, sm: p.SubmitSm, until: float, late_mark: str | None = None
    ) -> p.SubmitSmResp | str:
        """One submit_sm, throttling retried here: its response, or why none came
        (``timeout`` / ``disconnected`` / ``unexpected``: written; others: never written)."""
        while True:
            session = slot.bind.session
            if session is None or not session.bound:
                return "not_bound"
            loop = asyncio.get_running_loop()
            sent_at = time.monotonic()
            try:
                resp = await session.submit(sm, loop.time() + max(0.0, until - time.time()))
            except SubmitUnanswered as exc:
                m.RESPONSES.labels(self.name, "unanswered").inc()
                if exc.reason == "timeout" and late_mark is not None and exc.sequence:
                    if len(slot.late) >= LATE_MAX:
                        slot.late.pop(next(iter(slot.late)))
                    slot.late[exc.sequence] = late_mark
                return exc.reason
            except WindowBusy:
                return "window_busy"
            except SmppError:
                return "not_bound"
            except Exception:  # anything after the write may have reached the SMSC
                log.exception("smpp.submit_unexpected", connection=self.name)
                return "unexpected"
            self._m_latency.observe(time.monotonic() - sent_at)
            counter = self._m_responses.get(resp.status)
            if counter is None:
                label = m.status_label(resp.status)
                counter = self._m_responses[resp.status] = m.RESPONSES.labels(self.name, label)
            counter.inc()
            if resp.status not in THROTTLING:
                return resp
            await self._throttled()
            pause = THROTTLE_PAUSE_S * self.share**-0.5 * (0.5 + self.rng.random() / 2)
            if time.time() + pause > until:
                return resp  # the sender hands the claim back without spending an attempt
            await asyncio.sleep(pause)

    # -- throttling ----------------------------------------------------------------------------
    async def _throttled(self) -> None:
        m.THROTTLED.labels(self.name).inc()
        now = time.monotonic()
        self._last_throttle = now
        if now - self._last_cut < CUT_EVERY_S:
            return
        self._last_cut = now
        self.share = max(MIN_SHARE, self.share / 2)
        log.warning("smpp.throttled", connection=self.name, share=round(self.share, 3))
        await self._set_share()

    async def _set_share(self) -> None:
        m.RATE_SHARE.labels(self.name).set(self.share)
        with contextlib.suppress(RedisError, OSError):
            if self.share >= 1.0:
                await self.redis.delete(h.rate_key(self.name))
            else:  # expires: a holder that died does not keep the connection slow
                await self.redis.set(h.rate_key(self.name), f"{self.share:.4f}", ex=30)

    async def _recover(self) -> None:
        while not self._stopping.is_set():
            await asyncio.sleep(1.0)
            quiet = time.monotonic() - self._last_throttle
            if self.share < 1.0 and quiet >= RECOVER_AFTER_S:
                self.share = min(1.0, self.share * RECOVER_FACTOR)
                await self._set_share()
