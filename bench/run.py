"""``make bench`` / ``make bench-quick``: run the scenarios, write the JSON and the report.

    python -m bench.run [--quick] [--scenario A|B|C|D|E|F|G|H|L|ceiling] [--profile]
                        [--no-baseline] [--pgbouncer] [--out bench/results/latest.json]
                        [--no-docs]

Installs what the benchmark needs and the service does not (``bench/requirements.txt``:
matplotlib, py-spy; ``wrk`` from Debian when missing and apt-get is usable), then measures the
carrier's own ceiling and runs the scenarios in order; with ``--pgbouncer``, A and E run again
right after their direct run with every process behind PgBouncer in transaction mode
(``scripts/ensure-services.sh pgbouncer``), recorded under the scenario's ``pgbouncer`` key
beside the direct figures. A scenario that fails is recorded with
its error and the others still run. Results: ``--out`` (merged with the previous file when only
some scenarios ran), PNG charts under ``bench/results/charts/``, py-spy profiles under
``bench/results/profiles/``, process logs under ``bench/results/logs/<run>/``, and the run's
Markdown log in ``bench/results/runs/<run>.md`` (``docs/benchmarks.md`` summarises the latest).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import shutil
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.common import Ctx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SCENARIOS = ("A", "B", "C", "D", "E", "F", "G", "H", "L")
# Scenarios `--pgbouncer` repeats behind PgBouncer: the API's accept path and the bulk lane.
PGBOUNCER_SCENARIOS = ("A", "E")


def ensure_requirements() -> None:
    """pip-install ``bench/requirements.txt`` into this interpreter when something is missing."""
    missing = []
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        missing.append("matplotlib")
    if not Path(sys.executable).with_name("py-spy").exists() and not shutil.which("py-spy"):
        missing.append("py-spy")
    if missing:
        print(f"bench: installing {', '.join(missing)}", flush=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "-r",
                str(ROOT / "bench" / "requirements.txt"),
            ],
            check=True,
        )


def ensure_wrk() -> bool:
    """``wrk`` on PATH, installing Debian's package when possible; False if unavailable."""
    if shutil.which("wrk"):
        return True
    if shutil.which("apt-get") is None:
        return False
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print("bench: installing wrk (apt-get)", flush=True)
    subprocess.run([*sudo, "apt-get", "update", "-qq"], env=env, check=False)
    subprocess.run(
        [*sudo, "apt-get", "install", "-y", "-qq", "wrk"],
        env=env,
        check=False,
        stdout=subprocess.DEVNULL,
    )
    return shutil.which("wrk") is not None


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit code 0 even when targets are missed (it reports them)."""
    p = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--scenario", type=str.upper, choices=[*SCENARIOS, "CEILING"])
    p.add_argument("--quick", action="store_true", help="short form of every scenario")
    p.add_argument("--profile", action="store_true", help="py-spy + PostgreSQL sampling")
    p.add_argument("--no-baseline", action="store_true", help="skip the naive baseline runs")
    p.add_argument(
        "--pgbouncer",
        action="store_true",
        help="A, E: run again behind PgBouncer (127.0.0.1:6432, transaction mode)",
    )
    p.add_argument(
        "--no-docs", action="store_true", help="do not write bench/results/runs/<run>.md"
    )
    p.add_argument(
        "--analyze",
        action="store_true",
        help="B, C: ANALYZE messages right after producing (planner-statistics study)",
    )
    p.add_argument("--out", default=str(RESULTS / "latest.json"))
    args = p.parse_args(argv)
    os.chdir(ROOT)
    ensure_requirements()

    from bench import report
    from bench.ceiling import measure_ceiling
    from bench.common import Ctx

    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + ("-quick" if args.quick else "")
    ctx = Ctx(
        quick=args.quick,
        run_id=run_id,
        logdir=RESULTS / "logs" / run_id,
        chartdir=RESULTS / "charts",
        profdir=RESULTS / "profiles" / run_id,
        profile=args.profile,
        baseline=not args.no_baseline,
        analyze=args.analyze,
    )
    ctx.logdir.mkdir(parents=True, exist_ok=True)
    if args.scenario in (None, "E", "L") and not ensure_wrk():
        ctx.notes.append("wrk unavailable: E used the aiohttp load generator")
    started = time.monotonic()
    machine = report.machine()
    print(
        f"bench: run {run_id} on {machine['nproc']} cores, commit {machine['commit'][:12]}",
        flush=True,
    )
    ceiling = measure_ceiling(ctx)
    print(
        f"bench: carrier ceiling {ceiling.get('single_req_per_s')} req/s single, "
        f"{ceiling.get('batch_recipients_per_s')} recipients/s batched",
        flush=True,
    )
    chosen: tuple[str, ...] = SCENARIOS if args.scenario is None else (args.scenario,)
    if args.scenario == "CEILING":
        chosen = ()
    results: dict[str, Any] = {}
    quick = " (quick)" if args.quick else ""
    for name in chosen:
        results[name] = _timed(name, name + quick, ctx)
        if args.pgbouncer and name in PGBOUNCER_SCENARIOS:
            # Right after the direct run, so the two see the same machine; no baseline again.
            bounced = dataclasses.replace(
                ctx, pooler="pgbouncer", baseline=False, logdir=ctx.logdir / "pgbouncer"
            )
            bounced.logdir.mkdir(parents=True, exist_ok=True)
            results[name]["pgbouncer"] = _timed(name, f"{name}{quick} behind PgBouncer", bounced)
    doc = report.write(
        Path(args.out),
        results,
        ceiling,
        machine,
        ctx,
        total_s=time.monotonic() - started,
        docs=not args.no_docs,
    )
    print(f"bench: wrote {args.out}" + (f" and {doc}" if doc else ""), flush=True)
    print(report.table(results), flush=True)
    return 0


def _timed(name: str, label: str, ctx: Ctx) -> dict[str, Any]:
    """Run scenario ``name`` on ``ctx``, recording an error instead of raising, and its wall
    time."""
    from bench import report

    t = time.monotonic()
    print(f"bench: scenario {label} ...", flush=True)
    try:
        res: dict[str, Any] = importlib.import_module(f"bench.scenario_{name.lower()}").run(ctx)
    except Exception as exc:  # report and go on with the other scenarios
        traceback.print_exc()
        res = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
    res["wall_s"] = round(time.monotonic() - t, 1)
    print(f"bench: {label} done in {res['wall_s']} s: {report.headline(name, res)}", flush=True)
    return res


if __name__ == "__main__":
    sys.exit(main())
