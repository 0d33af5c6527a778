"""Killing workers mid-chunk loses nothing and sends nothing twice; the limit holds globally."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest
from sqlalchemy import text

from tests.support.stack import Stack, running_stack, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _statuses(stack: Stack) -> Counter[str]:
    engine = stack.db()
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT status, count(*) FROM messages GROUP BY status")).all()
    engine.dispose()
    return Counter({r[0]: r[1] for r in rows})


def _send_many(stack: Stack, n: int) -> set[str]:
    client = stack.account()
    ids: set[str] = set()
    for start in range(0, n, 1000):
        numbers = [f"+4850{start // 1000:02d}{i:05d}" for i in range(min(1000, n - start))]
        r = client.send({"sender": "Shop", "message": f"Offer {start}", "phoneNumbers": numbers})
        assert r.status_code == 200, r.text
        ids.update(m["id"] for m in r.json()["data"])
    return ids


def _assert_exactly_once(stack: Stack, ids: set[str]) -> None:
    wait_until(
        lambda: _statuses(stack).get("sent", 0) == len(ids),
        120,
        interval=0.5,
        what="every message sent",
    )
    refs = Counter(s["ref"] for s in stack.sim_submits())
    assert set(refs) == ids, "lost or foreign messages at the carrier"
    dupes = {r: c for r, c in refs.items() if c > 1}
    assert not dupes, f"duplicate submits: {len(dupes)}"
    assert stack.sim_stats()["duplicate_submits"] == 0


def test_sigkill_worker_children_mid_chunk() -> None:
    """SIGKILL the prefork children repeatedly while chunks are in flight."""
    with running_stack(
        workers={"bulk": 2},
        carrier_tps=600,
        carrier_batch_size=1,
        sending_stale_s=3,
        orphan_stale_s=4,
    ) as stack:
        stack.sim_config(latency_ms=20)
        ids = _send_many(stack, 3000)
        kills = 0
        for _ in range(3):
            target = 300 * (kills + 1)
            wait_until(lambda t=target: stack.sim_stats()["submits"] > t, 30)
            for pid in stack.worker_children("worker-bulk"):
                os.kill(pid, signal.SIGKILL)
                kills += 1
            time.sleep(1.0)
        assert kills >= 3
        _assert_exactly_once(stack, ids)
        print(f"\nkilled {kills} worker processes; statuses {dict(_statuses(stack))}")


def test_sigkill_whole_worker_pool_then_restart() -> None:
    """The whole pool dies (tasks it held are unacked); a new pool finishes the work."""
    with running_stack(
        workers={"bulk": 2},
        carrier_tps=600,
        carrier_batch_size=1,
        sending_stale_s=3,
        orphan_stale_s=4,
    ) as stack:
        stack.sim_config(latency_ms=20)
        ids = _send_many(stack, 2000)
        wait_until(lambda: stack.sim_stats()["submits"] > 400, 30)
        stack.stop("worker-bulk", sig=signal.SIGKILL)
        stuck = _statuses(stack)
        stack.start_worker("bulk", 2)
        _assert_exactly_once(stack, ids)
        print(f"\nafter the kill: {dict(stuck)}")


def test_sigterm_finishes_in_flight_chunk() -> None:
    """A warm shutdown (SIGTERM) loses and duplicates nothing."""
    with running_stack(
        workers={"bulk": 2},
        carrier_tps=600,
        carrier_batch_size=1,
        sending_stale_s=3,
        orphan_stale_s=4,
    ) as stack:
        stack.sim_config(latency_ms=20)
        ids = _send_many(stack, 2000)
        wait_until(lambda: stack.sim_stats()["submits"] > 400, 30)
        stack.stop("worker-bulk", sig=signal.SIGTERM, timeout=60)
        stack.start_worker("bulk", 2)
        _assert_exactly_once(stack, ids)


def test_rate_limit_held_across_worker_processes() -> None:
    """Two pools of two processes share one 200 msg/s connection, measured by the carrier."""
    limit = 200
    with running_stack(workers={"bulk": 2}, carrier_tps=limit, carrier_batch_size=1) as stack:
        stack.start_worker("bulk", 2, name="worker-bulk-2")
        ids = _send_many(stack, 1600)
        wait_until(lambda: stack.sim_stats()["unique_refs"] >= len(ids), 60, interval=0.5)
        times = sorted(float(s["at"]) for s in stack.sim_submits())
        # Sliding one-second windows over the carrier's own receive times.
        j, worst = 0, 0
        for i, t in enumerate(times):
            while times[j] < t - 1.0:
                j += 1
            worst = max(worst, i - j + 1)
        steady = [t for t in times if times[0] + 1 <= t <= times[-1] - 1]
        mean = len(steady) / (steady[-1] - steady[0])
        print(
            f"\nlimit {limit}/s: max 1-s window {worst}, steady mean {mean:.1f}/s over "
            f"{times[-1] - times[0]:.1f}s"
        )
        burst = max(2, limit // 100)
        assert worst <= limit * 1.02 + burst
        assert mean >= limit * 0.9
