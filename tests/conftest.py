"""Shared fixtures: real services for integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from dispatcher.store.db import make_engine
from tests.support.services import fresh_database
from tests.support.stack import ACTIVE, Stack, running_stack


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """On a failed test, attach the logs of every running stack to the report."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        for st in ACTIVE:
            rep.sections.append(("stack logs", st.logs()[-30000:]))
            rep.sections.append(("stack redis", st.redis_summary()))
        rep.sections.append(("processes", _processes()))


def _processes() -> str:
    import psutil

    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if any(k in cmd for k in ("dispatcher.cli", "simulator", "smsdispatch")):
            try:
                env = p.environ()
            except psutil.Error:
                env = {}
            out.append(f"{p.pid} {env.get('REDIS_URL')} {cmd[:120]}")
    return "\n".join(out)


@pytest.fixture
def engine() -> Iterator[Engine]:
    """A fresh, migrated database (SQLite by default; PostgreSQL with SMSD_TEST_DB=postgres),
    dropped after the test."""
    with fresh_database() as url:
        eng = make_engine(url, pool_size=4)
        yield eng
        eng.dispose()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """One running pipeline per test module (default settings, carrier TPS 2000)."""
    with running_stack(carrier_tps=2000, sending_stale_s=3, orphan_stale_s=5) as s:
        yield s
