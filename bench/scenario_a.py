"""A. Bulk campaign: one text to N recipients through the API, batch submits to the carrier.

N / 10,000 requests of 10,000 ``phoneNumbers`` each, two in flight (one per API process).
Figure: N / (last ``sent_at`` in the log - time before the first request).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from bench.chart import render
from bench.common import API_WORKERS, Ctx, baseline_flood, ratio
from bench.messages import CAMPAIGN_TEXT, phone
from bench.profiling import Profiler
from bench.scenario_b import start_pipeline
from bench.stack import BenchStack, CpuMeter, per_message

# A's carrier takes 500 recipients per request, so a bulk process waits on PostgreSQL (claim,
# then record) for much of a chunk and 2 processes leave the machine idle part of the time. A
# third fills that wait (alternated runs: docs/benchmarks.md, "What limits each row"). B (one
# carrier request per message, CPU-bound in the workers) is faster with 2
# (scenario_b.BULK_CONCURRENCY).
A_BULK_CONCURRENCY = 3

SETTINGS = {"carrier_batch_size": 500, "chunk_size": 500, "carrier_tps": 1_000_000}
PER_REQUEST = 10_000
IN_FLIGHT = 2


async def post_campaign(api_url: str, keys: dict[str, str], n: int) -> dict[str, Any]:
    """Send the campaign; time before the first request, accept time, refused recipients."""
    bodies = [
        {
            "sender": "BENCH",
            "message": CAMPAIGN_TEXT,
            "phoneNumbers": [phone(i) for i in range(start, min(n, start + PER_REQUEST))],
        }
        for start in range(0, n, PER_REQUEST)
    ]
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    accepted = refused = 0
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(api_url, headers=keys, timeout=timeout) as session:

        async def client() -> None:
            nonlocal accepted, refused
            while not queue.empty():
                body = queue.get_nowait()
                async with session.post("/v2.1/sms", json=body) as resp:
                    data = await resp.json()
                    if resp.status != 200:
                        raise RuntimeError(f"API answered {resp.status}: {str(data)[:300]}")
                    accepted += data["meta"]["sentSms"]
                    refused += data["meta"]["notSentSms"]

        t_first = time.time()
        await asyncio.gather(*(client() for _ in range(IN_FLIGHT)))
        t_accepted = time.time()
    return {
        "t_first": t_first,
        "t_accepted": t_accepted,
        "accepted": accepted,
        "refused": refused,
        "requests": len(bodies),
    }


def run(ctx: Ctx) -> dict[str, Any]:
    """Run A (ours, then the naive design on a smaller campaign)."""
    n = 20_000 if ctx.quick else 200_000
    with BenchStack("A", ctx.logdir, SETTINGS, pooler=ctx.pooler) as st:
        start_pipeline(st, api=True, bulk_concurrency=A_BULK_CONCURRENCY)
        keys = st.create_account("bench")
        time.sleep(0.3)
        meter, prof = CpuMeter(st), Profiler(ctx.profile, ctx.profdir, f"{ctx.run_id}-A")
        meter.start()
        prof.start({"api": st.procs["api"].popen.pid, "bulk": st.procs["worker-bulk"].popen.pid})
        sent = asyncio.run(post_campaign(st.api_url, keys, n))
        if sent["accepted"] != n:
            raise RuntimeError(f"API accepted {sent['accepted']} of {n} recipients")
        st.wait_sim_count(n, timeout=1800)
        _count, last_sent = st.wait_db_sent(n)
        profile = prof.stop()
        cpu = meter.stop()
        t0 = sent["t_first"]
        stats = st.sim_stats()
        times = [s["at"] for s in st.sim_submits()]
    ours = round(n / (last_sent - t0), 1)
    out: dict[str, Any] = {
        "messages": n,
        "requests": sent["requests"],
        "msgs_per_s": ours,
        "duration_s": round(last_sent - t0, 3),
        "accept_s": round(sent["t_accepted"] - t0, 3),
        "carrier_batches": stats.get("batches"),
        "carrier_duplicates": stats["duplicate_submits"],
        "api_workers": API_WORKERS,
        **per_message(cpu, n),
        "cpu": cpu,
        "profile": profile,
        "settings": SETTINGS | {"bulk_concurrency": A_BULK_CONCURRENCY},
    }
    series = {"ours: bulk lane (batch submits)": (times, t0)}
    if ctx.baseline:
        # The naive design has no batch path: one task (and one carrier request) per recipient.
        nb = 2_000 if ctx.quick else 20_000
        base = baseline_flood(ctx, "A-baseline", nb, same_text=True, otp=False)
        out["baseline_msgs_per_s"] = base["msgs_per_s"]
        out["baseline"] = {k: v for k, v in base.items() if k not in ("times", "t0")}
        series["baseline: one task per recipient"] = (base["times"], base["t0"])
    out["ratio"] = ratio(ours, out.get("baseline_msgs_per_s"))
    out["chart"] = str(
        render(ctx.chart("A"), f"A. campaign, one text to {n:,} recipients", series=series)
    )
    return out
