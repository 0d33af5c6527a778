"""Several OS processes share one limiter key on a real Redis; check the aggregate rate.

Each child process runs this file as a script (``python test_rate_limit_processes.py ...``),
waits for a common start instant, then sends "messages" as fast as the limiter allows for a
fixed duration, recording ``time.time()`` right after each grant (all processes run on this
machine, so the timestamps share one clock — what a receiving carrier would measure).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
import redis.asyncio

from dispatcher.ratelimit import Rate

REPO_ROOT = Path(__file__).resolve().parents[2]
REDIS_HOST, REDIS_PORT, REDIS_DB = "127.0.0.1", 6379, 15


def _redis_unreachable() -> str | None:
    try:
        client = redis.Redis(
            host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB, socket_connect_timeout=0.5
        )
        client.ping()
        client.close()
    except redis.RedisError as exc:
        return f"no Redis reachable at {REDIS_HOST}:{REDIS_PORT} ({exc})"
    return None


# --------------------------------------------------------------------------- child process


def _wait_for_go(duration: float) -> tuple[float, float]:
    """Tell the parent we are connected, then read the common start instant from stdin."""
    print("ready", flush=True)
    start_at = float(sys.stdin.readline())
    time.sleep(max(0.0, start_at - time.time()))
    return start_at, start_at + duration


def _child(
    mode: str, key: str, per_second: float, batch: int, duration: float
) -> list[tuple[float, int]]:
    from dispatcher.ratelimit import (
        AsyncLimiter,
        AsyncRedisRateLimitBackend,
        Limiter,
        RedisRateLimitBackend,
    )

    rate = Rate(per_second)
    costs = [1] * batch
    stamps: list[tuple[float, int]] = []
    if mode == "sync":
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
        client.ping()
        limiter = Limiter(RedisRateLimitBackend(client), key_prefix="")
        limiter.acquire_prefix("warm-up:" + key, rate, [1])  # loads the script
        _, end_at = _wait_for_go(duration)
        while (left := end_at - time.time()) > 0:
            granted = limiter.wait(key, rate, costs, max_wait=left)
            if granted:
                stamps.append((time.time(), granted))
        client.close()
        return stamps

    async def run() -> None:
        client = redis.asyncio.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
        await client.ping()
        limiter = AsyncLimiter(AsyncRedisRateLimitBackend(client), key_prefix="")
        await limiter.acquire_prefix("warm-up:" + key, rate, [1])  # loads the script
        _, end_at = _wait_for_go(duration)
        while (left := end_at - time.time()) > 0:
            granted = await limiter.wait_for(key, rate, costs, max_wait=left)
            if granted:
                stamps.append((time.time(), granted))
        await client.aclose()

    asyncio.run(run())
    return stamps


# --------------------------------------------------------------------------- the test


def _max_window(stamps: list[tuple[float, int]], width: float) -> int:
    """Largest number of units inside any half-open window [t, t + width)."""
    worst = running = lo = 0
    for t, units in stamps:
        running += units
        while stamps[lo][0] <= t - width:
            running -= stamps[lo][1]
            lo += 1
        worst = max(worst, running)
    return worst


def _run_processes(per_second: float, duration: float) -> tuple[int, int, int]:
    key = f"smsd-test:rl:{uuid.uuid4().hex}:conn"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    workers = [("sync", 1), ("sync", 5), ("async", 1), ("async", 20)]
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, mode, key, str(per_second), str(batch), str(duration)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=REPO_ROOT,
            text=True,
        )
        for mode, batch in workers
    ]
    stamps: list[tuple[float, int]] = []
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
    try:
        for proc in procs:  # every child imported, connected and loaded the script
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        start_at = time.time() + 0.2
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{start_at!r}\n")
            proc.stdin.flush()
        for proc in procs:
            out, _ = proc.communicate(timeout=duration + 30)
            assert proc.returncode == 0, f"worker exited with {proc.returncode}"
            stamps.extend((t, n) for t, n in json.loads(out))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        client.delete(key, "warm-up:" + key)
        client.close()
    stamps.sort()
    total = sum(n for _, n in stamps)
    return total, _max_window(stamps, 1.0), Rate(per_second).burst


def _check(per_second: float, duration: float, min_share: float = 0.97) -> None:
    """No 1 s window over the rate (plus burst), and at least ``min_share`` of it delivered."""
    total, worst, burst = _run_processes(per_second, duration)
    mean = total / duration
    print(f"\n{per_second}/s x {duration}s: total={total} mean={mean:.1f}/s max1s={worst}")
    assert worst <= per_second * 1.02 + burst
    assert mean >= min_share * per_second


_SKIP_REASON = _redis_unreachable()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.any_db,
    pytest.mark.skipif(_SKIP_REASON is not None, reason=str(_SKIP_REASON)),
]


def test_four_processes_share_one_limit() -> None:
    # 3 s is short: on a loaded machine the four children lose a few tenths of a second to the
    # scheduler (180 of 200/s was measured at load 17); the 30 s shape below keeps 0.97.
    _check(per_second=200, duration=3.0, min_share=0.85)


@pytest.mark.slow
def test_benchmark_d_shape() -> None:
    """Benchmark D's shape: 500 units/s, 4 processes, 30 s."""
    _check(per_second=500, duration=30.0)


if __name__ == "__main__":
    _mode, _key, _rate, _batch, _duration = sys.argv[1:6]
    result = _child(_mode, _key, float(_rate), int(_batch), float(_duration))
    json.dump(result, sys.stdout)
