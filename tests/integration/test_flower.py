"""Flower, the tool docs/running.md gives for inspecting the pools, works against our broker: run
as documented (``celery --app=workers.app flower``), it lists each lane's pool with its
concurrency and queue, and the lanes' queue lengths, from a real Redis and real pools."""

from __future__ import annotations

import sys
from typing import Any

import httpx
import pytest

from tests.support.services import free_port
from tests.support.stack import running_stack, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.any_db]


@pytest.mark.timeout(180)
def test_flower_shows_each_pool_and_its_queue() -> None:
    with running_stack(workers={"priority": 1, "bulk": 2}, scheduler=False) as stack:
        port = free_port()
        # Flower 2 answers its API only to authenticated users unless told otherwise; the test
        # listens on loopback only (docs/running.md says to keep it behind authentication).
        stack.env["FLOWER_UNAUTHENTICATED_API"] = "true"
        stack.spawn(
            "flower",
            [
                sys.executable,
                "-m",
                "celery",
                "--app=workers.app",
                "flower",
                "--address=127.0.0.1",
                f"--port={port}",
            ],
        )
        base = f"http://127.0.0.1:{port}"

        def workers() -> dict[str, Any] | None:
            try:
                r = httpx.get(f"{base}/api/workers", params={"refresh": "1"}, timeout=10)
            except httpx.TransportError:
                return None
            found = r.json() if r.status_code == 200 else {}
            lanes = {name.split("@", 1)[0] for name in found}
            return found if {"priority", "bulk"} <= lanes else None

        found = wait_until(workers, 90, interval=1.0, what="flower lists both pools")
        by_lane = {name.split("@", 1)[0]: info for name, info in found.items()}
        for lane, concurrency in (("priority", 1), ("bulk", 2)):
            info = by_lane[lane]
            assert info["stats"]["pool"]["max-concurrency"] == concurrency, info["stats"]
            assert [q["name"] for q in info["active_queues"]] == [f"smsd.{lane}"]
        lengths = httpx.get(f"{base}/api/queues/length", timeout=10).json()
        names = {q["name"] for q in lengths["active_queues"]}
        assert {"smsd.priority", "smsd.bulk"} <= names, lengths
        # The page renders Flower's own view of the workers, which may lag its API's refresh.
        page = wait_until(
            lambda: (
                (p := httpx.get(f"{base}/workers", timeout=10)).status_code == 200
                and "priority@" in p.text
                and p
            ),
            30,
            interval=1.0,
            what="the workers page lists the priority pool",
        )
        assert page.status_code == 200 and "priority@" in page.text
