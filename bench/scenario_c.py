"""C. OTP under load: 20 OTP/s on the priority lane through the API while B's load runs.

B's load (N personalised messages from the library producer, one carrier request each) runs on
the bulk lane; an open-loop client POSTs one single-recipient ``"priority": true`` message
every 50 ms. Latency = carrier receive time of the OTP's ref - client time just before the
POST (same clock). Only OTPs sent between the first produce call and the last bulk message
recorded sent count.
"""

from __future__ import annotations

import json
import time
from typing import Any

from bench.chart import render
from bench.common import (
    API_WORKERS,
    Ctx,
    baseline_flood,
    finish_helper,
    latency_figures,
    maybe_analyze,
    otp_latencies,
    start_helper,
    stop_otp,
    wait_refs,
)
from bench.profiling import Profiler
from bench.scenario_b import SETTINGS, start_pipeline
from bench.stack import BenchStack, CpuMeter, per_message

OTP_RATE = 20


def run(ctx: Ctx) -> dict[str, Any]:
    """Run C (ours, then the naive single queue)."""
    n = 10_000 if ctx.quick else 100_000
    with BenchStack("C", ctx.logdir, SETTINGS) as st:
        start_pipeline(st, api=True)
        keys = st.create_account("bench")
        keys_file = ctx.logdir / "C-keys.json"
        keys_file.write_text(json.dumps(keys))
        otp_out = ctx.logdir / "C-otp.ndjson"
        otp = start_helper(
            st,
            [
                "-m",
                "bench.otp",
                "--mode",
                "api",
                "--url",
                st.api_url,
                "--keys",
                str(keys_file),
                "--rate",
                str(OTP_RATE),
                "--out",
                str(otp_out),
            ],
            "otp",
        )
        time.sleep(1.0)  # OTPs alone first: connections warm, idle-machine latency visible
        meter, prof = CpuMeter(st), Profiler(ctx.profile, ctx.profdir, f"{ctx.run_id}-C")
        meter.start()
        producer = start_helper(st, ["-m", "bench.produce", "--count", str(n)], "produce")
        prof.start(
            {
                "api": st.procs["api"].popen.pid,
                "priority": st.procs["worker-priority"].popen.pid,
                "bulk": st.procs["worker-bulk"].popen.pid,
            }
        )
        produced = finish_helper(producer)
        maybe_analyze(ctx)
        st.wait_sim_count(n, timeout=1800)
        _count, last_sent = st.wait_db_sent(n)
        profile = prof.stop()
        cpu = meter.stop({"producer": produced["cpu_s"]})
        time.sleep(0.5)
        records = stop_otp(otp, otp_out)
        keys_file.unlink()
        wait_refs(st, {r["ref"] for r in records if r.get("ok") and r.get("ref")}, timeout=30)
        submits = st.sim_submits()
    at_by_ref = {s["ref"]: s["at"] for s in submits}
    otp_refs = {r["ref"] for r in records if r.get("ref")}
    t0 = produced["t_first"]
    lat, counts = otp_latencies(records, at_by_ref, t0, last_sent)
    idle, _ = otp_latencies(records, at_by_ref, 0, t0)
    figs = latency_figures(lat)
    accept = latency_figures(
        [r["accept_ms"] for r in records if r.get("ok") and t0 <= r["t0"] <= last_sent]
    )
    bulk_times = [s["at"] for s in submits if s["ref"] not in otp_refs]
    ctx.save_raw(
        "C",
        {
            "otp": records,
            "at_by_otp_ref": {r: at_by_ref.get(r) for r in otp_refs},
            "t0": t0,
            "last_sent": last_sent,
        },
    )
    out: dict[str, Any] = {
        "p50_ms": figs["p50"],
        "p95_ms": figs["p95"],
        "p99_ms": figs["p99"],
        "max_ms": figs["max"],
        "otp_sent": counts["sent"],
        "otp_lost": counts["refused"] + counts["not_received"],
        "otp_idle_p50_ms": latency_figures(idle)["p50"],
        "otp_idle_p99_ms": latency_figures(idle)["p99"],
        "otp_accept_ms": accept,
        "messages": n,
        "bulk_msgs_per_s": round(n / (last_sent - t0), 1),
        "duration_s": round(last_sent - t0, 3),
        "api_workers": API_WORKERS,
        **per_message(cpu, n),
        "cpu": cpu,
        "profile": profile,
    }
    series = {
        "ours: bulk lane": (bulk_times, t0),
        "ours: priority lane (OTP)": ([at_by_ref[r] for r in otp_refs if r in at_by_ref], t0),
    }
    latency = {"ours": figs}
    if ctx.baseline:
        nb = 2_000 if ctx.quick else 20_000
        base = baseline_flood(ctx, "C-baseline", nb, same_text=False, otp=True)
        b = base["otp"]
        out.update(
            {
                "baseline_p50_ms": b["p50"],
                "baseline_p95_ms": b["p95"],
                "baseline_p99_ms": b["p99"],
                "baseline_max_ms": b["max"],
            }
        )
        out["baseline"] = {
            "otp": b,
            "flood_messages": base["messages"],
            "flood_msgs_per_s": base["msgs_per_s"],
        }
        latency["baseline (single queue)"] = {k: b[k] for k in ("p50", "p95", "p99", "max")}
        series["baseline: single queue (all)"] = (base["times"] + base["otp_times"], base["t0"])
        out["ratio"] = round(b["p99"] / out["p99_ms"], 1) if out["p99_ms"] else None
    out["chart"] = str(
        render(
            ctx.chart("C"),
            f"C. 20 OTP/s during a {n:,}-message flood",
            series=series,
            latency=latency,
        )
    )
    return out
