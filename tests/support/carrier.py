"""A carrier connection for tests that drive the sender in process: it accepts every message
(carrier id ``c-<our id>``) and remembers what it got, in order."""

from __future__ import annotations

from workers.connectors.base import Outbound, SubmitResult


class AcceptingCarrier:
    """Accepts everything, one message per call; :attr:`refs` lists what it was sent."""

    max_batch = 1

    def __init__(self, name: str = "c") -> None:
        self.name = name
        self.refs: list[str] = []

    async def submit(self, msg: Outbound) -> SubmitResult:
        """Accept ``msg``."""
        self.refs.append(msg.ref)
        return SubmitResult(msg.ref, f"c-{msg.ref}", 200, 1.0)

    async def submit_batch(self, msgs: list[Outbound]) -> list[SubmitResult]:
        """Accept each of ``msgs``."""
        return [await self.submit(m) for m in msgs]

    async def lookup(self, refs: list[str]) -> dict[str, str] | None:
        """Has none of ``refs`` from an earlier attempt (none was ever ambiguous here)."""
        return {}

    async def close(self) -> None:
        """Nothing to close."""
        return None
