"""Open-loop OTP sender for scenario C: ``--rate`` single-recipient messages per second.

``--mode api`` POSTs ``/v2.1/sms`` with ``"priority": true`` (aiohttp) and takes the message id
from the answer; ``--mode celery`` calls the baseline's ``send_one.delay()`` on its single queue.
``t0`` is ``time.time()`` taken just before each request/publish; the carrier simulator stamps
its receive time with the same clock, so latency = simulator ``at`` - ``t0``. Runs until SIGTERM
(or ``--duration``), then waits for answers in flight and writes one JSON line per OTP to
``--out``: ``{"ref", "t0", "ok", "accept_ms"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from typing import Any

from bench.messages import phone


async def _api(args: argparse.Namespace, stop: asyncio.Event) -> list[dict[str, Any]]:
    import aiohttp

    with open(args.keys, encoding="utf-8") as fh:
        keys = json.load(fh)
    headers = {**keys, "Content-Type": "application/json"}
    out: list[dict[str, Any]] = []
    async with aiohttp.ClientSession(
        args.url, headers=headers, connector=aiohttp.TCPConnector(limit=0)
    ) as session:

        async def one(i: int) -> None:
            body = {
                "sender": "BENCH",
                "message": f"Your code is {100000 + i % 900000}",
                "phoneNumbers": [phone(i, 60)],
                "priority": True,
            }
            t0 = time.time()
            rec: dict[str, Any] = {"ref": None, "t0": t0, "ok": False}
            try:
                async with session.post("/v2.1/sms", json=body) as resp:
                    data = await resp.json()
                    rec["ok"] = resp.status == 200 and data["meta"].get("lane") in (
                        None,
                        "priority",
                    )
                    rec["ref"] = data["data"][0]["id"] if data.get("data") else None
                    rec["lane"] = data["meta"].get("lane")
            except Exception as exc:  # recorded, not fatal: a lost OTP is a finding
                rec["error"] = type(exc).__name__
            rec["accept_ms"] = (time.time() - t0) * 1000
            out.append(rec)

        await _schedule(args, stop, one)
    return out


async def _celery(args: argparse.Namespace, stop: asyncio.Event) -> list[dict[str, Any]]:
    from bench.baseline.app import send_one

    send_one.delay(phone(0, 60), "warm-up", "otp-warmup")
    out: list[dict[str, Any]] = []

    async def one(i: int) -> None:
        ref = f"otp-{i}"
        t0 = time.time()
        send_one.delay(phone(i, 60), f"Your code is {100000 + i % 900000}", ref)
        out.append({"ref": ref, "t0": t0, "ok": True, "accept_ms": (time.time() - t0) * 1000})

    await _schedule(args, stop, one)
    return out


async def _schedule(args: argparse.Namespace, stop: asyncio.Event, one: Any) -> None:
    """Start ``one(i)`` at ``start + i / rate`` until stopped; then wait for those running."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    tasks: set[asyncio.Task[None]] = set()
    i = 0
    while not stop.is_set() and loop.time() - start < args.duration:
        task = asyncio.ensure_future(one(i))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
        delay = start + i / args.rate - loop.time()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
    if tasks:
        await asyncio.wait(tasks, timeout=30)


def main(argv: list[str] | None = None) -> int:
    """Send OTPs until SIGTERM; write the records."""
    p = argparse.ArgumentParser(prog="python -m bench.otp")
    p.add_argument("--mode", choices=["api", "celery"], required=True)
    p.add_argument("--url", default="")
    p.add_argument("--keys", default="", help="JSON file with the two auth headers")
    p.add_argument("--rate", type=float, default=20.0)
    p.add_argument("--duration", type=float, default=600.0)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    async def run() -> list[dict[str, Any]]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        return await (_api(args, stop) if args.mode == "api" else _celery(args, stop))

    records = asyncio.run(run())
    with open(args.out, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
