"""Deficit round robin and the queue target of the fair bulk lane (no I/O)."""

from __future__ import annotations

from collections import Counter

from dispatcher.scheduler.admission import DeficitRoundRobin, QueueTarget


def _drain(
    drr: DeficitRoundRobin, backlog: dict[int, list[int]], capacity: int, rounds: int
) -> list[int]:
    """Run ``rounds`` calls of ``take`` over per-account batch sizes; the picks in order."""
    out: list[int] = []
    for _ in range(rounds):
        drr.sync({a: drr.weights.get(a, 1) for a, sizes in backlog.items() if sizes})
        picks = drr.take(capacity, lambda a, n: backlog[a][n] if n < len(backlog[a]) else None)
        for a in picks:
            backlog[a].pop(0)
        out.extend(picks)
    return out


def test_equal_weights_alternate_whatever_the_backlog() -> None:
    drr = DeficitRoundRobin(quantum=500)
    backlog = {1: [500] * 1000, 2: [500] * 10}
    picks = _drain(drr, backlog, capacity=3, rounds=10)
    # The small account gets every other batch from its first turn until it has none left.
    assert picks[:20] == [1, 2] * 10
    assert set(picks[20:]) == {1}


def test_weights_share_in_proportion() -> None:
    drr = DeficitRoundRobin(quantum=500)
    drr.sync({1: 1, 2: 3})
    backlog = {1: [500] * 100, 2: [500] * 100}
    picks = _drain(drr, backlog, capacity=4, rounds=10)
    counts = Counter(picks)
    assert counts[2] == 3 * counts[1]


def test_small_batches_are_counted_by_messages_not_by_batches() -> None:
    # Account 2's retries come in batches of 50: per turn it may send 10 of them, not one.
    drr = DeficitRoundRobin(quantum=500)
    backlog = {1: [500] * 100, 2: [50] * 100}
    picks = _drain(drr, backlog, capacity=11, rounds=4)
    counts = Counter(picks)
    sent = {1: counts[1] * 500, 2: counts[2] * 50}
    assert abs(sent[1] - sent[2]) <= 500


def test_alone_an_account_takes_every_slot() -> None:
    drr = DeficitRoundRobin(quantum=500)
    backlog = {7: [500] * 50}
    picks = _drain(drr, backlog, capacity=5, rounds=3)
    assert picks == [7] * 15


def test_an_idle_account_leaves_the_ring_and_loses_its_credit() -> None:
    drr = DeficitRoundRobin(quantum=500)
    backlog = {1: [100], 2: [500] * 20}
    _drain(drr, backlog, capacity=4, rounds=1)
    assert 1 not in drr.ring and 1 not in drr.deficit
    # Coming back, it starts from zero credit: it does not get a burst for its idle time.
    backlog[1] = [500] * 20
    picks = _drain(drr, backlog, capacity=6, rounds=2)
    assert abs(picks.count(1) - picks.count(2)) <= 1


def test_a_resumed_turn_is_not_credited_twice() -> None:
    # Capacity 1 per call: the position and the credit carry over between calls.
    drr = DeficitRoundRobin(quantum=500)
    drr.sync({1: 2, 2: 1})
    backlog = {1: [500] * 30, 2: [500] * 30}
    picks = _drain(drr, backlog, capacity=1, rounds=30)
    assert Counter(picks) == {1: 20, 2: 10}


def test_queue_target_follows_the_drain_and_grows_when_starved() -> None:
    t = QueueTarget(queue_s=1.0, min_tasks=2)
    assert t.tasks() == 2
    t.observe(0.0, 0, 0, held_back=False)
    # The queue ran dry while work waited: the estimate doubles (at least min_tasks per s).
    t.observe(1.0, 0, 2, held_back=True)
    grown = t.tasks()
    assert grown >= 2
    t.observe(2.0, 0, grown, held_back=True)
    assert t.tasks() >= 2 * grown or t.tasks() == t.max_tasks
    # Steady state: 8 tasks a second leave a queue that never empties → about 8 tasks deep.
    for i in range(3, 60):
        t.observe(float(i), 4, 8, held_back=True)
    assert 7 <= t.tasks() <= 9


def test_the_admitter_admits_only_under_the_lease() -> None:
    import fakeredis

    from dispatcher.config import Settings
    from dispatcher.scheduler.loop import LEADER_KEY, Scheduler

    client = fakeredis.FakeRedis()
    one = Scheduler(Settings(), None, None, client)  # type: ignore[arg-type]
    two = Scheduler(Settings(), None, None, client)  # type: ignore[arg-type]
    two.identity = "other-host:1"
    assert one.is_leader() and one.leading()
    assert not two.leading()  # the standby's admitter stays idle
    # The leader's main loop is slow (a long tick): its admitter renews the lease itself.
    one._leading_until = 0.0
    assert one.leading() and client.get(LEADER_KEY) == one.identity.encode()
    # The lease moved (the leader was paused past its expiry): the old one stops admitting.
    client.set(LEADER_KEY, two.identity)
    one._leading_until = one._lease_checked = 0.0
    assert not one.leading()
