"""The client's own tests need httpx and pytest only: the API is a MockTransport handler."""

from __future__ import annotations

import pytest
import smsdispatch_client.aio
import smsdispatch_client.sync


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The retry delays, recorded instead of slept (both clients)."""
    delays: list[float] = []

    async def asleep(delay: float) -> None:
        delays.append(delay)

    monkeypatch.setattr(smsdispatch_client.sync.time, "sleep", delays.append)
    monkeypatch.setattr(smsdispatch_client.aio.asyncio, "sleep", asleep)
    return delays
