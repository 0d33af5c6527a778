"""B. Personalised messages: N different texts, one carrier HTTP request per message.

Produced with the library producer (``Producer.send_bulk``, batches of 10,000) in its own
process. Figure: N / (last ``sent_at`` in the log - time before the first produce call).
"""

from __future__ import annotations

import time
from typing import Any

from bench.chart import render
from bench.common import Ctx, baseline_flood, finish_helper, maybe_analyze, ratio, start_helper
from bench.profiling import Profiler
from bench.stack import BenchStack, CpuMeter, per_message

SETTINGS = {"carrier_batch_size": 1, "chunk_size": 500, "carrier_tps": 1_000_000}
# As the Procfile: one process per core. B is CPU-bound in the workers (one carrier request
# per message), so a third process on 2 cores only adds contention; alternated runs of 2
# against 3 are in docs/benchmarks.md ("What limits each row").
BULK_CONCURRENCY = 2


def start_pipeline(
    st: BenchStack, api: bool = False, bulk_concurrency: int = BULK_CONCURRENCY
) -> None:
    """Simulator, (API,) priority pool c=2, bulk pool (``bulk_concurrency``) under nice 10,
    scheduler."""
    from bench.common import API_WORKERS

    st.start_simulator()
    if api:
        st.start_api(API_WORKERS)
    st.start_worker("priority", 2)  # as the Procfile
    st.start_worker("bulk", bulk_concurrency, nice=10)
    st.start_scheduler()
    st.wait_ready()


def run(ctx: Ctx) -> dict[str, Any]:
    """Run B (ours, then the baseline)."""
    n = 5_000 if ctx.quick else 50_000
    with BenchStack("B", ctx.logdir, SETTINGS) as st:
        start_pipeline(st)
        st.create_account("bench")
        time.sleep(0.3)
        meter, prof = CpuMeter(st), Profiler(ctx.profile, ctx.profdir, f"{ctx.run_id}-B")
        meter.start()
        producer = start_helper(st, ["-m", "bench.produce", "--count", str(n)], "produce")
        prof.start({"bulk": st.procs["worker-bulk"].popen.pid, "producer": producer.pid})
        produced = finish_helper(producer)
        maybe_analyze(ctx)
        st.wait_sim_count(n, timeout=1800)
        _count, last_sent = st.wait_db_sent(n)
        profile = prof.stop()
        cpu = meter.stop({"producer": produced["cpu_s"]})
        t0 = produced["t_first"]
        times = [s["at"] for s in st.sim_submits()]
        stats = st.sim_stats()
    ours = round(n / (last_sent - t0), 1)
    out: dict[str, Any] = {
        "messages": n,
        "msgs_per_s": ours,
        "duration_s": round(last_sent - t0, 3),
        "produce_s": round(produced["t_done"] - t0, 3),
        "carrier_duplicates": stats["duplicate_submits"],
        **per_message(cpu, n),
        "cpu": cpu,
        "profile": profile,
        "settings": SETTINGS | {"bulk_concurrency": BULK_CONCURRENCY},
    }
    series = {"ours: bulk lane": (times, t0)}
    if ctx.baseline:
        nb = 2_000 if ctx.quick else 20_000
        base = baseline_flood(ctx, "B-baseline", nb, same_text=False, otp=False)
        out["baseline_msgs_per_s"] = base["msgs_per_s"]
        out["baseline"] = {k: v for k, v in base.items() if k not in ("times", "t0")}
        series["baseline: single queue"] = (base["times"], base["t0"])
    out["ratio"] = ratio(ours, out.get("baseline_msgs_per_s"))
    out["chart"] = str(
        render(ctx.chart("B"), f"B. personalised, {n:,} messages, 1 request each", series=series)
    )
    return out
