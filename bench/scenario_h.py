"""H. Fairness of the bulk lane: a small campaign starts while a big one is sending.

One connection limited to 2,000 msg/s (``SMSDISPATCH_CARRIER_TPS``). Account A enqueues N
messages in one campaign (the library producer, in its own process); 10 s after A's first call,
account B enqueues 10,000. 20 OTP/s go through the API on the priority lane all along. Run twice
in the same invocation: with the fair lane (the default) and with plain FIFO
(``SMSDISPATCH_BULK_FAIRNESS=0``), so the two are measured under the same machine load.

Figures (times are the log's ``sent_at``, recorded after the carrier took each message):
- ``fair_share_ratio``: B's completion time (last B ``sent_at`` - time before B's first call)
  ÷ its fair share, 10,000 ÷ (2,000 / 2) = 10 s; ``fifo_fair_share_ratio`` the same with FIFO;
  ``measured_fair_share_ratio``: against half of what the lane really sent (on a loaded machine
  the lane sends less than the connection allows, and the nominal share is out of reach);
- ``a_throughput_loss``: 1 - (A's messages per second from its first call to its last send)
  with fairness ÷ the same with FIFO. Part of it is B's own share (B's 10,000 messages take
  that time from A in either order); ``lane_msgs_per_s`` (everything sent ÷ first call to last
  send) says whether the connection stayed busy;
- ``b_share_while_sending``: B's part of all bulk sends between its first and last send (0.5 is
  an equal split, on a fast or a slow machine alike);
- ``otp_p99_ms``: accept → recorded sent of the OTPs sent while the campaigns ran.
"""

from __future__ import annotations

import json
import time
from typing import Any

from bench.common import (
    API_WORKERS,
    Ctx,
    finish_helper,
    latency_figures,
    start_helper,
    stop_otp,
)
from bench.stack import BenchStack, db_query, wait_until

RATE = 2_000  # the connection's limit, msg/s
N_B = 10_000
B_AFTER_S = 10.0
OTP_RATE = 20
START_MARGIN_S = 15.0  # time for both producer processes to start before A's first call
SETTINGS = {"chunk_size": 500, "carrier_tps": RATE}


def _sent(total: int, timeout: float) -> None:
    def check() -> bool:
        (count,) = db_query("SELECT count(*) FROM messages WHERE sent_at > 0 AND lane = 'bulk'")[0]
        return int(count) >= total

    wait_until(check, timeout, f"{total} bulk messages sent", interval=0.5)


def _per_account() -> dict[str, tuple[int, float, float]]:
    rows = db_query(
        "SELECT a.name, count(*), min(m.sent_at), max(m.sent_at) FROM messages m "
        "JOIN accounts a ON a.id = m.account_id WHERE m.lane = 'bulk' AND m.sent_at > 0 "
        "GROUP BY a.name"
    )
    return {str(r[0]): (int(r[1]), float(r[2]), float(r[3])) for r in rows}


def _b_share() -> float:
    """B's part of the bulk sends between B's first and last send (0.5 is an equal split,
    whatever the machine's speed)."""
    (share,) = db_query(
        "WITH b AS (SELECT min(m.sent_at) lo, max(m.sent_at) hi FROM messages m "
        "JOIN accounts a ON a.id = m.account_id WHERE a.name = 'B' AND m.sent_at > 0) "
        "SELECT avg(CASE WHEN a.name = 'B' THEN 1.0 ELSE 0.0 END) FROM messages m "
        "JOIN accounts a ON a.id = m.account_id, b "
        "WHERE m.lane = 'bulk' AND m.sent_at BETWEEN b.lo AND b.hi"
    )[0]
    return round(float(share), 3)


