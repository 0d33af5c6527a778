"""Early delivery reports wait in a Redis sorted set (not as Celery countdowns a worker holds in
memory); the scheduler re-publishes those that are due, then removes them."""

from __future__ import annotations

import json
from typing import Any

import fakeredis
import pytest

from dispatcher.config import Settings
from dispatcher.contract import EARLY_REPORTS_KEY, TASK_APPLY_REPORTS, Lane
from dispatcher.intake.broker import BrokerUnavailable
from dispatcher.scheduler.loop import Scheduler


class Broker:
    """Records what the scheduler publishes; can be made to fail like a Redis outage."""

    def __init__(self, fail: bool = False) -> None:
        self.published: list[tuple[str, dict[str, Any], Lane]] = []
        self.fail = fail

    def publish_task(self, name: str, payload: dict[str, Any], lane: Lane) -> None:
        if self.fail:
            raise BrokerUnavailable("ConnectionError")
        self.published.append((name, payload, lane))


def _scheduler(broker: Broker) -> tuple[Scheduler, Any]:
    client = fakeredis.FakeRedis()
    return Scheduler(Settings(), None, broker, client), client  # type: ignore[arg-type]


def test_due_reports_are_published_then_removed() -> None:
    broker = Broker()
    sched, client = _scheduler(broker)
    due = {"items": [{"id": "sim-1"}], "connection": "default", "attempt": 1}
    later = {"items": [{"id": "sim-2"}], "connection": "default", "attempt": 3}
    client.zadd(EARLY_REPORTS_KEY, {json.dumps(due): 100.0, json.dumps(later): 200.0})
    assert sched._release_early_reports(150.0) == 1
    assert broker.published == [(TASK_APPLY_REPORTS, due, Lane.DLR)]
    assert client.zrange(EARLY_REPORTS_KEY, 0, -1) == [json.dumps(later).encode()]


def test_a_failed_publish_keeps_the_reports() -> None:
    sched, client = _scheduler(Broker(fail=True))
    client.zadd(EARLY_REPORTS_KEY, {json.dumps({"items": [], "connection": "c"}): 1.0})
    with pytest.raises(BrokerUnavailable):  # the tick fails and is tried again
        sched._release_early_reports(2.0)
    assert client.zcard(EARLY_REPORTS_KEY) == 1
