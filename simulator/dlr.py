"""Outbound traffic of the simulated carrier: delivery reports (DLRs) and mobile-originated (MO)
messages, posted as JSON with aiohttp.

Reports are scheduled on a heap by due time and handed to a pool of sender tasks. Failed posts
are retried with backoff and counted; nothing here can crash the server.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
import time
from typing import Any

import aiohttp
import orjson

from simulator.config import SimConfig
from simulator.sms import split_text
from simulator.state import SimState

log = logging.getLogger("simulator.dlr")

#: ``err`` code sent with each ``stat``.
ERR_CODES: dict[str, str] = {
    "DELIVRD": "000",
    "ACCEPTD": "000",
    "UNDELIV": "001",
    "EXPIRED": "002",
    "REJECTD": "003",
    "DELETED": "004",
    "UNKNOWN": "005",
}

#: How long a partly filled reorder window may wait before it is flushed.
_REORDER_HOLD_S = 0.05
#: Longest sleep of the scheduler while reports are pending.
_MAX_TICK_S = 0.02
#: Timeout of one outbound POST.
_POST_TIMEOUT_S = 5.0

_Item = tuple[float, int, str, str, str]  # (due, seq, carrier id, ref, to)


class _FailureLog:
    """Logs the first few failures, then one in a thousand (no message content is logged)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, what: str, url: str, reason: str) -> None:
        self.count += 1
        if self.count <= 5 or self.count % 1000 == 0:
            log.warning(
                "simulator %s post failed (%d so far): %s: %s", what, self.count, url, reason
            )


