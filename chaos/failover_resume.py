"""How soon OTPs reach the carrier again after a Sentinel failover (docs/reliability.md).

``python -m chaos.failover_resume [--down-after-ms 10000]``: a primary, a replica and three
Sentinels, the API, the scheduler and one priority pool; an OTP every 0.2 s; the primary
SIGKILLed after 3 s. Prints the seconds from the kill to the promotion and from the promotion to
the carrier's next submit, and the priority pool's logged reconnect waits. One run, no verdict:
a measurement (the failover test checks the outcome).
"""

from __future__ import annotations

import argparse
import os
import re
import threading
import time
import uuid

from chaos.sentinel_cluster import SentinelCluster


def measure(down_after_ms: int) -> dict[str, object]:
    """One failover under OTP traffic; the figures."""
    os.environ.setdefault("SMSD_TEST_DB", "postgres")
    from tests.support.stack import running_stack

    with (
        SentinelCluster(down_after_ms=down_after_ms, failover_timeout_ms=2 * down_after_ms) as c,
        running_stack(workers={"priority": 1}, redis_url=c.url, outbox_stale_s=1) as stack,
    ):
        client = stack.account("failover-resume")
        stop = threading.Event()

        def load() -> None:
            k = 0
            while not stop.is_set():
                body = {
                    "sender": "Shop",
                    "message": f"Your code is {k:06d}",
                    "phoneNumbers": [f"+4851{k:07d}"],
                    "priority": True,
                }
                client.send(body, **{"Idempotency-Key": str(uuid.uuid4())})
                k += 1
                time.sleep(0.2)

        thread = threading.Thread(target=load)
        thread.start()
        try:
            time.sleep(3)
            killed = time.time()
            old = c.kill_primary()
            c.wait_failover(old, timeout=down_after_ms / 1000 + 60)
            promoted = time.time()
            time.sleep(15)
        finally:
            stop.set()
            thread.join()
        # Nothing reaches the carrier while Redis is away: the first submit a second after the
        # kill is the first after the recovery.
        after = sorted(float(r["at"]) for r in stack.sim_submits() if float(r["at"]) > killed + 1)
        waits = re.findall(r"Trying again (in [\d.]+ \w+)", stack.log("worker-priority"))
        return {
            "down_after_ms": down_after_ms,
            "promoted_after_kill_s": round(promoted - killed, 2),
            "first_submit_after_promotion_s": round(after[0] - promoted, 2) if after else None,
            "priority_pool_reconnect_waits": waits,
        }


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(prog="python -m chaos.failover_resume", description=__doc__)
    parser.add_argument("--down-after-ms", type=int, default=10000)
    print(measure(parser.parse_args().down_after_ms))


if __name__ == "__main__":
    main()
