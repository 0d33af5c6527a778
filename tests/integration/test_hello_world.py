"""A new user's first minutes: fresh clone, `make run`, the printed curl, the message delivered
(its handset report through the API) and its signed webhook in the local inbox `make run` starts;
then a second `make run` of the same checkout.

It prints each phase's time (the README's figures come from it):

    SMSD_HELLO_FROM_WORKTREE=1 .venv/bin/pytest -s -q tests/integration/test_hello_world.py
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from typing import Any

import httpx
import psutil
import pytest
import redis

from tests.support.make_run import INSTALLED, READY, STOPPED, MakeRun, checkout, user_env
from tests.support.services import backend, free_port
from tests.support.stack import wait_until

pytestmark = pytest.mark.integration


@pytest.mark.timeout(900)  # a fresh virtualenv is installed, as a new user would
@pytest.mark.skipif(backend() == "postgres", reason="make run uses its own SQLite and Redis")
def test_make_run_from_a_fresh_clone(tmp_path: pytest.TempPathFactory) -> None:
    clone = os.path.join(str(tmp_path), "smsdispatch")
    checkout(clone)
    port = free_port()
    env = user_env(port)
    load = os.getloadavg()[0]  # the figures below mean little without it
    run = MakeRun(clone, env)
    try:
        installed_line = run.wait_for("installed ", 600)
        # make echoes the command once the install is done
        assert run.wait_for("smsdispatch run", 60), run.tail()
        installed = time.monotonic()
        ready_line = run.wait_for("ready in", 300)
        curl = run.wait_for("curl -s -X POST", 10)
        assert ready_line and curl, run.tail()
        ready = time.monotonic()
        profile = run.cpu_profile()
        short_curl = run.wait_for('"shortLink": true', 10)
        assert short_curl, run.tail()
        inbox_line = run.wait_for("webhook inbox:", 30)
        assert inbox_line, run.tail()
        inbox = inbox_line.split("webhook inbox:", 1)[1].split()[0]
        answer = subprocess.run(
            ["bash", "-c", curl.strip()], capture_output=True, text=True, check=True, timeout=30
        )
        message = json.loads(answer.stdout)["data"][0]
        with open(os.path.join(clone, "var", "demo-account.json")) as fh:
            keys = json.load(fh)
        assert set(keys) == {"Application-Key", "Authorization"}

        seen: dict[str, float] = {}

        def status() -> str | None:
            r = httpx.get(f"http://127.0.0.1:{port}/v2.1/sms/{message['id']}", headers=keys)
            s = str(r.json()["data"][0]["statusName"])
            seen.setdefault(s, time.monotonic())
            return s if s == "delivered" else None

        wait_until(status, 30, interval=0.05, what="hello-world message delivered")
        delivered = time.monotonic()

        def webhook() -> dict[str, Any] | None:
            items = httpx.get(inbox, timeout=5).json()
            mine = [i for i in items if (i.get("payload") or {}).get("id") == message["id"]]
            return mine[0] if mine else None

        received = wait_until(webhook, 30, interval=0.05, what="webhook in the inbox")
        hooked = time.monotonic()
        assert received and received["verified"], received
        assert received["payload"]["statusName"] == "delivered"
        # The short-link example: its link answers on make run's own address.
        shortened = subprocess.run(
            ["bash", "-c", short_curl.strip()], capture_output=True, text=True, check=True,
            timeout=30,
        )  # fmt: skip
        (link,) = json.loads(shortened.stdout)["data"][0]["shortLinks"]
        assert link["shortUrl"].startswith("http://127.0.0.1:"), link
        hop = httpx.get(link["shortUrl"], headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64)"})
        assert (hop.status_code, hop.headers["location"]) == (302, link["url"])
        _assert_no_secret_shown(clone, run.proc.pid)
        exporter_line = run.wait_for("Queue and backlog metrics (exporter):", 10)
        assert exporter_line, run.tail()
        _assert_exporter_serves_the_backlogs(exporter_line.rsplit(" ", 1)[1].strip())
    finally:
        code = run.interrupt()
    assert code in STOPPED, run.tail()
    sent = seen.get("sent", delivered)
    stack = READY.search(ready_line)
    setup = INSTALLED.search(installed_line or "")
    assert stack, ready_line

    # The same checkout again: nothing to install, the log and the demo account already there.
    again = MakeRun(clone, env)
    try:
        second_line = again.wait_for("ready in", 120)
        assert second_line and again.wait_for("curl -s -X POST", 10), again.tail()
        second_ready = time.monotonic() - again.started
        second_profile = again.cpu_profile()
    finally:
        assert again.interrupt() in STOPPED, again.tail()
    second = READY.search(second_line)
    assert second, second_line

    launch = ready - installed - float(stack["total"])  # interpreter and command-line imports
    print(
        f"\nload average {load:.1f} on {os.cpu_count()} cores; "
        f"fresh clone: make run ready in {ready - run.started:.1f} s: "
        f"install {installed - run.started:.1f} s "
        f"(venv {setup['seconds'] if setup else '?'} s: {setup['parts'] if setup else '?'}), "
        f"stack {ready - installed:.1f} s (command start {launch:.1f} s, "
        f"Redis and simulator {stack['redis']} s, migrations and demo account "
        f"{stack['migrations']} s, processes up {stack['processes']} s); "
        f"curl → sent in {sent - ready:.2f} s, → delivered in {delivered - ready:.2f} s; "
        f"delivered → webhook received in {hooked - delivered:.2f} s"
        f"\nCPU used by the stack's start: {profile}"
        f"\nsecond make run: ready in {second_ready:.1f} s (migrations and demo account "
        f"{second['migrations']} s, processes up {second['processes']} s); CPU {second_profile}"
    )


# The exporter's series the dashboard's queue and backlog panels and the alert rules read.
BACKLOG_SERIES = (
    "smsdispatch_queue_depth",
    "smsdispatch_queue_oldest_age_seconds",
    "smsdispatch_scheduled_due_delay_seconds",
    "smsdispatch_outbox_unpublished_batches",
    "smsdispatch_webhook_pending_deliveries",
    "smsdispatch_callback_inbox_oldest_age_seconds",
    "smsdispatch_dead_letters",
)


def _assert_exporter_serves_the_backlogs(url: str) -> None:
    """`make run`'s exporter answers with every lane's queue and the backlogs, both sources up
    (the series the dashboard's queue panels and the QueueAgeHigh-style alerts query)."""
    assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics"), url
    body = httpx.get(url, timeout=10).text
    for name in BACKLOG_SERIES:
        assert f"\n{name}" in body, (name, body[:2000])
    for lane in ("priority", "bulk", "dlr", "webhooks"):
        assert f'smsdispatch_queue_depth{{lane="{lane}"}}' in body, lane
    for source in ("redis", "database"):
        assert f'smsdispatch_exporter_source_up{{source="{source}"}} 1.0' in body, source


def _assert_no_secret_shown(clone: str, pid: int) -> None:
    """Other users of the machine see none of it: var/ is private, Redis wants a password,
    and no command line holds the Redis password or the carrier callback token."""
    for root, _dirs, files in os.walk(os.path.join(clone, "var")):
        for path in [root, *(os.path.join(root, f) for f in files)]:
            assert stat.S_IMODE(os.lstat(path).st_mode) & 0o077 == 0, path
    children = psutil.Process(pid).children(recursive=True)
    [api] = [p for p in children if "dispatcher.cli" in p.cmdline() and "api" in p.cmdline()]
    env = api.environ()
    token, url = env["SMSDISPATCH_CARRIER_CALLBACK_TOKEN"], env["REDIS_URL"]
    password = url.split("@")[0].rsplit(":", 1)[1]
    assert len(password) >= 24 and len(token) >= 16
    for p in children:
        shown = " ".join(p.cmdline())
        assert token not in shown and password not in shown, shown
    host_port = url.split("@")[1].split("/")[0]
    bare = redis.Redis.from_url(f"redis://{host_port}/0")
    with pytest.raises(redis.exceptions.AuthenticationError):
        bare.ping()
    bare.close()
