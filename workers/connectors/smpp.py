"""The send lanes' side of an SMPP connection: hand the message to the session holder.

A lane does not bind: it pushes the claimed message on the connection's queue for its lane
and waits for the holder's answer on its process's reply list (:mod:`workers.smpp.handoff`).
One reader task per process takes the replies and wakes the waiting submits.

What a submit can end as:

* the holder's reply: the SMSC's ``message_id`` (sent), its refusal (status translated once,
  :func:`workers.smpp.errors.from_status`), or "written, no answer" (ambiguous);
* no bind up anywhere (every holder's ``up`` entry says 0): not queued at all, a retryable
  error naming the last bind refusal (``smpp_bind_failed: ESME_RINVPASWD``), so the breaker
  opens and traffic moves to the next route;
* no reply in time: the request is taken back from the queue when it is still there (certainly
  not sent: the claim goes back unspent); when a holder took it, the answer is ambiguous and
  the look-up reads the holder's mark.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from redis.exceptions import RedisError

from workers.connectors.base import InboundPart, Outbound, Report, SubmitResult
from workers.connectors.callbacks import parse_simple_inbound, parse_smpp_style_report
from workers.errors import (
    AmbiguousCarrierError,
    CarrierError,
    NotSentError,
    RetryableCarrierError,
)
from workers.smpp import handoff as h
from workers.smpp.errors import SubmitUnanswered, from_status, translate

log = structlog.get_logger(component="smpp")

UP_CACHE_S = 0.5  # how long a read of "binds up" is trusted
REPLY_GRACE_S = 2.0  # beyond the holder's own response timeout


class SmppConnector:
    """Submits through the session holder; look-ups read the holder's marks."""

    max_batch = 1

    def __init__(self, name: str, redis: Any, timeout_s: float, queue_wait_s: float = 5.0) -> None:
        self.name = name
        self.redis = redis
        self.timeout_s = timeout_s  # the holder's submit_sm_resp timeout
        self.queue_wait_s = queue_wait_s  # a request not taken by then is taken back
        self.reply_key = f"smpp:reply:{uuid.uuid4().hex}"
        self._waiting: dict[str, asyncio.Future[h.Reply]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._up: tuple[float, int] = (0.0, 0)
        self._refused = ""
        self._refresh: asyncio.Task[None] | None = None
        self._outgoing: list[tuple[str, bytes, asyncio.Future[None]]] = []
        self._lrem_slots = asyncio.Semaphore(8)
        self._pushing = False

    async def submit(self, msg: Outbound) -> SubmitResult:
        """Hand one message to the holder and wait for its answer. Never raises."""
        started = time.perf_counter()
        try:
            error = await self._unreachable()
            if error is not None:
                return SubmitResult(msg.ref, None, None, _ms(started), error)
            reply = await self._exchange(msg)
        except (RedisError, OSError) as exc:
            # Before the request was queued, or while waiting: the holder's mark decides.
            return SubmitResult(
                msg.ref,
                None,
                None,
                _ms(started),
                AmbiguousCarrierError("carrier_io_error", str(exc)),
            )
        except CarrierError as exc:
            return SubmitResult(msg.ref, None, None, _ms(started), exc)
        latency = reply.latency_ms or _ms(started)
        if reply.outcome == h.OK and reply.carrier_id:
            return SubmitResult(msg.ref, reply.carrier_id, None, latency)
        return SubmitResult(msg.ref, None, None, latency, _error(reply))

    async def submit_batch(self, msgs: Sequence[Outbound]) -> list[SubmitResult]:
        """One at a time: SMPP has no batch submit the window could use better."""
        return list(await asyncio.gather(*(self.submit(m) for m in msgs)))

    async def _unreachable(self) -> CarrierError | None:
        if time.monotonic() - self._up[0] > UP_CACHE_S:
            # One read for every submit waiting on it: a burst of submits must not take a
            # Redis connection each (the pool is shared with the limiter and the breakers).
            if self._refresh is None or self._refresh.done():
                self._refresh = asyncio.get_running_loop().create_task(self._read_up())
            await asyncio.shield(self._refresh)
        if self._up[1] > 0:
            return None
        if self._refused:
            return RetryableCarrierError("smpp_bind_failed", f"bind refused: {self._refused}")
        return RetryableCarrierError("carrier_unreachable", "no SMPP bind up")

    async def _read_up(self) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(h.up_key(self.name))
        pipe.get(h.bind_error_key(self.name))
        entries, refused = await pipe.execute()
        self._refused = refused.decode() if refused else ""
        self._up = (time.monotonic(), h.binds_up(entries, time.time()))

    async def _exchange(self, msg: Outbound) -> h.Reply:
        key = uuid.uuid4().hex
        by = time.time() + self.queue_wait_s
        req = h.Request(
            key,
            self.reply_key,
            msg.ref,
            msg.to,
            msg.sender,
            msg.text,
            msg.flash,
            msg.valid_until,
            by,
            msg.lane,
        )
        raw = req.encode()
        queue = h.queue_key(self.name, msg.lane)
        fut: asyncio.Future[h.Reply] = asyncio.get_running_loop().create_future()
        self._waiting[key] = fut
        self._ensure_reader()
        try:
            await self._push(queue, raw)
            try:
                # The holder starts no submit after ``by``; its answer comes within its
                # response timeout (a long message's later parts may take a little more).
                # (asyncio.timeout, not wait_for over a shield: one timer, no extra future
                # per message; a reply arriving after it finds the future gone or cancelled.)
                async with asyncio.timeout(self.queue_wait_s + self.timeout_s + REPLY_GRACE_S):
                    return await fut
            except TimeoutError:
                async with self._lrem_slots:  # a burst of timeouts: a few connections
                    taken_back = await self.redis.lrem(queue, 1, raw)
                if taken_back:
                    raise NotSentError(
                        "smpp_queue_timeout", "no SMPP holder took the message in time"
                    ) from None
                raise AmbiguousCarrierError(
                    "carrier_timeout", "no answer from the SMPP holder"
                ) from None
        finally:
            self._waiting.pop(key, None)

    async def _push(self, queue: str, raw: bytes) -> None:
        """Queue a request; requests pushed together share one pipeline (one round trip)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._outgoing.append((queue, raw, fut))
        if not self._pushing:
            self._pushing = True
            asyncio.get_running_loop().create_task(self._push_all())
        await fut

    async def _push_all(self) -> None:
        try:
            while self._outgoing:
                batch, self._outgoing = self._outgoing, []
                by_queue: dict[str, list[bytes]] = {}
                for queue, raw, _ in batch:
                    by_queue.setdefault(queue, []).append(raw)
                pipe = self.redis.pipeline(transaction=False)
                for queue, raws in by_queue.items():
                    pipe.rpush(queue, *raws)
                try:
                    await pipe.execute()
                except Exception as exc:  # each submit decides (its mark says what happened)
                    for _, _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_result(None)
        finally:
            self._pushing = False

    def _ensure_reader(self) -> None:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._read_replies())

    async def _read_replies(self) -> None:
        while self._waiting:
            try:
                got = await self.redis.blpop([self.reply_key], timeout=1)
            except (RedisError, OSError) as exc:
                log.warning("smpp.replies_unreadable", connection=self.name, error=str(exc))
                await asyncio.sleep(0.5)
                continue
            if got is None:
                continue
            raws = [got[1]]
            with contextlib.suppress(RedisError, OSError):  # the rest at the next round
                raws += await self.redis.lpop(self.reply_key, 500) or []
            for raw in raws:
                try:
                    reply = h.Reply.decode(raw)
                except (ValueError, TypeError, KeyError):
                    log.error("smpp.reply_unreadable", connection=self.name)
                    continue
                fut = self._waiting.get(reply.key)
                if fut is not None and not fut.done():
                    fut.set_result(reply)

    async def lookup(self, refs: Sequence[str]) -> dict[str, str] | None:
        """Carrier ids of ``refs`` from the holder's marks; ``None`` when any of them was
        written and never answered (the SMSC cannot be asked: SMPP's query_sm needs the id
        that the missing submit_sm_resp would have carried)."""
        if not refs:
            return {}
        try:
            marks = await self.redis.mget([h.mark_key(self.name, r) for r in refs])
        except (RedisError, OSError) as exc:
            raise RetryableCarrierError("carrier_lookup_failed", str(exc)) from exc
        found: dict[str, str] = {}
        for ref, raw in zip(refs, marks, strict=True):
            mark = raw.decode() if raw is not None else h.NOT_SENT
            if mark == h.WRITTEN:
                return None
            if mark.startswith(h.ID_PREFIX):
                found[ref] = mark.removeprefix(h.ID_PREFIX)
        return found

    async def close(self) -> None:
        """Stop the reply reader (the Redis client belongs to the runtime)."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None

    def parse_report(self, raw: Mapping[str, Any]) -> Report:
        """Receipts reach the inbox in the generic form (:mod:`workers.smpp.deliveries`)."""
        return parse_smpp_style_report(raw)

    def parse_inbound(self, raw: Mapping[str, Any]) -> InboundPart:
        """MO parts reach the inbox in the generic form."""
        return parse_simple_inbound(raw)


def _error(reply: h.Reply) -> CarrierError:
    if reply.outcome == h.STATUS and reply.status is not None:
        return from_status(reply.status)
    if reply.outcome == h.UNANSWERED:
        return translate(SubmitUnanswered(reply.reason or "timeout"))
    if reply.reason == "not_bound":
        return RetryableCarrierError("carrier_unreachable", "no SMPP bind up")
    return NotSentError("smpp_not_sent", f"SMPP holder did not send it ({reply.reason})")


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
