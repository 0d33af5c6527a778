"""E. API accept: single-recipient ``POST /v2.1/sms`` from 32 concurrent keep-alive clients.

``wrk -t1 -c32`` with ``bench/wrk_sms.lua`` (or an aiohttp closed loop when wrk is missing),
1 s of warm-up, then the measured run. Worker pools are stopped: this is what the API, the
group-commit writer, PostgreSQL and Redis accept; the messages stay queued. Accepted messages
per second over time come from ``messages.created_at`` in the log. Right after, the same
processes answer ``GET /healthz`` (a fixed small JSON body, no database, no Redis) under the same
load: ``ceiling_req_per_s``, what the HTTP layer alone allows on this machine in this run.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from typing import Any

import aiohttp

from bench.chart import render
from bench.common import API_WORKERS, Ctx, latency_figures
from bench.profiling import Profiler
from bench.stack import DATABASE_URL, ROOT, BenchStack, CpuMeter, db_query

CONNECTIONS = 32
BODY = {"sender": "BENCH", "message": "Your code is 123456", "phoneNumbers": ["+48500100200"]}


# E's ceiling: the same API processes answering a fixed small JSON body that touches neither
# the database nor Redis (the liveness probe), with the same load generator and settings.
CEILING_PATH = "/healthz"


def wrk(url: str, keys: dict[str, str], seconds: int, ceiling: bool = False) -> dict[str, Any]:
    """One wrk run; its JSON line (latencies in µs). ``ceiling``: GET :data:`CEILING_PATH`."""
    env = {
        **os.environ,
        "BENCH_APP_KEY": keys["Application-Key"],
        "BENCH_AUTH": keys["Authorization"],
        "BENCH_CEILING": "1" if ceiling else "0",
    }
    p = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{CONNECTIONS}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(ROOT / "bench" / "wrk_sms.lua"),
            url + (CEILING_PATH if ceiling else "/v2.1/sms"),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("{")][-1]
    r = json.loads(line)
    errors = sum(
        r[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
    )
    return {
        "tool": "wrk -t1 -c32",
        "requests": r["requests"],
        "req_per_s": round(r["requests"] / (r["duration_us"] / 1e6), 1),
        "p50_ms": r["p50_us"] / 1000,
        "p90_ms": r["p90_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "max_ms": r["max_us"] / 1000,
        "errors": errors,
    }


async def aiohttp_load(
    url: str, keys: dict[str, str], seconds: float, ceiling: bool = False
) -> dict[str, Any]:
    """Fallback closed-loop client: 32 coroutines, one request in flight each."""
    lat: list[float] = []
    errors = 0
    conn = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(url, headers=keys, connector=conn) as session:
        end = time.perf_counter() + seconds

        async def client() -> None:
            nonlocal errors
            while time.perf_counter() < end:
                t = time.perf_counter()
                call = (
                    session.get(CEILING_PATH) if ceiling else session.post("/v2.1/sms", json=BODY)
                )
                async with call as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
                lat.append((time.perf_counter() - t) * 1000)

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(CONNECTIONS)))
        took = time.perf_counter() - t0
    f = latency_figures(lat)
    return {
        "tool": "aiohttp x32",
        "requests": len(lat),
        "req_per_s": round(len(lat) / took, 1),
        "p50_ms": f["p50"],
        "p99_ms": f["p99"],
        "max_ms": f["max"],
        "errors": errors,
    }


def _fund(name: str) -> None:
    """Prices and a balance for the account (billing on): the default list prices Poland,
    and the balance pays for far more than the run sends."""
    from dispatcher.accounts.account import find_account
    from dispatcher.store.balances import post, set_limits
    from dispatcher.store.db import make_engine
    from dispatcher.store.prices import NewPrice, add_price

    engine = make_engine(DATABASE_URL, pool_size=1)
    account = find_account(engine, name)
    assert account is not None
    with engine.begin() as conn:
        add_price(conn, None, NewPrice("PL", "0.07", "PLN"), "bench")
        post(conn, account.id, "topup", 10**12, 985, "bench")
        set_limits(conn, account.id, 985, credit_limit=0)
    engine.dispose()


def _measure(ctx: Ctx, seconds: int, use_wrk: bool, billing: bool) -> dict[str, Any]:
    name = "E-billing" if billing else "E"
    with BenchStack(name, ctx.logdir, pooler=ctx.pooler) as st:
        if billing:
            st.env["SMSDISPATCH_BILLING"] = "true"
        st.start_api(API_WORKERS)
        st.wait_ready()
        keys = st.create_account("bench")
        if billing:
            _fund("bench")
        if use_wrk:
            wrk(st.api_url, keys, 1)
        else:
            asyncio.run(aiohttp_load(st.api_url, keys, 1))
        t_start = time.time()
        meter, prof = CpuMeter(st), Profiler(ctx.profile, ctx.profdir, f"{ctx.run_id}-{name}")
        meter.start()
        prof.start({"api": st.procs["api"].popen.pid})
        res = (
            wrk(st.api_url, keys, seconds)
            if use_wrk
            else asyncio.run(aiohttp_load(st.api_url, keys, seconds))
        )
        profile = prof.stop()
        cpu = meter.stop()
        created = [
            r[0]
            for r in db_query("SELECT created_at FROM messages WHERE created_at >= %s", (t_start,))
        ]
        stored = db_query("SELECT count(*) FROM messages")[0][0]
        if not billing:  # the HTTP layer alone, right after, on the same processes
            top = (
                wrk(st.api_url, keys, seconds, ceiling=True)
                if use_wrk
                else asyncio.run(aiohttp_load(st.api_url, keys, seconds, ceiling=True))
            )
            res["ceiling"] = {k: top[k] for k in ("req_per_s", "p50_ms", "p99_ms", "errors")}
        if billing:  # every accepted message was charged, and the ledger says so
            charged = db_query("SELECT count(*) FROM messages WHERE charged")[0][0]
            res["charged_messages"] = charged
    return {**res, "cpu": cpu, "profile": profile, "created": created, "stored": stored}


def run(ctx: Ctx) -> dict[str, Any]:
    """Run E (no baseline: the naive design has no accepting API), then the same with prices
    and balances on (docs/prices.md): each request is priced and charged at accept."""
    seconds = 8 if ctx.quick else 30
    use_wrk = shutil.which("wrk") is not None
    res = _measure(ctx, seconds, use_wrk, billing=False)
    billed = _measure(ctx, seconds, use_wrk, billing=True)
    created = res.pop("created")
    stored = res.pop("stored")
    cpu, profile = res.pop("cpu"), res.pop("profile")
    ceiling = res.pop("ceiling")
    billed_created = billed.pop("created")
    t_start = min(created) if created else time.time()
    out: dict[str, Any] = {
        **res,
        "seconds": seconds,
        "connections": CONNECTIONS,
        "api_workers": API_WORKERS,
        "workers": "stopped (accept path only)",
        "stored_messages": stored,
        "ceiling_req_per_s": ceiling["req_per_s"],
        "share_of_ceiling": round(res["req_per_s"] / max(1e-9, ceiling["req_per_s"]), 3),
        "ceiling": ceiling | {"path": f"GET {CEILING_PATH}"},
        "cpu": cpu,
        "profile": profile,
        "billing": {
            k: billed[k]
            for k in ("req_per_s", "p50_ms", "p99_ms", "max_ms", "errors", "requests", "cpu")
            if k in billed
        }
        | {"stored_messages": billed["stored"], "charged_messages": billed["charged_messages"]},
        "baseline": None,
        "ratio": None,
        "baseline_note": "n/a: the naive design has no accepting API (callers .delay() directly)",
    }
    out["chart"] = str(
        render(
            ctx.chart("E"),
            f"E. POST /v2.1/sms, {CONNECTIONS} clients, {res['tool']}",
            series={
                "accepted (messages.created_at)": (created, t_start),
                "accepted, billing on": (
                    billed_created,
                    min(billed_created) if billed_created else t_start,
                ),
            },
            latency={
                "ours": {"p50": res["p50_ms"], "p99": res["p99_ms"], "max": res["max_ms"]},
                "billing on": {
                    "p50": billed["p50_ms"],
                    "p99": billed["p99_ms"],
                    "max": billed["max_ms"],
                },
            },
            bin_s=1.0,
        )
    )
    return out
