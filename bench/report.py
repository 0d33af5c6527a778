"""``bench/results/latest.json`` and the run's Markdown log, ``bench/results/runs/<run>.md``.

``docs/benchmarks.md`` is a summary curated by hand from these logs; a run never edits it.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import Ctx

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "bench" / "results" / "runs"

# (scenario, key, target, goal, higher_is_better, unit)
FIGURES: list[tuple[str, str, float | None, float | None, bool, str]] = [
    ("A", "msgs_per_s", 10_000, 20_000, True, "msg/s"),
    ("B", "msgs_per_s", 5_000, 8_000, True, "msg/s"),
    ("C", "p50_ms", None, None, False, "ms"),
    ("C", "p99_ms", 100, 50, False, "ms"),
    ("D", "max_window_per_s", None, None, False, "msg/s"),
    ("D", "mean_per_s", None, None, True, "msg/s"),
    ("E", "req_per_s", 2_000, 4_000, True, "req/s"),
    ("E", "p99_ms", 25, None, False, "ms"),
    ("F", "max_rss_mb", 200, 120, False, "MB"),
    ("G", "msgs_per_s", 3_000, 6_000, True, "msg/s"),
    ("G", "otp_p99_ms", None, 50, False, "ms"),
    ("L", "redirects_per_s", 5_000, 10_000, True, "req/s"),
    ("L", "p99_ms", 10, None, False, "ms"),
    ("H", "fair_share_ratio", 2.0, 1.2, False, "×"),
    ("H", "otp_p99_ms", None, None, False, "ms"),
]
RATIO_IS = {
    "A": "ours msgs_per_s / baseline msgs_per_s",
    "B": "ours msgs_per_s / baseline msgs_per_s",
    "C": "baseline p99_ms / ours p99_ms",
    "D": "baseline max_window_per_s / ours max_window_per_s",
    "E": "n/a (no baseline)",
    "F": "baseline max_rss_mb / ours max_rss_mb",
    "G": "n/a (no baseline)",
    "L": "n/a (no baseline)",
    "H": "FIFO fair_share_ratio / ours (the baseline is our own lane with fairness off)",
}
BASELINE_KEY = {
    ("A", "msgs_per_s"): "baseline_msgs_per_s",
    ("B", "msgs_per_s"): "baseline_msgs_per_s",
    ("C", "p50_ms"): "baseline_p50_ms",
    ("C", "p99_ms"): "baseline_p99_ms",
    ("D", "max_window_per_s"): "baseline_max_window_per_s",
    ("D", "mean_per_s"): "baseline_mean_per_s",
    ("F", "max_rss_mb"): "baseline_max_rss_mb",
    ("H", "fair_share_ratio"): "fifo_fair_share_ratio",
    ("H", "otp_p99_ms"): "fifo_otp_p99_ms",
}


def _cmd(argv: list[str]) -> str:
    try:
        return subprocess.run(
            argv, cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        return ""


def machine() -> dict[str, Any]:
    """nproc, CPU model, RAM, kernel, Python, PostgreSQL/Redis versions, commit."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gb = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram_gb = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    # BENCH_COMMIT: set when the run measures an exported snapshot (``git archive``) of a commit.
    commit = os.environ.get("BENCH_COMMIT") or _cmd(["git", "rev-parse", "HEAD"]) or "unknown"
    dirty = not os.environ.get("BENCH_COMMIT") and bool(
        _cmd(["git", "status", "--porcelain", "--untracked-files=no"])
    )
    return {
        "nproc": os.cpu_count() or 0,
        "cpu_model": model,
        "ram_gb": ram_gb,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgres": _cmd(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-tAc",
                "show server_version",
            ]
        ),
        "redis": _cmd(["redis-server", "--version"]).split(" v=")[-1].split(" ")[0],
        "commit": commit,
        "dirty_tree": dirty,
        "loadavg_at_start": list(os.getloadavg()),
    }


