"""Regressions found by the chaos run (docs/reliability.md), pinned at unit level."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from dispatcher.contract import Status
from tests.unit.test_sending import FakeCarrier, MemoryLog, Row, make, payload, run
from workers.errors import RetryableCarrierError
from workers.sending.sender import SenderOptions


@dataclass
class LookupDown(FakeCarrier):
    """A carrier that accepted the first attempt but cannot answer a look-up right now (in the
    chaos run: the look-up timed out on a loaded machine)."""

    async def lookup(self, refs: Sequence[str]) -> dict[str, str] | None:
        raise RetryableCarrierError("carrier_timeout", "no answer in time")


@pytest.mark.parametrize("lane", ["bulk", "priority"])
def test_failed_lookup_does_not_resend_an_ambiguous_retry(lane: str) -> None:
    """Found by the long chaos run (4 duplicate submits): a retry after a timeout was resent
    when the look-up before it failed. It now waits, without spending the attempt."""
    log = MemoryLog({"m0": Row(attempts=1, error="carrier_timeout")})
    carrier = LookupDown(known={"m0": "c-earlier"})  # the timed-out first attempt landed
    report = run(make(log, carrier, options=SenderOptions(lane=lane)), [payload(0, attempt=1)])
    assert carrier.submits == [], "sent again without knowing whether the carrier has it"
    assert report.deferred == 1
    assert log.rows["m0"].status == Status.RETRYING and log.rows["m0"].attempts == 1


def test_failed_lookup_after_a_clean_failure_sends() -> None:
    """A clean failure (a 500 answer) never reached the carrier: no look-up answer is needed."""
    log = MemoryLog({"m0": Row(attempts=1, error="internal")})
    carrier = LookupDown()
    run(make(log, carrier), [payload(0, attempt=1)])
    assert carrier.submits == ["m0"] and log.rows["m0"].status == Status.SENT


def test_redelivered_task_with_a_stale_attempt_count_still_looks_up() -> None:
    """Found by the third long chaos run (8 duplicate submits): a chunk task redelivered after
    a worker was killed carries attempt 0 in its payload although the message's last attempt
    timed out; the log, not the payload, must decide that the carrier is asked first."""
    log = MemoryLog({"m0": Row(attempts=1, error="carrier_timeout")})
    carrier = FakeCarrier(known={"m0": "c-earlier"})  # the timed-out attempt landed
    report = run(make(log, carrier), [payload(0, attempt=0)])
    assert carrier.submits == [] and report.reconciled == 1
    assert log.rows["m0"].status == Status.SENT and log.rows["m0"].carrier_id == "c-earlier"
