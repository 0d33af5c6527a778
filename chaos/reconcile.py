"""After a chaos run: check the outcome against the carrier's and the receiver's own records.

Plain data in, a :class:`Verdict` out, so the checks are unit-tested with planted faults
(``tests/chaos/test_reconcile.py``): a check that cannot fail proves nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

FINAL = frozenset({"delivered", "undelivered", "expired", "rejected", "failed", "cancelled"})
WAITING_RETRY = frozenset({"retrying", "scheduled"})


@dataclass(frozen=True)
class MessageRow:
    """What our log says about one message."""

    id: str
    status: str
    carrier_id: str | None
    valid_until: float
    next_attempt_at: float | None


@dataclass(frozen=True)
class DeliveryRow:
    """One ``message.status`` webhook delivery of our log."""

    id: str
    message_id: str
    status_key: str
    state: str
    ok_attempts: int  # recorded attempts with a 2xx answer


@dataclass(frozen=True)
class Hook:
    """One webhook request as the customer's receiver recorded it (it answered 2xx)."""

    webhook_id: str
    message_id: str
    status: str


@dataclass
class Verdict:
    """Figures and violations; ``ok`` when there are no violations."""

    figures: dict[str, Any] = field(default_factory=dict)
    violations: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, item: str) -> None:
        """Record one violation of ``kind``."""
        self.violations.setdefault(kind, []).append(item)

    @property
    def ok(self) -> bool:
        """No violation at all."""
        return not self.violations

    def summary(self, examples: int = 5) -> dict[str, Any]:
        """JSON-ready: figures, violation counts and a few examples of each."""
        return {
            "ok": self.ok,
            "figures": self.figures,
            "violations": {k: len(v) for k, v in sorted(self.violations.items())},
            "examples": {k: v[:examples] for k, v in sorted(self.violations.items())},
        }


def check(
    accepted: Iterable[str],
    rows: Iterable[MessageRow],
    carrier_refcounts: Mapping[str, int],
    deliveries: Iterable[DeliveryRow],
    hooks: Iterable[Hook],
    now: float,
) -> Verdict:
    """Every accepted message is accounted for exactly once, at the carrier and the receiver.

    - ``lost``: answered 200 with an id that is not in the log;
    - ``stuck``: neither final nor waiting for a scheduled retry within its validity
      (``report_missing`` when it is ``sent`` and its delivery report never arrived);
    - ``duplicate_submit`` / ``foreign_submit``: the carrier accepted a reference twice, or one
      we never stored;
    - ``carrier_mismatch``: the log records a carrier id the carrier does not have, or the
      carrier has a message the log does not say was sent;
    - ``cancelled_but_sent``: a message cancelled before any worker claimed it (docs/
      campaigns.md) that reached the carrier all the same;
    - ``webhook_missing`` / ``webhook_extra`` / ``webhook_undelivered`` / ``webhook_wrong``:
      each final status has exactly one delivery, delivered, received at least once with that
      status; ``webhook_foreign``: the receiver got a delivery id we never created.
    Webhook delivery is at-least-once: receipts beyond the first per delivery id are counted
    (``webhook_duplicates``), not a violation.
    """
    v = Verdict()
    accepted_ids = set(accepted)
    by_id = {r.id: r for r in rows}
    statuses = Counter(r.status for r in by_id.values())
    v.figures["accepted"] = len(accepted_ids)
    v.figures["stored"] = len(by_id)
    v.figures["stored_not_acknowledged"] = len(set(by_id) - accepted_ids)
    v.figures["statuses"] = dict(sorted(statuses.items()))
    for mid in sorted(accepted_ids - set(by_id)):
        v.add("lost", mid)

    pending = 0
    for r in by_id.values():
        if r.status in FINAL:
            continue
        if (
            r.status in WAITING_RETRY
            and r.next_attempt_at is not None
            and r.valid_until > max(now, r.next_attempt_at)
        ):
            pending += 1
            continue
        # "sent" with no final report: the carrier took it, our log never got its report.
        v.add("report_missing" if r.status == "sent" else "stuck", f"{r.id}:{r.status}")
    v.figures["pending_retry"] = pending
    v.figures["final"] = sum(n for s, n in statuses.items() if s in FINAL)

    dup = {ref: n for ref, n in carrier_refcounts.items() if n > 1}
    for ref, n in sorted(dup.items()):
        v.add("duplicate_submit", f"{ref}x{n}")
    for ref in sorted(set(carrier_refcounts) - set(by_id)):
        v.add("foreign_submit", ref)
    v.figures["carrier_submits"] = sum(carrier_refcounts.values())
    v.figures["carrier_unique_refs"] = len(carrier_refcounts)
    v.figures["duplicate_submits"] = sum(n - 1 for n in dup.values())
    with_carrier_id = 0
    for r in by_id.values():
        at_carrier = carrier_refcounts.get(r.id, 0) > 0
        if r.carrier_id is not None:
            with_carrier_id += 1
        if (r.carrier_id is not None) != at_carrier:
            v.add("carrier_mismatch", f"{r.id}:{r.status}:carrier_id={r.carrier_id}")
        if r.status == "cancelled" and at_carrier:
            v.add("cancelled_but_sent", r.id)
    v.figures["recorded_sent"] = with_carrier_id

    _check_webhooks(v, by_id, deliveries, hooks)
    v.figures["counts_add_up"] = (
        sum(statuses.values()) == len(by_id)
        and v.figures["final"]
        + pending
        + len(v.violations.get("stuck", []))
        + len(v.violations.get("report_missing", []))
        == len(by_id)
        and with_carrier_id == len(carrier_refcounts)
    )
    if not v.figures["counts_add_up"]:
        v.add("counts", "statuses, carrier records and final states do not add up")
    return v


def _check_webhooks(
    v: Verdict,
    by_id: Mapping[str, MessageRow],
    deliveries: Iterable[DeliveryRow],
    hooks: Iterable[Hook],
) -> None:
    per_message: dict[str, list[DeliveryRow]] = {}
    delivery_ids: dict[str, DeliveryRow] = {}
    for d in deliveries:
        per_message.setdefault(d.message_id, []).append(d)
        delivery_ids[d.id] = d
    received = Counter(h.webhook_id for h in hooks)
    hook_status = {h.webhook_id: h for h in hooks}
    for wid in sorted(set(received) - set(delivery_ids)):
        v.add("webhook_foreign", wid)
    for r in by_id.values():
        ds = per_message.get(r.id, [])
        if r.status not in FINAL:
            if ds:
                v.add("webhook_extra", f"{r.id}:{r.status} has {len(ds)} deliveries")
            continue
        mine = [d for d in ds if d.status_key == r.status]
        if len(mine) != 1 or len(ds) != 1:
            kind = "webhook_missing" if not mine else "webhook_extra"
            v.add(kind, f"{r.id}:{r.status} has {[d.status_key for d in ds]}")
            continue
        d = mine[0]
        if d.state != "delivered" or d.ok_attempts != 1:
            v.add("webhook_undelivered", f"{d.id}:{d.state}:ok_attempts={d.ok_attempts}")
        if received[d.id] == 0:
            v.add("webhook_not_received", f"{d.id} for {r.id}:{r.status}")
        elif (h := hook_status[d.id]).message_id != r.id or h.status != r.status:
            v.add("webhook_wrong", f"{d.id}: says {h.message_id}:{h.status}, log {r.status}")
    v.figures["webhook_deliveries"] = len(delivery_ids)
    v.figures["webhook_receipts"] = sum(received.values())
    v.figures["webhook_duplicates"] = sum(n - 1 for n in received.values() if n > 1)
