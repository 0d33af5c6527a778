"""Submits per second and CPU per submit of one SMPP session against the independent SMSC.

One :class:`workers.smpp.session.Session` (transceiver, one bind) submits ``--messages``
single-part GSM-7 messages with ``--window`` outstanding, against the Node SMSC of the tests
(``tests/smsc/smsc.js``, installed by ``scripts/ensure-services.sh smsc``) with its per-PDU
recording on. Reports our process's CPU per submit (``time.process_time``; one asyncio task per
submit included) and the SMSC's (psutil on its pid). Usage::

    python -m bench.smpp_session [--messages 20000] [--window 50]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import psutil

from tests.support.smsc import ACCOUNT, Smsc, running_smsc
from workers.smpp.coding import EncodingRules, build_submits
from workers.smpp.pdu import SubmitSm
from workers.smpp.session import Session, SessionConfig


async def run(smsc: Smsc, messages: int, window: int) -> dict[str, float]:
    """Submit ``messages`` and measure."""
    cfg = SessionConfig("127.0.0.1", smsc.port, ACCOUNT[0], ACCOUNT[1], window=window)
    session = await Session.open(cfg)
    rules = EncodingRules()
    sms = [
        build_submits(f"m{i}", "+48500100200", "MyShop", f"Twoj kod {i:06d}", rules)[0]
        for i in range(messages)
    ]
    assert smsc.proc is not None
    node = psutil.Process(smsc.proc.pid)
    n0, c0, t0 = node.cpu_times(), time.process_time(), time.monotonic()

    async def one(sm: SubmitSm) -> None:
        resp = await session.submit(sm)
        assert resp.status == 0

    await asyncio.gather(*(one(sm) for sm in sms))
    elapsed, ours, n1 = time.monotonic() - t0, time.process_time() - c0, node.cpu_times()
    await session.close()
    smsc_cpu = (n1.user + n1.system) - (n0.user + n0.system)
    return {
        "submits_per_s": round(messages / elapsed),
        "ours_us_per_submit": round(ours / messages * 1e6, 1),
        "smsc_us_per_submit": round(smsc_cpu / messages * 1e6, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--window", type=int, default=50)
    args = ap.parse_args()
    with running_smsc() as smsc:
        result = asyncio.run(run(smsc, args.messages, args.window))
    print({"messages": args.messages, "window": args.window, **result})


if __name__ == "__main__":
    main()
