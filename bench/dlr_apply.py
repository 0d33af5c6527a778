"""How fast a dlr pool applies delivery reports (the operations guide's dlr sizing figure).

Starts the API (2 processes) and the scheduler on a fresh benchmark database, records
``--count`` messages as ``sent`` with carrier ids, and posts one delivery report per message to
``POST /carrier/default/reports``, one report per request from 32 clients (a carrier that does
not batch: the callback inbox then holds one row per group of concurrent requests). Only then
does it start a dlr pool of ``--concurrency`` processes, and it measures the rate at which the
reports are applied: ``count / (last report_at − first report_at)`` from the log, which leaves
the pool's start-up out, and the CPU per report of the pool and of PostgreSQL meanwhile.

    .venv/bin/python -m bench.dlr_apply [--count 50000] [--concurrency 1] [--profile]

Needs the services of ``make services``. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp

from bench.common import API_WORKERS
from bench.profiling import Profiler
from bench.stack import ROOT, BenchStack, CpuMeter, db_query, wait_until

TOKEN = "bench-callback-token"
CLIENTS = 32


def _record_sent(count: int) -> None:
    """``count`` messages of the benchmark account, ``sent`` on ``default`` as ``c-<i>``."""
    [(account_id,)] = db_query("SELECT id FROM accounts WHERE name = 'bench'")
    db_query(
        "INSERT INTO messages (id, account_id, submission_id, external_id, phone, sender, body,"
        " parts, encoding, flash, lane, status, created_at, status_at, valid_until, attempts,"
        " connection, carrier_message_id, sent_at)"
        " SELECT 'm-' || i, %s, 's-1', '', '+48500100200', 'BENCH', 'x', 1, 'gsm7', false,"
        " 'bulk', 'sent', now, now, now + 86400, 1, 'default', 'c-' || i, now"
        " FROM generate_series(1, %s) AS i,"
        " (SELECT extract(epoch FROM clock_timestamp()) AS now) AS t",
        (account_id, count),
    )
    db_query("ANALYZE messages")


async def _post_reports(url: str, count: int) -> int:
    """One report per request, ``CLIENTS`` at a time; how many were answered 200."""
    ids = iter(range(1, count + 1))
    ok = 0
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(url, headers=headers) as session:

        async def client() -> None:
            nonlocal ok
            for i in ids:
                body = {"id": f"c-{i}", "stat": "DELIVRD", "err": "000"}
                async with session.post("/carrier/default/reports", json=body) as resp:
                    await resp.read()
                    ok += resp.status == 200

        await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return ok


def main(argv: list[str] | None = None) -> int:
    """Measure and print one JSON line."""
    p = argparse.ArgumentParser(prog="python -m bench.dlr_apply")
    p.add_argument("--count", type=int, default=50_000)
    p.add_argument("--concurrency", type=int, default=1, help="dlr pool processes (Procfile: 1)")
    p.add_argument("--profile", action="store_true", help="py-spy on the pool + PostgreSQL")
    args = p.parse_args(argv)
    logdir = ROOT / "bench" / "results" / "logs" / "dlr_apply"
    with BenchStack("dlr", logdir, {"carrier_callback_token": TOKEN}) as st:
        st.start_api(API_WORKERS)
        st.start_scheduler()
        st.wait_ready()
        st.create_account("bench")
        _record_sent(args.count)
        started = time.perf_counter()
        answered = asyncio.run(_post_reports(st.api_url, args.count))
        post_s = time.perf_counter() - started
        [(rows,)] = db_query("SELECT count(*) FROM carrier_callbacks")
        meter = CpuMeter(st)
        meter.start()
        pool = st.start_worker("dlr", args.concurrency)
        prof = Profiler(args.profile, ROOT / "bench" / "results" / "profiles", "dlr_apply")
        prof.start({"dlr": pool.popen.pid})
        wait_until(
            lambda: (
                db_query("SELECT count(*) FROM messages WHERE status = 'delivered'")[0][0]
                >= args.count
            ),
            600,
            "every report applied",
            interval=0.25,
        )
        cpu = meter.stop()
        profile = prof.stop()
        [(first, last)] = db_query("SELECT min(report_at), max(report_at) FROM messages")
    n = args.count
    print(
        json.dumps(
            {
                "reports": n,
                "answered_200": answered,
                "inbox_rows": int(rows),
                "posted_per_s": round(n / post_s, 1),
                "applied_per_s": round(n / (float(last) - float(first)), 1),
                "dlr_processes": args.concurrency,
                "dlr_us_per_report": round(cpu["dlr"]["cpu_s"] / n * 1e6),
                "postgres_us_per_report": round(cpu["postgres"]["cpu_s"] / n * 1e6),
                **({"profile": profile} if profile else {}),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
