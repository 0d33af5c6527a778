"""The fair bulk lane end to end: real API-side producer, scheduler, worker processes, Redis
and database, on a connection limited to ``RATE`` messages per second.

- an account alone gets the whole connection (work-conserving);
- a small account that starts while a big one is sending finishes near its fair share
  (half the rate with equal weights), not behind the big one's backlog;
- weights are respected: weight 3 against 1 gets three quarters of the sends.

Times are the log's ``sent_at`` (recorded by the workers after the carrier took each message).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from dispatcher.accounts.account import create_account
from dispatcher.config import Settings
from dispatcher.intake.enqueue import Producer
from tests.support.stack import ROOT, Stack, running_stack, wait_until

pytestmark = pytest.mark.integration

RATE = 500  # messages per second for the one connection
CHUNK = 50


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack(
        workers={"bulk": 2},
        carrier_tps=RATE,
        rate_headroom=0,
        chunk_size=CHUNK,
        fair_interval_s=0.05,
    ) as s:
        yield s


@pytest.fixture(scope="module")
def producer(stack: Stack) -> Iterator[Producer]:
    p = Producer(Settings.from_env(stack.env))
    yield p
    p.close()


def _account(stack: Stack, name: str) -> str:
    engine = stack.db()
    create_account(engine, name, sender_policy="open")
    engine.dispose()
    return name


def _send(producer: Producer, account: str, n: int, prefix: int) -> float:
    """Store ``n`` bulk messages for ``account``; the time just before the call."""
    items = [(f"+48{prefix}{i:06d}", f"Offer {i}") for i in range(n)]
    t0 = time.time()
    producer.send_bulk(account, sender="Shop", items=items, batch=5000)
    return t0


def _sent_at(stack: Stack, account: str) -> list[float]:
    engine = stack.db()
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT m.sent_at FROM messages m JOIN accounts a ON a.id = m.account_id "
                "WHERE a.name = :n AND m.sent_at > 0 ORDER BY m.sent_at"
            ),
            {"n": account},
        ).all()
    engine.dispose()
    return [float(r[0]) for r in rows]


def _wait_sent(stack: Stack, account: str, n: int, timeout: float) -> list[float]:
    def done() -> list[float] | None:
        times = _sent_at(stack, account)
        return times if len(times) >= n else None

    found = wait_until(done, timeout, 0.25, f"{n} messages of {account} sent")
    assert len(found) == n, "each message sent once"
    return found


def _between(times: list[float], lo: float, hi: float) -> int:
    return sum(1 for t in times if lo <= t <= hi)


def _alone_rate(times: list[float]) -> float:
    """Messages per second over the steady part (first and last second left out)."""
    inner = _between(times, times[0] + 1, times[-1] - 1)
    return inner / max(1e-9, times[-1] - times[0] - 2)


def test_an_account_alone_gets_the_whole_connection(stack: Stack, producer: Producer) -> None:
    """Work-conserving: alone, an account sends as fast through admission as through FIFO.

    FIFO here is a producer with the fair lane off (it publishes its batches itself); the two
    runs alternate on the same stack, so both see the same machine load.
    """
    fifo = Producer(Settings.from_env({**stack.env, "SMSDISPATCH_BULK_FAIRNESS": "0"}))
    n = 3000
    rates: dict[str, list[float]] = {"fair": [], "fifo": []}
    try:
        for i, (mode, p) in enumerate([("fifo", fifo), ("fair", producer)] * 2):
            name = _account(stack, f"solo-{i}")
            _send(p, name, n, 500 + i)
            rates[mode].append(_alone_rate(_wait_sent(stack, name, n, timeout=60)))
    finally:
        fifo.close()
    fair, plain = max(rates["fair"]), max(rates["fifo"])
    assert fair >= 0.9 * plain, f"alone: fair {rates['fair']} msg/s, FIFO {rates['fifo']}"
    assert fair >= 0.6 * RATE, f"alone: fair {rates['fair']} msg/s of {RATE}"


def test_a_small_account_finishes_near_its_fair_share(stack: Stack, producer: Producer) -> None:
    big, small = _account(stack, "big"), _account(stack, "small")
    n_big, n_small = 8000, 1000
    _send(producer, big, n_big, 510)
    wait_until(lambda: len(_sent_at(stack, big)) >= 500, 30, 0.1, "the big campaign under way")
    t0 = _send(producer, small, n_small, 520)
    small_times = _wait_sent(stack, small, n_small, timeout=60)
    fair_share_s = n_small / (RATE / 2)
    took = small_times[-1] - t0
    # FIFO would put it behind ~7,000 of the big account's messages (14 s or more).
    assert took <= 2 * fair_share_s, f"small took {took:.1f} s, fair share {fair_share_s:.1f} s"
    big_times = _wait_sent(stack, big, n_big, timeout=60)
    # Meanwhile the big account kept the other half: the connection stayed busy.
    during = _between(big_times, small_times[0], small_times[-1])
    span = small_times[-1] - small_times[0]
    assert (during + n_small) / span >= 0.8 * RATE


def test_weights_are_respected(stack: Stack, producer: Producer) -> None:
    light, heavy = _account(stack, "light"), _account(stack, "heavy")
    p = subprocess.run(
        [sys.executable, "-m", "dispatcher.cli", "accounts", "weight", heavy, "3", "--json"],
        env=stack.env, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert '"bulk_weight": 3' in p.stdout
    _send(producer, light, 6000, 530)
    wait_until(lambda: len(_sent_at(stack, light)) >= 300, 30, 0.1, "light under way")
    _send(producer, heavy, 3000, 540)
    heavy_times = _wait_sent(stack, heavy, 3000, timeout=60)
    light_times = _wait_sent(stack, light, 6000, timeout=60)
    lo, hi = heavy_times[0] + 0.5, heavy_times[-1] - 0.5
    share = _between(heavy_times, lo, hi) / max(
        1, _between(heavy_times, lo, hi) + _between(light_times, lo, hi)
    )
    assert 0.65 <= share <= 0.85, f"weight 3 against 1 got {share:.0%} of the sends"


def test_bad_weight_is_refused_naming_it(stack: Stack) -> None:
    name = _account(stack, "weighty")
    p = subprocess.run(
        [sys.executable, "-m", "dispatcher.cli", "accounts", "weight", name, "0"],
        env=stack.env, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert p.returncode != 0
    assert "weight" in p.stderr and "from 1 to 1000" in p.stderr
