"""What the scenario modules share: the run context, statistics, helper processes, baselines."""

from __future__ import annotations

import gzip
import json
import math
import signal
import subprocess
import time
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.stack import PY, ROOT, BenchStack, CpuMeter, RssSampler, db_query

API_WORKERS = 2  # uvicorn processes: one per core
BASELINE_CONCURRENCY = 4  # prefork children of the naive worker (2 x cores: it blocks on I/O)


@dataclass
class Ctx:
    """One invocation of ``bench.run``."""

    quick: bool
    run_id: str
    logdir: Path
    chartdir: Path
    profdir: Path
    profile: bool
    baseline: bool = True
    analyze: bool = False  # ANALYZE messages right after producing (fresh planner statistics)
    notes: list[str] = field(default_factory=list)
    # "pgbouncer": the scenario's processes reach PostgreSQL through PgBouncer (``--pgbouncer``).
    pooler: str = ""

    def chart(self, scenario: str) -> Path:
        """Where the scenario's PNG goes."""
        suffix = f"-{self.pooler}" if self.pooler else ""
        return self.chartdir / f"{self.run_id}-{scenario}{suffix}.png"

    def save_raw(self, name: str, data: Any) -> None:
        """Keep raw series (carrier timestamps, latencies) under ``results/raw`` (not in git)."""
        path = self.chartdir.parent / "raw" / f"{self.run_id}-{name}.json.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            json.dump(data, fh)


def maybe_analyze(ctx: Ctx) -> None:
    """With ``--analyze``: refresh PostgreSQL's statistics of ``messages`` now.

    On a table whose statistics predate a burst of queued rows, the planner estimates that few
    rows are ``queued`` and answers the workers' ``id IN (...) AND status = 'queued'`` through
    the partial index ``ix_messages_queued``, i.e. by scanning every queued row. This option
    shows what fresh statistics change; it is off by default (the product does not do it).
    """
    if ctx.analyze:
        db_query("ANALYZE messages")


def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile ``p`` (0-100) of ``values`` (0.0 when empty)."""
    if not values:
        return 0.0
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))
    return float(s[k])


def latency_figures(ms: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max in ms, rounded."""
    return {
        k: round(pct(ms, p), 2) for k, p in (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100))
    }


def windows(times: Sequence[float], skip_s: float = 1.0) -> dict[str, float]:
    """Highest sliding 1-s window and the mean rate, skipping the first and last ``skip_s``."""
    ts = sorted(times)
    if len(ts) < 2:
        return {"max_window_per_s": 0.0, "mean_per_s": 0.0, "max_fixed_second": 0.0}
    lo, hi = ts[0] + skip_s, ts[-1] - skip_s
    inner = [t for t in ts if lo <= t <= hi]
    best = 0
    for i, t in enumerate(inner):
        if t + 1.0 > hi:
            break
        best = max(best, bisect_left(inner, t + 1.0) - i)
    fixed: dict[int, int] = {}
    for t in ts:
        if int(t) > int(ts[0]) and int(t) < int(ts[-1]):  # whole calendar seconds only
            fixed[int(t)] = fixed.get(int(t), 0) + 1
    return {
        "max_window_per_s": float(best),
        "mean_per_s": round(len(inner) / max(1e-9, hi - lo), 1),
        "max_fixed_second": float(max(fixed.values(), default=0)),
    }


def run_helper(
    stack: BenchStack, argv: list[str], name: str, timeout: float = 1800
) -> dict[str, Any]:
    """Run a ``bench`` helper process to completion; its JSON stdout."""
    log = stack.logdir / f"{stack.name}-{name}.log"
    with open(log, "ab") as err:
        p = subprocess.run(
            [PY, *argv],
            env=stack.env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=err,
            timeout=timeout,
            check=False,
        )
    if p.returncode != 0:
        raise RuntimeError(
            f"{name} failed ({p.returncode}): {log.read_text(errors='replace')[-3000:]}"
        )
    return dict(json.loads(p.stdout.decode().strip().splitlines()[-1]))


def start_helper(stack: BenchStack, argv: list[str], name: str) -> subprocess.Popen[bytes]:
    """Start a ``bench`` helper in the background (stdout captured as JSON)."""
    log = stack.logdir / f"{stack.name}-{name}.log"
    with open(log, "ab") as err:
        return subprocess.Popen(
            [PY, *argv], env=stack.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=err
        )


def finish_helper(p: subprocess.Popen[bytes], timeout: float = 1800) -> dict[str, Any]:
    """Wait for a helper started with :func:`start_helper`; its JSON stdout."""
    out, _ = p.communicate(timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"helper failed with exit code {p.returncode}")
    return dict(json.loads(out.decode().strip().splitlines()[-1]))


def stop_otp(p: subprocess.Popen[bytes], out: Path) -> list[dict[str, Any]]:
    """SIGTERM the OTP sender, wait for it to flush, read its records."""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    p.wait(60)
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def wait_refs(stack: BenchStack, refs: set[str], timeout: float) -> dict[str, float]:
    """Carrier receive time by ref, after waiting up to ``timeout`` for all ``refs`` to arrive."""
    deadline = time.monotonic() + timeout
    while True:
        at_by_ref = {s["ref"]: s["at"] for s in stack.sim_submits()}
        if refs <= at_by_ref.keys() or time.monotonic() > deadline:
            return at_by_ref
        time.sleep(0.5)


