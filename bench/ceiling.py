"""The carrier simulator's own ceiling, measured in the same run as the scenarios.

The simulator runs alone (fresh process, nothing else of the stack) and
``simulator.loadgen`` (raw asyncio + httptools, closed loop, unique refs) drives it: single
submits over 64 keep-alive connections, then batch submits of 500 recipients over 8. Both
processes share the 2 cores, so this is a floor of what the simulator can take.
"""

from __future__ import annotations

from typing import Any

from bench.common import Ctx, run_helper
from bench.stack import BenchStack, CpuMeter


def measure_ceiling(ctx: Ctx) -> dict[str, Any]:
    """``single_req_per_s``, ``batch_recipients_per_s`` and the simulator's CPU share."""
    duration = "3" if ctx.quick else "5"
    out: dict[str, Any] = {"tool": "python -m simulator.loadgen", "duration_s": float(duration)}
    try:
        with BenchStack("ceiling", ctx.logdir) as st:
            url = st.start_simulator()
            st.wait_ready()
            meter = CpuMeter(st)
            meter.start()
            loadgen = ["-m", "simulator.loadgen", "--url", url, "--duration", duration]
            loadgen += ["--warmup", "1"]
            single = run_helper(st, [*loadgen, "--connections", "64"], "single")
            cpu = meter.stop()
            st.sim_reset()
            batch = run_helper(st, [*loadgen, "--connections", "8", "--batch", "500"], "batch")
        out.update(
            {
                "single_req_per_s": single["requests_per_s"],
                "single_p99_ms": single["latency_ms"]["p99"],
                "single_connections": 64,
                "single_simulator_core_pct": cpu.get("simulator", {}).get("core_pct"),
                "batch_recipients_per_s": batch["messages_per_s"],
                "batch_req_per_s": batch["requests_per_s"],
                "batch_size": 500,
                "batch_connections": 8,
            }
        )
    except Exception as exc:  # the scenarios still run; the report says the ceiling is missing
        out["error"] = f"{type(exc).__name__}: {exc}"[:500]
    return out
