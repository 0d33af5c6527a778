"""Choosing a connection per message at send time.

For each message: its tiers from the routing table (longest prefix, then preference; lane and
account filters applied); the first tier with a usable connection wins:

* a connection of that tier that is recovering (breaker open past its cool-down, or half-open)
  gets the message as a **probe** when a probe slot is free, so traffic returns to the
  preferred route as soon as probes succeed;
* otherwise the tier's **closed** connections share the message by weight;
* a tier whose connections are all open is skipped: the next tier is the failover route.

No usable connection in any tier: the message **waits** (``waiting``; no attempt is spent).
No tier at all (the configuration changed after the message was accepted): ``unroutable``.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from dispatcher.contract import MessagePayload
from dispatcher.routing import RoutingTable, Tier
from workers.sending.breaker import Breakers, Peek

MAX_PROBE_ATTEMPT = 2  # messages that already failed this often are not used as probes
AccountNames = Callable[[Sequence[int]], Awaitable[Mapping[int, str]]]


@dataclass
class Plan:
    """Where the messages of one sub-batch go."""

    by_connection: dict[str, list[MessagePayload]] = field(default_factory=dict)
    probes: dict[str, set[str]] = field(default_factory=dict)  # connection → probe message ids
    waiting: list[MessagePayload] = field(default_factory=list)
    wait_s: float = 0.0  # how long the waiting ones should wait
    unroutable: list[MessagePayload] = field(default_factory=list)


class RouteChooser:
    """Plans sub-batches over a routing table and the shared breakers."""

    def __init__(
        self,
        table: RoutingTable,
        breakers: Breakers | None,
        account_names: AccountNames | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.table = table
        self.breakers = breakers
        self.account_names = account_names
        self.rng = rng or random.Random()
        self.names = [c.name for c in table.config.connections]

    async def plan(self, msgs: Sequence[MessagePayload], lane: str) -> Plan:
        """Assign each message a connection, or say why it cannot go now."""
        plan = Plan()
        names: Mapping[int, str] = {}
        if self.table.uses_accounts() and self.account_names is not None:
            names = await self.account_names(sorted({int(m["account"]) for m in msgs}))
        peeks = await self.breakers.peek(self.names) if self.breakers else {}
        free_probes: dict[str, int] = {}
        waits: list[float] = []
        for m in msgs:
            tiers = self.table.tiers(m["to"], lane, names.get(int(m["account"])))
            if not tiers:
                plan.unroutable.append(m)
                continue
            # A failed probe costs its message an attempt: messages that already failed are
            # probes only when no closed route is left for them.
            fresh = int(m.get("attempt", 0)) < MAX_PROBE_ATTEMPT
            chosen, probe = None, False
            for probing in (True,) if fresh else (False, True):
                chosen, probe = await self._choose(tiers, peeks, free_probes, probing, waits)
                if chosen is not None:
                    break
            if chosen is not None and probe:
                plan.probes.setdefault(chosen, set()).add(m["id"])
            if chosen is None:
                plan.waiting.append(m)
            else:
                plan.by_connection.setdefault(chosen, []).append(m)
        if plan.waiting:
            positive = [w for w in waits if w > 0]
            plan.wait_s = min(positive) if positive else 0.0
        return plan

    async def _choose(
        self,
        tiers: Sequence[Tier],
        peeks: Mapping[str, Peek],
        free_probes: dict[str, int],
        probing: bool,
        waits: list[float],
    ) -> tuple[str | None, bool]:
        """The connection for one message and whether it goes as a probe: a probe slot of a
        recovering connection (when ``probing``), else a closed one by weight, tier by tier."""
        for tier in tiers:
            for c in tier:
                peek = peeks.get(c.name)
                if not probing or peek is None or peek.closed or not peek.may_probe:
                    continue
                if c.name not in free_probes:
                    assert self.breakers is not None
                    free_probes[c.name] = int(await self.breakers.try_probe(c.name))
                if free_probes[c.name] > 0:
                    free_probes[c.name] -= 1
                    return c.name, True
            closed = [c for c in tier if c.name not in peeks or peeks[c.name].closed]
            if len(closed) == 1:
                return closed[0].name, False
            if closed:
                return self.rng.choices(closed, [c.weight for c in closed])[0].name, False
            waits.extend(peeks[c.name].wait_s for c in tier if c.name in peeks)
        return None, False
