"""A new user's first minutes: fresh clone, `make run`, the printed curl, the message delivered
(its handset report through the API) and its signed webhook in the local inbox `make run` starts.

``SMSD_HELLO_FROM_WORKTREE=1`` copies the working tree (tracked and untracked files, minus the
ignored ones) instead of cloning HEAD, to try uncommitted changes the same way.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import stat
import subprocess
import threading
import time
from typing import Any

import httpx
import psutil
import pytest
import redis

from tests.support.services import backend, free_port
from tests.support.stack import ROOT, wait_until

pytestmark = pytest.mark.integration


@pytest.mark.timeout(900)  # a fresh virtualenv is installed, as a new user would
@pytest.mark.skipif(backend() == "postgres", reason="make run uses its own SQLite and Redis")
def test_make_run_from_a_fresh_clone(tmp_path: pytest.TempPathFactory) -> None:
    clone = os.path.join(str(tmp_path), "smsdispatch")
    if os.environ.get("SMSD_HELLO_FROM_WORKTREE"):
        _copy_worktree(clone)
    else:
        subprocess.run(["git", "clone", "--quiet", ROOT, clone], check=True)
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REDIS_URL", "DATABASE_URL", "VIRTUAL_ENV", "PYTHONPATH")
        and not k.startswith("SMSDISPATCH_")
    }
    env["SMSDISPATCH_API_PORT"] = str(port)
    started = time.monotonic()
    proc = subprocess.Popen(
        ["make", "run"],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    output: list[str] = []
    curl = None
    installed = started
    # A reader thread: select() on the pipe would miss lines already sitting in Python's buffer.
    lines: queue.Queue[str] = queue.Queue()
    stdout = proc.stdout

    def pump() -> None:
        for raw in iter(stdout.readline, b""):
            lines.put(raw.decode(errors="replace"))

    threading.Thread(target=pump, daemon=True).start()
    try:
        deadline = time.monotonic() + 600
        while curl is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            output.append(line)
            if "smsdispatch run" in line:  # make echoes the command: the install is done
                installed = time.monotonic()
            if line.startswith("curl -s -X POST"):
                curl = line.strip()
        assert curl, "make run printed no curl command:\n" + "".join(output[-50:])
        ready = time.monotonic()
        inbox = _printed(lines, output, "webhook inbox:")
        answer = subprocess.run(
            ["bash", "-c", curl], capture_output=True, text=True, check=True, timeout=30
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
        assert received["verified"], received
        assert received["payload"]["statusName"] == "delivered"
        _assert_no_secret_shown(clone, proc.pid)
        sent = seen.get("sent", delivered)
        print(
            f"\nfresh clone: make run ready in {ready - started:.1f} s "
            f"(venv install {installed - started:.1f} s, stack start {ready - installed:.1f} s); "
            f"curl → sent in {sent - ready:.2f} s, "
            f"→ delivered in {delivered - ready:.2f} s; delivered → webhook received "
            f"in {hooked - delivered:.2f} s"
        )
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    assert proc.returncode in (0, -signal.SIGINT, 2, 130)


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


def _printed(lines: queue.Queue[str], output: list[str], marker: str) -> str:
    """The URL on the line of make run's output that contains ``marker``."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        output.append(line)
        if marker in line:
            return line.split(marker, 1)[1].split()[0]
    raise AssertionError(f"make run printed no {marker!r}:\n" + "".join(output[-50:]))


def _copy_worktree(dest: str) -> None:
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for rel in filter(None, (f.decode() for f in files)):
        src = os.path.join(ROOT, rel)
        if os.path.isfile(src):
            os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
            shutil.copy2(src, os.path.join(dest, rel))
