"""D. Rate-limit accuracy: one connection limited to 500 msg/s, 4 worker processes.

A backlog of ``limit x duration`` personalised messages (one carrier request each) is produced
at once; one bulk pool of 4 prefork processes sends it through the Redis GCRA limiter
(``SMSDISPATCH_CARRIER_TPS=500``). The simulator's receive timestamps give the highest sliding
1-second window and the mean rate, skipping the first and last second.

Baseline: 4 Celery worker instances (1 process each) with ``rate_limit='500/s'`` on the task:
Celery enforces the limit per worker instance, so together they may send 4x the limit.
"""

from __future__ import annotations

import time
from typing import Any

from bench.chart import render
from bench.common import Ctx, finish_helper, run_helper, start_helper, windows
from bench.stack import BenchStack, CpuMeter, per_message

LIMIT = 500
WORKER_PROCESSES = 4
SETTINGS = {"carrier_batch_size": 1, "chunk_size": 500, "carrier_tps": LIMIT}


def run(ctx: Ctx) -> dict[str, Any]:
    """Run D (ours, then the baseline)."""
    duration = 8 if ctx.quick else 30
    n = LIMIT * duration
    with BenchStack("D", ctx.logdir, SETTINGS) as st:
        st.start_simulator()
        st.start_worker("bulk", WORKER_PROCESSES, nice=10)
        st.start_scheduler()
        st.wait_ready()
        st.create_account("bench")
        time.sleep(0.3)
        meter = CpuMeter(st)
        meter.start()
        producer = start_helper(st, ["-m", "bench.produce", "--count", str(n)], "produce")
        produced = finish_helper(producer)
        st.wait_sim_count(n, timeout=duration * 4 + 120)
        cpu = meter.stop({"producer": produced["cpu_s"]})
        times = [s["at"] for s in st.sim_submits()]
        stats = st.sim_stats()
        statuses = st.status_counts()
    w = windows(times)
    ctx.save_raw("D", {"times": times})
    out: dict[str, Any] = {
        "limit_per_s": LIMIT,
        "max_window_per_s": w["max_window_per_s"],
        "mean_per_s": w["mean_per_s"],
        "max_fixed_second": w["max_fixed_second"],
        "messages": n,
        "duration_s": round(max(times) - min(times), 2),
        "workers": f"1 bulk pool x {WORKER_PROCESSES} processes",
        "carrier_duplicates": stats["duplicate_submits"],
        "statuses": statuses,
        **per_message(cpu, n),
        "cpu": cpu,
    }
    series = {"ours: 4 processes, global limit": (times, produced["t_first"])}
    if ctx.baseline:
        base = baseline(ctx, duration)
        out.update(
            {
                "baseline_max_window_per_s": base["max_window_per_s"],
                "baseline_mean_per_s": base["mean_per_s"],
            }
        )
        out["baseline"] = {k: v for k, v in base.items() if k not in ("times", "t0")}
        series["baseline: 4 instances x rate_limit 500/s"] = (base["times"], base["t0"])
        out["ratio"] = round(base["max_window_per_s"] / w["max_window_per_s"], 2)
    out["chart"] = str(
        render(
            ctx.chart("D"),
            f"D. limit {LIMIT} msg/s, 4 worker processes",
            series=series,
            hline=(LIMIT, f"limit {LIMIT}/s"),
            bin_s=1.0,
        )
    )
    return out


def baseline(ctx: Ctx, duration: int) -> dict[str, Any]:
    """4 naive worker instances, each ``rate_limit='500/s'``, draining a pre-queued backlog."""
    n = 2 * LIMIT * duration  # 4 instances at up to 500/s each would drain it in duration/2
    with BenchStack("D-baseline", ctx.logdir) as st:
        st.start_simulator()
        res = run_helper(st, ["-m", "bench.baseline.produce", "--count", str(n)], "produce")
        for i in range(WORKER_PROCESSES):
            st.start_baseline_worker(f"base{i}", 1, f"{LIMIT}/s")
        st.wait_ready()
        st.wait_sim_count(n + 1, timeout=duration * 8 + 120)
        times = [s["at"] for s in st.sim_submits() if s["ref"] != "b-warmup"]
    w = windows(times)
    ctx.save_raw("D-baseline", {"times": times})
    return {
        **w,
        "messages": n,
        "workers": f"{WORKER_PROCESSES} instances x 1 process",
        "times": times,
        "t0": min(times),
        "produce_s": round(res["t_done"] - res["t_first"], 2),
    }
