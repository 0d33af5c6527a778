"""Claims left in "sending" by a crash: ask the carrier, never blindly resend.

A message stuck in ``sending`` may or may not have reached the carrier. We look it up by our
client reference: found → ``sent`` with the carrier's id; not found → back to ``retrying`` (due
now, the attempt already counted). A carrier that cannot answer look-ups gets no resend: the
message becomes ``failed`` with ``send_state_unknown``, visible in the log, because sending an SMS
twice is the worse failure for a one-time code or a paid campaign.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dispatcher.contract import Status
from dispatcher.store.progress import Failure, SendProgress, Sent
from workers.connectors.base import Connector, carrier_id_of
from workers.connectors.registry import ConnectorSet


@dataclass
class ReconcileReport:
    """Counts of one reconciliation."""

    checked: int = 0
    found_sent: int = 0
    requeued: int = 0
    unknown: int = 0


async def reconcile(
    store: SendProgress,
    connector: Connector | ConnectorSet,
    ids: Sequence[str],
    older_than: float,
    now: float,
) -> ReconcileReport:
    """Resolve stale claims among ``ids`` using the carrier's own records.

    With several connections each claim is asked of the connection it was sent over.
    """
    if isinstance(connector, ConnectorSet):
        report = ReconcileReport()
        owners = store.last_connections(list(ids))
        groups: dict[str, list[str]] = {}
        for i in ids:
            groups.setdefault(owners.get(i, ""), []).append(i)
        for name, group in groups.items():
            # A connection removed from the configuration cannot be asked.
            one: Any = connector.get(name) or _Unknown()
            part = await _reconcile_one(store, one, group, older_than, now)
            for f in ("checked", "found_sent", "requeued", "unknown"):
                setattr(report, f, getattr(report, f) + getattr(part, f))
        return report
    return await _reconcile_one(store, connector, ids, older_than, now)


class _Unknown:
    """A connection no longer configured: it cannot be asked."""

    async def lookup(self, refs: Sequence[str]) -> dict[str, str] | None:
        return None


async def _reconcile_one(
    store: SendProgress, connector: Any, ids: Sequence[str], older_than: float, now: float
) -> ReconcileReport:
    report = ReconcileReport()
    stale = store.still_sending(ids, older_than)
    report.checked = len(stale)
    if not stale:
        return report
    found = await connector.lookup(stale)  # CarrierError propagates: the task retries later
    if found is None:
        failures = [
            Failure(
                i,
                Status.FAILED,
                "send_state_unknown",
                "worker lost during the carrier call; carrier cannot be asked",
                False,
            )
            for i in stale
        ]
        report.unknown = store.record_failures(failures, now)
        return report
    found = {ref: carrier_id_of(ref, cid) for ref, cid in found.items()}
    sent = [Sent(i, found[i], 200, 0.0) for i in stale if i in found]
    missing = [i for i in stale if i not in found]
    report.found_sent, report.requeued = store.settle_reconciled(sent, missing, now)
    return report