def _one(ctx: Ctx, fair: bool, n_a: int) -> dict[str, Any]:
    label = "H" if fair else "H-fifo"
    settings = SETTINGS | {"bulk_fairness": int(fair)}
    with BenchStack(label, ctx.logdir, settings) as st:
        st.start_simulator()
        st.start_api(API_WORKERS)
        st.start_worker("priority", 2)  # as the Procfile
        st.start_worker("bulk", 2, nice=10)
        st.start_scheduler()
        st.wait_ready()
        st.create_account("A", priority=False)
        st.create_account("B", priority=False)
        keys = st.create_account("otp")
        keys_file = ctx.logdir / f"{label}-keys.json"
        keys_file.write_text(json.dumps(keys))
        otp_out = ctx.logdir / f"{label}-otp.ndjson"
        otp = start_helper(
            st,
            ["-m", "bench.otp", "--mode", "api", "--url", st.api_url, "--keys", str(keys_file),
             "--rate", str(OTP_RATE), "--out", str(otp_out)],
            "otp",
        )  # fmt: skip
        time.sleep(1.0)
        load0 = _loadavg()
        # Both producers start now and wait for their own start time (a process start takes
        # seconds on a busy machine): A's first call at t0, B's at t0 + 10 s.
        t0 = time.time() + START_MARGIN_S
        prod_a = start_helper(
            st,
            ["-m", "bench.produce", "--count", str(n_a), "--account", "A", "--start-at",
             str(t0)],
            "produce-a",
        )  # fmt: skip
        prod_b = start_helper(
            st,
            ["-m", "bench.produce", "--count", str(N_B), "--account", "B", "--offset",
             str(n_a), "--start-at", str(t0 + B_AFTER_S)],
            "produce-b",
        )  # fmt: skip
        res_b = finish_helper(prod_b)
        res_a = finish_helper(prod_a)
        _sent(n_a + N_B, timeout=max(600.0, 3 * (n_a + N_B) / RATE))
        records = stop_otp(otp, otp_out)
        keys_file.unlink()
        sent_at = dict(db_query("SELECT id, sent_at FROM messages WHERE lane = 'priority'"))
        per = _per_account()
        b_share = _b_share()
        load1 = _loadavg()
    a_n, _a_first, a_last = per["A"]
    b_n, _b_first, b_last = per["B"]
    t_a, t_b = res_a["t_first"], res_b["t_first"]
    lat = [
        (sent_at[r["ref"]] - r["t0"]) * 1000
        for r in records
        if r.get("ok") and sent_at.get(r.get("ref")) and t_a <= r["t0"] <= max(a_last, b_last)
    ]
    fair_share_s = N_B / (RATE / 2)
    return {
        "fair": fair,
        "a_messages": a_n,
        "b_messages": b_n,
        "b_started_after_a_s": round(t_b - t_a, 2),
        "b_completion_s": round(b_last - t_b, 2),
        "fair_share_ratio": round((b_last - t_b) / fair_share_s, 3),
        # The same against half of what the lane actually sent (a loaded machine sends less
        # than the connection allows: then the nominal 10 s is out of anyone's reach).
        "measured_fair_share_ratio": round(
            (b_last - t_b) / (N_B / ((a_n + b_n) / (max(a_last, b_last) - t_a) / 2)), 3
        ),
        "b_share_while_sending": b_share,
        "a_completion_s": round(a_last - t_a, 2),
        "a_msgs_per_s": round(a_n / (a_last - t_a), 1),
        "lane_msgs_per_s": round((a_n + b_n) / (max(a_last, b_last) - t_a), 1),
        "a_produce_s": round(res_a["t_done"] - t_a, 2),
        "otp": {**latency_figures(lat), "count": len(lat)},
        "loadavg_1m": [load0, load1],
    }


def _loadavg() -> float:
    with open("/proc/loadavg", encoding="ascii") as fh:
        return float(fh.read().split()[0])


def run(ctx: Ctx) -> dict[str, Any]:
    """Run H with the fair lane, then with FIFO (same sizes, one after the other)."""
    n_a = 100_000 if ctx.quick else 1_000_000
    fair = _one(ctx, True, n_a)
    fifo = _one(ctx, False, n_a)
    return {
        "messages": n_a + N_B,
        "limit_per_s": RATE,
        "fair_share_s": N_B / (RATE / 2),
        "fair_share_ratio": fair["fair_share_ratio"],
        "fifo_fair_share_ratio": fifo["fair_share_ratio"],
        "measured_fair_share_ratio": fair["measured_fair_share_ratio"],
        "fifo_measured_fair_share_ratio": fifo["measured_fair_share_ratio"],
        "b_share_while_sending": fair["b_share_while_sending"],
        "fifo_b_share_while_sending": fifo["b_share_while_sending"],
        "b_completion_s": fair["b_completion_s"],
        "fifo_b_completion_s": fifo["b_completion_s"],
        "a_throughput_loss": round(1 - fair["a_msgs_per_s"] / fifo["a_msgs_per_s"], 3),
        "lane_msgs_per_s": fair["lane_msgs_per_s"],
        "fifo_lane_msgs_per_s": fifo["lane_msgs_per_s"],
        "otp_p99_ms": fair["otp"]["p99"],
        "fifo_otp_p99_ms": fifo["otp"]["p99"],
        "runs": {"fair": fair, "fifo": fifo},
        "settings": SETTINGS | {"bulk_concurrency": 2, "otp_per_s": OTP_RATE},
    }
