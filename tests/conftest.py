"""Shared fixtures: real services for integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.stack import Stack, running_stack


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """One running pipeline per test module (default settings, carrier TPS 2000)."""
    with running_stack(carrier_tps=2000, sending_stale_s=3, orphan_stale_s=5) as s:
        yield s