class Emitter:
    """Posts delivery reports and MO messages for one simulator instance."""

    def __init__(self, config: SimConfig, state: SimState) -> None:
        self.config = config
        self.state = state
        self.rng = random.Random()
        #: Mixed into the seed so that worker processes draw different sequences.
        self.seed_salt = ""
        self._heap: list[_Item] = []
        self._seq = 0
        self._mo_num = 0
        self._mo_step = 1
        self._generation = 0
        self._queue: asyncio.Queue[dict[str, Any]] | None = None
        self._reorder_buf: list[dict[str, Any]] = []
        self._reorder_since = 0.0
        self._wake: asyncio.Event | None = None
        self._session: aiohttp.ClientSession | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._fail_log = _FailureLog()
        self._stats_cache: tuple[list[str], list[float]] = ([], [])
        self.reseed()

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the HTTP client session and the scheduler task (call inside the loop)."""
        self._queue = asyncio.Queue()
        self._wake = asyncio.Event()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=_POST_TIMEOUT_S),
        )
        self._pump_task = asyncio.get_running_loop().create_task(self._pump())

    async def stop(self) -> None:
        """Cancel pending work and close the session."""
        tasks = [t for t in [self._pump_task, *self._workers] if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers = []
        self._pump_task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def set_id_sequence(self, start: int, step: int) -> None:
        """Number MO ids ``start, start + step, ...`` (unique across workers)."""
        self._mo_num = start - step
        self._mo_step = step

    def reseed(self) -> None:
        """Reset the generator used for outcomes, duplicates, reordering and MO refs."""
        self.rng.seed(f"{self.config.seed}:dlr{self.seed_salt}")

    def reset(self) -> None:
        """Drop every pending report and reseed (posts in flight are no longer counted)."""
        self._generation += 1
        self._heap.clear()
        self._reorder_buf.clear()
        if self._queue is not None:
            while not self._queue.empty():
                self._queue.get_nowait()
        self.reseed()

    @property
    def pending(self) -> int:
        """Reports scheduled or queued but not yet posted."""
        queued = self._queue.qsize() if self._queue is not None else 0
        return len(self._heap) + len(self._reorder_buf) + queued

    # -- delivery reports ---------------------------------------------------------------------

    def schedule(self, carrier_id: str, ref: str, to: str, now: float) -> None:
        """Schedule the delivery report of one accepted message."""
        c = self.config
        delay = c.dlr_delay_ms
        if c.dlr_jitter_ms:
            delay += self.rng.uniform(-c.dlr_jitter_ms, c.dlr_jitter_ms)
        self._seq += 1
        heapq.heappush(self._heap, (now + max(delay, 0.0) / 1000.0, self._seq, carrier_id, ref, to))
        wake = self._wake
        if wake is not None and not wake.is_set():
            wake.set()

    def _pick_stat(self) -> str:
        mix = self.config.dlr_mix
        if self._stats_cache[0] != list(mix):
            self._stats_cache = (list(mix), list(mix.values()))
        stats, weights = self._stats_cache
        if len(stats) == 1:
            return stats[0]
        return self.rng.choices(stats, weights)[0]

    async def _pump(self) -> None:
        """Move due reports to the send queue, applying duplicates and reordering."""
        assert self._wake is not None
        heap = self._heap
        while True:
            if not heap and not self._reorder_buf:
                self._wake.clear()
                await self._wake.wait()
            self._ensure_workers()
            now = time.time()
            c = self.config
            while heap and heap[0][0] <= now:
                _, _, cid, ref, to = heapq.heappop(heap)
                stat = self._pick_stat()
                report = {
                    "id": cid,
                    "ref": ref,
                    "to": to,
                    "stat": stat,
                    "err": ERR_CODES.get(stat, "005"),
                    "done_at": now,
                }
                self._out(report)
                if c.dlr_duplicate_rate and self.rng.random() < c.dlr_duplicate_rate:
                    self._out(dict(report))
            buf = self._reorder_buf
            if buf and (not c.dlr_reorder or now - self._reorder_since >= _REORDER_HOLD_S):
                self._flush_reorder()
            sleep = _MAX_TICK_S
            if heap:
                sleep = min(sleep, max(heap[0][0] - now, 0.001))
            await asyncio.sleep(sleep)

    def _out(self, report: dict[str, Any]) -> None:
        assert self._queue is not None
        c = self.config
        if not c.dlr_reorder:
            self._queue.put_nowait(report)
            return
        buf = self._reorder_buf
        if not buf:
            self._reorder_since = time.time()
        buf.append(report)
        if len(buf) >= c.dlr_reorder_window:
            self._flush_reorder()

    def _flush_reorder(self) -> None:
        assert self._queue is not None
        buf = self._reorder_buf
        if self.config.dlr_reorder:
            self.rng.shuffle(buf)
        for report in buf:
            self._queue.put_nowait(report)
        buf.clear()

    def _ensure_workers(self) -> None:
        self._workers = [t for t in self._workers if not t.done()]
        loop = asyncio.get_running_loop()
        while len(self._workers) < self.config.dlr_concurrency:
            self._workers.append(loop.create_task(self._worker(len(self._workers))))

    async def _worker(self, index: int) -> None:
        assert self._queue is not None
        counters = self.state.counters
        while True:
            report = await self._queue.get()
            generation = self._generation
            url = self.config.dlr_url
            if url is None:
                counters.dlr_dropped += 1
            else:
                ok, retries = await self.post(url, self.config.dlr_token, report, "dlr")
                if generation == self._generation:
                    counters.dlr_retried += retries
                    if ok:
                        counters.dlr_sent += 1
                    else:
                        counters.dlr_failed += 1
            if index >= self.config.dlr_concurrency:
                return

    # -- outbound posts -----------------------------------------------------------------------

    async def post(
        self, url: str, token: str | None, payload: dict[str, Any], what: str
    ) -> tuple[bool, int]:
        """POST ``payload`` as JSON with retries; return ``(delivered, retries_used)``.

        2xx is success; other 4xx (except 408/429) are final failures; 5xx, 408, 429 and
        connection errors are retried ``dlr_retries`` times with exponential backoff.
        """
        session = self._session
        if session is None:
            return False, 0
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        body = orjson.dumps(payload)
        retries = self.config.dlr_retries
        reason = ""
        for attempt in range(retries + 1):
            if attempt:
                await asyncio.sleep(min(0.05 * 2 ** (attempt - 1), 2.0))
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    status = resp.status
                if 200 <= status < 300:
                    return True, attempt
                reason = f"HTTP {status}"
                if 400 <= status < 500 and status not in (408, 429):
                    break
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                reason = type(exc).__name__
        self._fail_log(what, url, reason)
        return False, attempt

    # -- mobile-originated messages -----------------------------------------------------------

    async def send_mo(
        self,
        sender: str,
        to: str,
        text: str,
        parts: int,
        url: str,
        token: str | None,
        shuffle: bool = False,
    ) -> dict[str, Any]:
        """Split ``text`` into ``parts`` messages with concatenation UDH and post each one.

        Parts are posted one after another, in ``seq`` order unless ``shuffle`` is set.
        """
        ref = self.rng.randint(0, 255)
        chunks = split_text(text, parts)
        messages: list[dict[str, Any]] = []
        for seq, chunk in enumerate(chunks, start=1):
            self._mo_num += self._mo_step
            messages.append(
                {
                    "id": f"sim-mo-{self._mo_num}",
                    "from": sender,
                    "to": to,
                    "text": chunk,
                    "udh": {"ref": ref, "total": parts, "seq": seq},
                }
            )
        order = list(messages)
        if shuffle:
            self.rng.shuffle(order)
        counters = self.state.counters
        sent = failed = 0
        for msg in order:
            ok, _ = await self.post(url, token, msg, "mo")
            if ok:
                sent += 1
                counters.mo_sent += 1
            else:
                failed += 1
                counters.mo_failed += 1
        return {
            "ids": [m["id"] for m in messages],
            "ref": ref,
            "parts": parts,
            "sent": sent,
            "failed": failed,
        }
