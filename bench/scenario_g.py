"""G. B's personalised load over SMPP, receipts on, with OTPs through the API beside it.

The carrier is the Node SMSC of the tests (the npm ``smpp`` package's server,
``tests/smsc/smsc.js``; ``scripts/ensure-services.sh smsc`` installs it), answering every
``submit_sm`` at once and sending a DELIVRD receipt right after it. One ``smpp`` connection
with two binds, held by one ``smsdispatch smpp`` process; the lanes as in the Procfile plus a
dlr pool for the receipts. N personalised messages from the library producer on the bulk
lane; 20 OTP/s through the API on the priority lane.

Figures: N / (last ``sent_at`` - time before the first produce call); the OTP p99 is
accept → recorded sent (the log's ``sent_at`` after the client's time just before its POST:
a little more than the SMSC's receive time); CPU per message for our processes and for the
SMSC (which records every PDU to a file, as the tests need: a production SMSC does less).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    API_WORKERS,
    Ctx,
    finish_helper,
    latency_figures,
    maybe_analyze,
    start_helper,
    stop_otp,
)
from bench.profiling import Profiler
from bench.stack import PY, BenchStack, CpuMeter, Proc, db_query, per_message, wait_until

SETTINGS = {"chunk_size": 500, "carrier_tps": 1_000_000}
OTP_RATE = 20
PASSWORD = "bench123"
CONNECTIONS = """
[[connections]]
name = "smsc"
type = "smpp"
host = "127.0.0.1"
port = {port}
system_id = "bench"
password_env = "BENCH_SMPP_PASSWORD"
binds = 2
window = 64
priority_window = 8
tps = 1000000
timeout_s = 10
fallback = true
"""
OUR_GROUPS = ("api", "priority", "bulk", "dlr", "scheduler", "smpp")


def _sent(n: int, timeout: float) -> float:
    """Wait until ``n`` messages were recorded sent (delivered ones included); last sent_at."""

    def check() -> float | None:
        count, last = db_query("SELECT count(*), max(sent_at) FROM messages WHERE sent_at > 0")[0]
        return float(last) if int(count) >= n else None

    found = wait_until(check, timeout, f"{n} messages sent", interval=1.0)
    assert found is not None
    return found


def _delivered(n: int, timeout: float) -> int:
    def check() -> int | None:
        (count,) = db_query("SELECT count(*) FROM messages WHERE status = 'delivered'")[0]
        return int(count) if int(count) >= n else None

    found = wait_until(check, timeout, f"{n} receipts applied", interval=0.5)
    assert found is not None
    return found


def _settled(timeout: float) -> None:
    """Wait until no message is queued or under way (extra submits are counted after)."""

    def check() -> bool | None:
        (count,) = db_query(
            "SELECT count(*) FROM messages WHERE status IN ('queued', 'sending', 'retrying')"
        )[0]
        return True if int(count) == 0 else None

    wait_until(check, timeout, "no message queued or under way", interval=0.5)


def run(ctx: Ctx) -> dict[str, Any]:
    """Run G (no baseline: the naive single queue has no SMPP)."""
    from tests.support.smsc import Smsc

    n = 2_000 if ctx.quick else 50_000
    with (
        tempfile.TemporaryDirectory(prefix="smsd-bench-smsc-") as state,
        BenchStack("G", ctx.logdir, SETTINGS) as st,
    ):
        smsc = Smsc(state, accounts={"bench": PASSWORD})
        smsc.start()
        try:
            assert smsc.proc is not None
            st.procs["smsc"] = Proc("smsc", "smsc (Node)", smsc.proc, Path(state, "smsc.log"))
            path = ctx.logdir / "G-connections.toml"
            path.write_text(CONNECTIONS.format(port=smsc.port))
            st.env["SMSDISPATCH_CONNECTIONS"] = str(path)
            st.env["BENCH_SMPP_PASSWORD"] = PASSWORD
            st.env["SMSDISPATCH_SMPP_METRICS_PORT"] = "0"
            st.start_api(API_WORKERS)
            st.start_worker("priority", 2)
            st.start_worker("bulk", 2, nice=10)
            st.start_worker("dlr", 1)
            st.start_scheduler()
            st.spawn("smpp", [PY, "-m", "dispatcher.cli", "smpp"], "smpp")
            st.wait_ready()
            wait_until(lambda: smsc.state()["binds"].get("bench", {}).get("open") == 2, 30, "binds")
            smsc.auto_receipts("DELIVRD")
            keys = st.create_account("bench")
            keys_file = ctx.logdir / "G-keys.json"
            keys_file.write_text(json.dumps(keys))
            otp_out = ctx.logdir / "G-otp.ndjson"
            otp = start_helper(
                st,
                ["-m", "bench.otp", "--mode", "api", "--url", st.api_url, "--keys",
                 str(keys_file), "--rate", str(OTP_RATE), "--out", str(otp_out)],
                "otp",
            )  # fmt: skip
            time.sleep(1.0)
            meter, prof = CpuMeter(st), Profiler(ctx.profile, ctx.profdir, f"{ctx.run_id}-G")
            meter.start()
            producer = start_helper(st, ["-m", "bench.produce", "--count", str(n)], "produce")
            prof.start(
                {
                    label: st.procs[proc].popen.pid
                    for label, proc in (
                        ("smpp", "smpp"),
                        ("bulk", "worker-bulk"),
                        ("dlr", "worker-dlr"),
                        ("priority", "worker-priority"),
                    )
                }
            )
            produced = finish_helper(producer)
            maybe_analyze(ctx)
            t0 = produced["t_first"]
            last_sent = _sent(n, timeout=1800)
            profile = prof.stop()
            cpu = meter.stop({"producer": produced["cpu_s"]})
            records = stop_otp(otp, otp_out)
            keys_file.unlink()
            delivered = _delivered(n, timeout=300)
            _settled(timeout=120)  # the OTP backlog too: else the count below races it
            sent_at = dict(db_query("SELECT id, sent_at FROM messages WHERE lane = 'priority'"))
            duplicates = len(smsc.pdus("submit_sm", "in")) - int(
                db_query("SELECT coalesce(sum(parts), 0) FROM messages WHERE sent_at > 0")[0][0]
            )
        finally:
            smsc.kill()
            st.procs.pop("smsc", None)
    lat = [
        (sent_at[r["ref"]] - r["t0"]) * 1000
        for r in records
        if r.get("ok") and r.get("ref") in sent_at and sent_at[r["ref"]]
        and t0 <= r["t0"] <= last_sent
    ]  # fmt: skip
    figs = latency_figures(lat)
    duration = last_sent - t0
    ours_cpu = sum(cpu.get(g, {}).get("cpu_s", 0.0) for g in OUR_GROUPS)
    smsc_cpu = cpu.get("smsc (Node)", {}).get("cpu_s", 0.0)
    return {
        "messages": n,
        "msgs_per_s": round(n / duration, 1),
        "duration_s": round(duration, 3),
        "otp_p50_ms": figs["p50"],
        "otp_p99_ms": figs["p99"],
        "otp_count": len(lat),
        "delivered": delivered,
        "smsc_extra_submits": duplicates,
        "cpu_us_per_msg_ours": round(ours_cpu / n * 1e6, 1),
        "cpu_us_per_msg_smsc": round(smsc_cpu / n * 1e6, 1),
        **per_message(cpu, n),
        "cpu": cpu,
        "profile": profile,
        "settings": SETTINGS,
    }