def otp_latencies(
    records: list[dict[str, Any]], at_by_ref: dict[str, float], t_from: float, t_to: float
) -> tuple[list[float], dict[str, int]]:
    """Carrier receive time - client send time (ms) of OTPs sent within [t_from, t_to]."""
    lat: list[float] = []
    counts = {"sent": 0, "refused": 0, "not_received": 0}
    for r in records:
        if not t_from <= r["t0"] <= t_to:
            continue
        counts["sent"] += 1
        if not r.get("ok") or not r.get("ref"):
            counts["refused"] += 1
            continue
        at = at_by_ref.get(r["ref"])
        if at is None:
            counts["not_received"] += 1
            continue
        lat.append((at - r["t0"]) * 1000)
    return lat, counts


def ratio(ours: float | None, base: float | None) -> float | None:
    """ours / baseline, rounded (``None`` when either is missing or zero)."""
    if not ours or not base:
        return None
    return round(ours / base, 2)


def baseline_flood(
    ctx: Ctx, name: str, count: int, same_text: bool, otp: bool, rate_limit: str = "1000000/s"
) -> dict[str, Any]:
    """The naive design end to end: ``count`` tasks ``.delay()``-ed in a loop, optionally 20
    OTP/s on the same single queue. Throughput = count / (last carrier receipt - first delay).
    """
    with BenchStack(name, ctx.logdir) as st:
        st.start_simulator()
        st.start_baseline_worker("base", BASELINE_CONCURRENCY, rate_limit)
        st.wait_ready()
        time.sleep(0.3)
        meter = CpuMeter(st)
        meter.start()
        otp_out = ctx.logdir / f"{name}-otp.ndjson"
        otp_proc = None
        if otp:
            otp_proc = start_helper(
                st,
                ["-m", "bench.otp", "--mode", "celery", "--rate", "20", "--out", str(otp_out)],
                "otp",
            )
            time.sleep(1.0)
        res = run_helper(
            st,
            [
                "-m",
                "bench.baseline.produce",
                "--count",
                str(count),
                "--prefix",
                "b",
                *(["--same-text"] if same_text else []),
            ],
            "produce",
        )
        stats = st.wait_sim_count(count + 1 + (1 if otp else 0), timeout=3600)
        # unique_refs counts the warm-up submits and OTPs too; wait for every flood message.
        submits = st.sim_submits()
        flood = [s["at"] for s in submits if s["ref"].startswith("b-") and s["ref"] != "b-warmup"]
        deadline = time.monotonic() + 600
        while len(flood) < count and time.monotonic() < deadline:
            time.sleep(0.5)
            submits = st.sim_submits()
            flood = [
                s["at"] for s in submits if s["ref"].startswith("b-") and s["ref"] != "b-warmup"
            ]
        cpu = meter.stop({"producer": res["cpu_s"]})
        out: dict[str, Any] = {
            "messages": len(flood),
            "duration_s": round(max(flood) - res["t_first"], 3),
            "msgs_per_s": round(len(flood) / max(1e-9, max(flood) - res["t_first"]), 1),
            "produce_s": round(res["t_done"] - res["t_first"], 3),
            "cpu": cpu,
            "times": flood,
            "t0": res["t_first"],
            "duplicates": stats.get("duplicate_submits", 0),
        }
        if otp_proc is not None:
            records = stop_otp(otp_proc, otp_out)
            # OTPs published near the end of the flood sit behind it: wait for them too.
            at_by_ref = wait_refs(st, {r["ref"] for r in records}, timeout=120)
            lat, counts = otp_latencies(records, at_by_ref, res["t_first"], max(flood))
            out["otp"] = {**latency_figures(lat), **counts}
            out["otp_times"] = [at_by_ref[r["ref"]] for r in records if r["ref"] in at_by_ref]
    return out


def baseline_rss(
    ctx: Ctx, name: str, count: int, rate_limit: str, settle_s: float
) -> dict[str, Any]:
    """Worker RSS of the naive design while ``count`` tasks are queued (F's baseline)."""
    with BenchStack(name, ctx.logdir) as st:
        st.start_simulator()
        st.start_baseline_worker("base", BASELINE_CONCURRENCY, rate_limit)
        st.wait_ready()
        with RssSampler(st, ("baseline",)) as rss:
            res = run_helper(
                st,
                ["-m", "bench.baseline.produce", "--count", str(count), "--same-text"],
                "produce",
            )
            time.sleep(settle_s)
        sent = st.sim_stats()["unique_refs"]
    return {
        "max_rss_mb": round(max(rss.max_rss.values(), default=0.0), 1),
        "per_process_mb": {rss.names[p]: round(v, 1) for p, v in rss.max_rss.items()},
        "produce_s": round(res["t_done"] - res["t_first"], 1),
        "sent_meanwhile": sent,
        "queued": count - sent,
    }
