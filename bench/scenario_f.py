"""F. Memory: worker RSS while N bulk messages are queued.

N messages of one campaign are produced with the library producer (batches of 10,000); the
worker pools run the whole time with the connection limited to ``SEND_RATE`` msg/s, so the
backlog stays queued in Redis. The RSS of every worker process (pool parents and prefork
children, both lanes) is sampled every 0.5 s during production and ``SETTLE`` seconds after.
"""

from __future__ import annotations

import time
from typing import Any

import redis

from bench.chart import render
from bench.common import Ctx, baseline_rss, finish_helper, start_helper
from bench.scenario_b import start_pipeline
from bench.stack import REDIS_URL, BenchStack, RssSampler

SEND_RATE = 2_000
SETTINGS = {"carrier_batch_size": 500, "chunk_size": 500, "carrier_tps": SEND_RATE}


def run(ctx: Ctx) -> dict[str, Any]:
    """Run F (ours, then the naive worker with the same number of tasks queued)."""
    n = 100_000 if ctx.quick else 1_000_000
    settle = 3.0 if ctx.quick else 20.0
    with BenchStack("F", ctx.logdir, SETTINGS) as st:
        start_pipeline(st)
        st.create_account("bench")
        t0 = time.time()
        with RssSampler(st, ("bulk", "priority")) as rss:
            producer = start_helper(
                st, ["-m", "bench.produce", "--count", str(n), "--same-text"], "produce"
            )
            produced = finish_helper(producer, timeout=3600)
            time.sleep(settle)
        client = redis.Redis.from_url(REDIS_URL)
        tasks_queued = int(client.llen("smsd.bulk"))
        client.close()
        sent = st.sim_stats()["unique_refs"]
    by_proc = {rss.names[p]: round(v, 1) for p, v in rss.max_rss.items()}
    ours = round(max(rss.max_rss.values(), default=0.0), 1)
    out: dict[str, Any] = {
        "max_rss_mb": ours,
        "max_rss_by_process": by_proc,
        "messages": n,
        "produce_s": round(produced["t_done"] - produced["t_first"], 1),
        "sent_meanwhile": sent,
        "queued_at_end": n - sent,
        "bulk_tasks_in_redis_at_end": tasks_queued,
        "send_rate_limit_per_s": SEND_RATE,
    }
    points: dict[str, list[tuple[float, float]]] = {}
    for t, pid, mb in rss.series:
        points.setdefault(f"ours {rss.names[pid]} {pid}", []).append((t - t0, mb))
    if ctx.baseline:
        nb = 5_000 if ctx.quick else 100_000
        base = baseline_rss(ctx, "F-baseline", nb, f"{SEND_RATE}/s", settle)
        out["baseline_max_rss_mb"] = base["max_rss_mb"]
        out["baseline"] = base
        out["ratio"] = round(base["max_rss_mb"] / ours, 2) if ours else None
    out["chart"] = str(
        render(ctx.chart("F"), f"F. worker RSS, {n:,} bulk messages queued", rss=points)
    )
    return out
