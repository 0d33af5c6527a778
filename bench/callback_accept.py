"""How many carrier callbacks the API takes: one report per request, 32 connections.

Carriers post delivery reports one per request or in arrays; the API commits them to the
callback inbox (the database) before answering. This starts the API (2 processes) on a fresh
benchmark database and Redis, with no worker pools (the rows stay; applying them is the dlr
lane's work, not measured here), drives ``POST /carrier/default/reports`` with ``wrk -t1 -c32``
(``bench/wrk_callback.lua``) after 2 s of warm-up, and prints one JSON line: req/s, p50/p99 and
the CPU per request of the API and of PostgreSQL.

    .venv/bin/python -m bench.callback_accept [--seconds 15]

Needs ``wrk`` (``make bench`` installs it) and the services of ``make services``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from typing import Any

from bench.common import API_WORKERS
from bench.stack import ROOT, BenchStack, CpuMeter

TOKEN = "bench-callback-token"
SCRIPT = str(ROOT / "bench" / "wrk_callback.lua")


def _wrk(url: str, seconds: int) -> dict[str, Any]:
    out = subprocess.run(
        ["wrk", "-t1", "-c32", f"-d{seconds}s", "-s", SCRIPT, url],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "BENCH_CALLBACK_TOKEN": TOKEN},
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    """Measure and print one JSON line."""
    p = argparse.ArgumentParser(prog="python -m bench.callback_accept")
    p.add_argument("--seconds", type=int, default=15)
    args = p.parse_args(argv)
    logdir = ROOT / "bench" / "results" / "logs" / "callback_accept"
    with BenchStack("callback", logdir, {"carrier_callback_token": TOKEN}) as st:
        st.start_api(API_WORKERS)
        st.wait_ready()
        _wrk(st.api_url, 2)
        meter = CpuMeter(st)
        meter.start()
        r = _wrk(st.api_url, args.seconds)
        cpu = meter.stop()
    n = int(r["requests"])
    print(
        json.dumps(
            {
                "req_per_s": round(n / (r["duration_us"] / 1e6), 1),
                "p50_ms": r["p50_us"] / 1000,
                "p99_ms": r["p99_us"] / 1000,
                "status_errors": r["status_errors"],
                "api_us_per_request": round(cpu["api"]["cpu_s"] / n * 1e6),
                "postgres_us_per_request": round(cpu["postgres"]["cpu_s"] / n * 1e6),
                "machine_busy_pct": cpu["machine_busy_pct"],
                "api_workers": API_WORKERS,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