def _passes(name: str, res: dict[str, Any]) -> bool | None:
    if "error" in res:
        return False
    if name == "A":
        return res.get("msgs_per_s", 0) >= 10_000
    if name == "B":
        return res.get("msgs_per_s", 0) >= 5_000 and (res.get("ratio") or 0) >= 7
    if name == "C":
        return res.get("p99_ms", 1e9) <= 100
    if name == "D":
        limit = res.get("limit_per_s", 0)
        return (
            res.get("max_window_per_s", 1e9) <= limit * 1.02
            and res.get("mean_per_s", 0) >= limit * 0.97
        )
    if name == "E":  # billing off, and on when measured (docs/prices.md)
        return all(
            r.get("req_per_s", 0) >= 2_000 and r.get("p99_ms", 1e9) <= 25
            for r in (res, res.get("billing") or res)
        )
    if name == "F":
        return res.get("max_rss_mb", 1e9) <= 200
    if name == "H":
        return res.get("fair_share_ratio", 1e9) <= 2.0
    if name == "L":
        return (
            res.get("redirects_per_s", 0) >= 5_000
            and res.get("p99_ms", 1e9) <= 10
            and res.get("paced_per_s", 0) >= 5_000  # the p99 is the paced run's
            and res.get("clicks_lost", 1) == 0
            and res.get("errors", 1) == 0
        )
    return None


def _keys(name: str) -> list[str]:
    """The headline figures of scenario ``name``."""
    return [k for s, k, *_ in FIGURES if s == name]


def headline(name: str, res: dict[str, Any]) -> str:
    """One line for the console."""
    if "error" in res:
        return "ERROR " + res["error"][:300]
    keys = _keys(name)
    parts = [f"{k}={res.get(k)}" for k in keys]
    parts += [f"{v}={res.get(v)}" for (s, k), v in BASELINE_KEY.items() if s == name and v in res]
    if res.get("ratio") is not None:
        parts.append(f"ratio={res['ratio']}")
    billed = res.get("billing")
    if isinstance(billed, dict):
        parts += [f"billing {k}={billed.get(k)}" for k in keys]
    return ", ".join(parts)


