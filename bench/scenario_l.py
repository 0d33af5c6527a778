"""L. Short-link redirects: ``GET {base}/{code}`` from 32 concurrent keep-alive clients.

10,000 messages sent with ``shortLink`` (one link each, written through the same code as the
API: :func:`dispatcher.intake.submit.prepare` and the group-commit insert), to an account with a
webhook URL, so every first click also creates its ``message.click`` delivery (no webhooks
pool runs: they stay pending). Then ``smsdispatch links`` (``LINKS_WORKERS`` processes) and
``wrk -t1 -c32`` with ``bench/wrk_links.lua`` on random codes as a phone's browser, 2 s of
warm-up, then two measured runs: at **saturation** (every connection sends its next request as
soon as the answer comes: the most redirects per second, and the latency of a service with no
headroom), and **paced** (each connection pauses :data:`PAUSE_MS` after each answer, so that
the 32 together ask about :data:`PACED_RATE` a second: the latency a service answering
5,000 clicks a second gives them). ``redirects_per_s`` is the saturation rate; ``p99_ms`` is the
paced run's p99 at its measured rate (``paced_per_s``, never below the target, or the run says
so); the saturation run's own percentiles are under ``saturation``. wrk's pause is counted from
each answer, so a stall delays the requests behind it instead of piling them up: the paced p99
does not include the queueing a fixed-schedule (open-loop) generator would add during a stall.
Every answered redirect must be a recorded click: the run waits for the click writer and counts
``link_clicks`` against wrk's requests of both runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from typing import Any

from bench.common import Ctx
from bench.profiling import Profiler
from bench.stack import DATABASE_URL, PY, ROOT, BenchStack, CpuMeter, db_query, free_port
from bench.stack import wait_until as bench_wait

CONNECTIONS = 32
LINKS_WORKERS = 2
MESSAGES = 10_000
TARGET_RATE = 5_000  # the "5,000 redirects/s at p99 <= 10 ms"
PACED_RATE = 5_800  # aimed a little above the target, so the measured rate clears it
PAUSE_MS = 3  # per connection, after each answer: 32 / (3 ms + ~2.5 ms) is about 5,800/s


def _seed(base: str, n: int) -> list[str]:
    """``n`` messages with one short link each; their codes."""
    from sqlalchemy import update

    from dispatcher.accounts.account import create_account
    from dispatcher.config import Settings
    from dispatcher.intake.submit import SendRequest, prepare
    from dispatcher.store.db import make_engine
    from dispatcher.store.messages import write_submissions
    from dispatcher.store.schema import accounts

    engine = make_engine(DATABASE_URL, pool_size=1)
    account, _pair = create_account(engine, "bench-links", sender_policy="open")
    with engine.begin() as conn:
        conn.execute(
            update(accounts)
            .where(accounts.c.id == account.id)
            .values(webhook_url="https://hooks.example.com/sms")
        )
    settings = Settings.from_env({}, short_link_base=base, max_recipients=n)
    req = SendRequest(
        sender="BENCH",
        message="Spring sale: https://shop.example.com/spring?utm_source=sms Reply STOP to end",
        phone_numbers=[f"+4850{i:07d}" for i in range(n)],
        short_link=True,
    )
    prepared = prepare(req, account, settings, time.time())
    with engine.begin() as conn:
        write_submissions(conn, [prepared.submission], {"bulk": 500, "priority": 100})
    engine.dispose()
    return [link.code for m in prepared.submission.messages for link in m.links]


def wrk(url: str, codes_file: str, seconds: int, delay_ms: float | None = None) -> dict[str, Any]:
    """One wrk run (each connection pausing ``delay_ms`` between requests when given)."""
    env = {**os.environ, "BENCH_CODES": codes_file}
    if delay_ms is not None:
        env["BENCH_DELAY_MS"] = str(max(0, int(delay_ms)))  # whole ms; rounded down
    p = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{CONNECTIONS}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(ROOT / "bench" / "wrk_links.lua"),
            url,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("{")][-1]
    r = json.loads(line)
    errors = sum(r[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    return {
        "tool": f"wrk -t1 -c{CONNECTIONS}"
        + ("" if delay_ms is None else f", {env['BENCH_DELAY_MS']} ms pause"),
        "requests": r["requests"],
        "redirects_per_s": round(r["requests"] / (r["duration_us"] / 1e6), 1),
        "p50_ms": r["p50_us"] / 1000,
        "p90_ms": r["p90_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "max_ms": r["max_us"] / 1000,
        # wrk counts answers >= 400 as status errors: a redirect is 302.
        "status_errors": r["status_errors"],
        "errors": errors,
    }


def _paced(base: str, codes_file: str, seconds: int) -> dict[str, Any]:
    """The run paced at about :data:`PACED_RATE`: each connection pauses :data:`PAUSE_MS`
    after each answer (wrk's pause is whole milliseconds: 32 connections x (3 ms + the answer
    and wrk's own timer, about 2.5 ms) is about 5,800/s; a slower service asks less, and the run
    says so)."""
    res = wrk(base, codes_file, seconds, PAUSE_MS)
    return {**res, "pause_ms": PAUSE_MS}


def _clicks() -> int:
    return int(db_query("SELECT count(*) FROM link_clicks")[0][0])


def run(ctx: Ctx) -> dict[str, Any]:
    """Run L (no baseline)."""
    if shutil.which("wrk") is None:
        raise RuntimeError("scenario L needs wrk (apt-get install wrk)")
    seconds = 8 if ctx.quick else 30
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with BenchStack("L", ctx.logdir, {"short_link_base": base, "links_port": port}) as st:
        codes = _seed(base, MESSAGES)
        codes_file = str(ctx.logdir / "L-codes.txt")
        with open(codes_file, "w") as fh:
            fh.write("\n".join(codes) + "\n")
        st.spawn(
            "links",
            [PY, "-m", "dispatcher.cli", "links", "--workers", str(LINKS_WORKERS)],
            "links",
        )
        bench_wait(lambda: _ok(base + "/readyz"), 60, "links ready")
        warm = wrk(base, codes_file, 2)
        before = _clicks()
        meter, prof = CpuMeter(st), Profiler(ctx.profile, ctx.profdir, f"{ctx.run_id}-L")
        meter.start()
        prof.start({"links": st.procs["links"].popen.pid})
        res = wrk(base, codes_file, seconds)
        profile = prof.stop()
        cpu = meter.stop()
        paced = _paced(base, codes_file, seconds)
        # Every answered redirect is a click the writer records (it flushes every 0.1 s).
        expected = before + res["requests"] + paced["requests"]
        written = bench_wait(lambda: (n := _clicks()) >= expected and n, 60, "clicks written")
        webhooks = db_query(
            "SELECT count(*) FROM webhook_deliveries WHERE event = 'message.click'"
        )[0][0]
        clicked = db_query("SELECT count(DISTINCT message_id) FROM link_clicks")[0][0]
    return {
        "redirects_per_s": res["redirects_per_s"],
        "p50_ms": paced["p50_ms"],
        "p99_ms": paced["p99_ms"],
        "paced_per_s": paced["redirects_per_s"],
        "paced_reached_target": paced["redirects_per_s"] >= TARGET_RATE,
        "requests": res["requests"],
        "errors": res["errors"] + paced["errors"],
        "status_errors": res["status_errors"] + paced["status_errors"],
        "saturation": res,
        "paced": paced,
        "seconds": seconds,
        "connections": CONNECTIONS,
        "links_workers": LINKS_WORKERS,
        "links": len(codes),
        "warmup_requests": warm["requests"],
        "clicks_written": int(written) - before,
        "clicks_lost": max(0, expected - int(written)),
        "click_webhooks_created": int(webhooks),
        "messages_clicked": int(clicked),
        "cpu": cpu,
        "profile": profile,
        "baseline": None,
        "ratio": None,
        "baseline_note": "n/a: the naive design has no short links",
    }


def _ok(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