def _inline(figures: dict[str, Any]) -> str:
    """``key value, key sub value, …`` on one line (one level of nested dicts)."""

    def one(v: Any) -> str:
        if isinstance(v, dict):
            return ", ".join(f"{k} {_fmt(x)}" for k, x in v.items())
        return _fmt(v)

    return ", ".join(f"{k} {one(v)}" for k, v in figures.items())


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def table(results: dict[str, Any]) -> str:
    """Markdown table: figure, measured, target (goal), baseline, ratio, pass."""
    rows = [
        "| scenario | figure | measured | target (goal) | baseline | ratio | pass |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, key, target, goal, higher, unit in FIGURES:
        res = results.get(name)
        if res is None:
            continue
        if "error" in res:
            rows.append(f"| {name} | {key} | error: {res['error'][:80]} | | | | no |")
            continue
        if name == "D":
            limit = res.get("limit_per_s", 0)
            target = limit * 1.02 if key == "max_window_per_s" else limit * 0.97
        sign = "≥" if higher else "≤"
        tgt = f"{sign} {_fmt(target)}" if target is not None else ""
        if goal is not None:
            tgt += f" ({_fmt(goal)})"
        base = res.get(BASELINE_KEY.get((name, key), ""))
        r = None
        if base and not (name == "D" and key == "mean_per_s"):  # accuracy, not "more is better"
            r = round(res[key] / base, 2) if higher else round(base / max(1e-9, res[key]), 2)
        ok = _passes(name, res) if target is not None else None
        rows.append(
            f"| {name} | {key} ({unit}) | {_fmt(res.get(key))} | {tgt} | {_fmt(base)} | "
            f"{_fmt(r) + '×' if r else 'n/a'} | "
            f"{'' if ok is None else ('yes' if ok else 'no')} |"
        )
        bounced = res.get("pgbouncer")
        if isinstance(bounced, dict):  # the same scenario behind PgBouncer (--pgbouncer)
            shown = f"error: {bounced['error'][:80]}" if "error" in bounced else bounced.get(key)
            ok = None if target is None or "error" in bounced else _passes(name, bounced)
            rows.append(
                f"| {name} behind PgBouncer | {key} ({unit}) | {_fmt(shown)} | {tgt} | | | "
                f"{'' if ok is None else ('yes' if ok else 'no')} |"
            )
    return "\n".join(rows)


def write(
    out: Path,
    results: dict[str, Any],
    ceiling: dict[str, Any],
    mach: dict[str, Any],
    ctx: Ctx,
    total_s: float,
    docs: bool = True,
) -> Path | None:
    """Write/merge the JSON and the run's log ``RUNS/<run>.md`` (returns the log's path)."""
    ceiling_per_s = ceiling.get("single_req_per_s")
    common = {
        "commit": mach["commit"],
        "nproc": mach["nproc"],
        "carrier_ceiling_per_s": ceiling_per_s,
        "run_id": ctx.run_id,
        "quick": ctx.quick,
        "database": "postgresql",
    }
    data: dict[str, Any] = {}
    if out.exists():
        try:
            data = json.loads(out.read_text())
        except ValueError:
            data = {}
    for name, res in results.items():
        res.update(common)
        res["ratio_is"] = RATIO_IS.get(name)
        res["passes_target"] = _passes(name, res)
        for part in (res, res.get("pgbouncer") or {}):
            if part.get("chart"):
                part["chart"] = os.path.relpath(part["chart"], ROOT)
        data[name] = res
    data["carrier_ceiling_per_s"] = ceiling_per_s
    data["carrier_ceiling"] = ceiling
    data["machine"] = mach
    data["run"] = {
        "run_id": ctx.run_id,
        "quick": ctx.quick,
        "profile": ctx.profile,
        "analyze": ctx.analyze,
        "baseline": ctx.baseline,
        "total_s": round(total_s, 1),
        "scenarios": list(results),
        "notes": ctx.notes,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    tmp.replace(out)
    if not docs:
        return None
    log = RUNS / f"{ctx.run_id}.md"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(
        section(results, ceiling, mach, ctx, total_s).rstrip("\n") + "\n", encoding="utf-8"
    )
    return log


def _cpu_line(cpu: dict[str, Any] | None) -> str:
    if not cpu:
        return ""
    groups = [
        f"{k} {v['core_pct']}%"
        for k, v in cpu.items()
        if isinstance(v, dict) and v.get("core_pct", 0) >= 1
    ]
    return (
        f"CPU (% of one core over {cpu.get('wall_s')} s; machine busy "
        f"{cpu.get('machine_busy_pct')}% of 2 cores): " + ", ".join(groups)
    )


def _profile_lines(profile: dict[str, Any] | None) -> list[str]:
    lines: list[str] = []
    for label, summ in (profile or {}).items():
        if label == "postgres":
            stmts = "; ".join(f"`{q[:70]}` {p}%" for q, p in summ["statements_pct"][:4])
            waits = ", ".join(f"{w} {p}%" for w, p in summ["wait_events_pct"][:3])
            lines.append(
                f"  - PostgreSQL: {summ['mean_active_backends']} active backends on "
                f"average; statements: {stmts}; waits: {waits}"
            )
        else:
            libs = ", ".join(f"{k} {v}%" for k, v in summ["by_library_pct"][:6])
            lines.append(f"  - py-spy {label} ({summ['samples']} samples): {libs}")
    return lines


def section(
    results: dict[str, Any], ceiling: dict[str, Any], mach: dict[str, Any], ctx: Ctx, total_s: float
) -> str:
    """The Markdown log of one run (charts linked relative to ``RUNS``)."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    form = "quick" if ctx.quick else "full"
    flags = (" --quick" if ctx.quick else "") + (" --profile" if ctx.profile else "")
    flags += (" --analyze" if ctx.analyze else "") + ("" if ctx.baseline else " --no-baseline")
    if len(results) == 1:
        flags += f" --scenario {next(iter(results))}"
    if any("pgbouncer" in res for res in results.values()):
        flags += " --pgbouncer"
    out = [
        f"# {when}: {form} run `{ctx.run_id}`",
        "",
        f"Machine: {mach['nproc']} cores ({mach['cpu_model']}), {mach['ram_gb']} GB RAM, "
        f"Linux {mach['kernel']}, Python {mach['python']}, PostgreSQL {mach['postgres']}, "
        f"Redis {mach['redis']}; load average at start {mach['loadavg_at_start'][0]:.2f}. "
        f"Commit `{mach['commit'][:12]}`{' (work tree modified)' if mach['dirty_tree'] else ''}"
        f". Message log on PostgreSQL. Total {total_s:.0f} s. "
        f"Reproduce: `.venv/bin/python -m bench.run{flags}`.",
        "",
        f"Carrier ceiling (simulator alone, `simulator.loadgen`): "
        f"{_fmt(ceiling.get('single_req_per_s'))} single submits/s (64 connections), "
        f"{_fmt(ceiling.get('batch_recipients_per_s'))} recipients/s in batches of 500"
        + (f"; error: {ceiling['error']}" if "error" in ceiling else "")
        + ".",
        "",
        table(results),
        "",
    ]
    for name, res in results.items():
        out.append(
            f"**{name}** ({res.get('wall_s', '?')} s)"
            + (f": error `{res['error'][:300]}`" if "error" in res else "")
        )
        details = {k: v for k, v in res.items() if k in DETAIL_KEYS}
        if details:
            out.append("- figures: " + _inline(details))
        if res.get("baseline"):
            b = {k: v for k, v in res["baseline"].items() if k not in ("cpu", "per_process_mb")}
            out.append("- baseline: " + _inline(b))
        if res.get("cpu"):
            out.append("- " + _cpu_line(res["cpu"]))
            other = res["cpu"].get("other", {}).get("core_pct", 0)
            if other >= 25:
                out.append(
                    f"- **noisy machine**: processes outside the benchmark used {other}% of "
                    "a core during this scenario; figures are lower than on a dedicated box"
                )
        out.extend(_profile_lines(res.get("profile")))
        bounced = res.get("pgbouncer")
        if isinstance(bounced, dict):
            shown = {k: v for k, v in bounced.items() if k in DETAIL_KEYS or k in _keys(name)}
            error = f"error `{bounced['error'][:300]}`" if "error" in bounced else ""
            out.append(
                f"- behind PgBouncer ({bounced.get('wall_s', '?')} s): {error}" + _inline(shown)
            )
            if bounced.get("cpu"):
                out.append("  - " + _cpu_line(bounced["cpu"]))
            if bounced.get("chart"):
                chart = os.path.relpath(ROOT / bounced["chart"], RUNS)
                out.append(f"\n![{name} behind PgBouncer]({chart})")
        if res.get("chart"):
            chart = os.path.relpath(ROOT / res["chart"], RUNS)
            out.append(f"\n![{name}]({chart})")
        out.append("")
    if ctx.notes:
        out.append("Notes: " + "; ".join(ctx.notes))
    return "\n".join(out)


DETAIL_KEYS = (
    "messages",
    "fair_share_s",
    "measured_fair_share_ratio",
    "fifo_measured_fair_share_ratio",
    "b_share_while_sending",
    "fifo_b_share_while_sending",
    "b_completion_s",
    "fifo_b_completion_s",
    "a_throughput_loss",
    "lane_msgs_per_s",
    "fifo_lane_msgs_per_s",
    "requests",
    "duration_s",
    "produce_s",
    "accept_s",
    "p95_ms",
    "max_ms",
    "otp_sent",
    "otp_lost",
    "otp_accept_ms",
    "otp_idle_p50_ms",
    "bulk_msgs_per_s",
    "limit_per_s",
    "max_fixed_second",
    "p50_ms",
    "workers",
    "queued_at_end",
    "carrier_duplicates",
    "errors",
    "api_workers",
    "max_rss_by_process",
    "cpu_us_per_msg",
    "pg_wal_bytes_per_msg",
    "ceiling_req_per_s",
    "share_of_ceiling",
)


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.report [--from latest.json]``: print the run's Markdown section again."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m bench.report")
    p.add_argument("--from", dest="src", default=str(ROOT / "bench" / "results" / "latest.json"))
    args = p.parse_args(argv)
    data = json.loads(Path(args.src).read_text())
    run = data["run"]
    results = {k: data[k] for k in run["scenarios"] if k in data}
    ctx = Ctx(
        quick=run["quick"],
        run_id=run["run_id"],
        logdir=Path("."),
        chartdir=Path("."),
        profdir=Path("."),
        profile=run["profile"],
        baseline=run["baseline"],
        analyze=run.get("analyze", False),
        notes=run.get("notes", []),
    )
    print(section(results, data["carrier_ceiling"], data["machine"], ctx, run["total_s"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
