"""A new user's first minutes: fresh clone, `make run`, the printed curl, the message sent."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time

import httpx
import pytest

from tests.support.services import backend, free_port
from tests.support.stack import ROOT, wait_until

pytestmark = pytest.mark.integration


@pytest.mark.timeout(900)  # a fresh virtualenv is installed, as a new user would
@pytest.mark.skipif(backend() == "postgres", reason="make run uses its own SQLite and Redis")
def test_make_run_from_a_fresh_clone(tmp_path: pytest.TempPathFactory) -> None:
    clone = os.path.join(str(tmp_path), "smsdispatch")
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
            if line.startswith("curl -s -X POST"):
                curl = line.strip()
        assert curl, "make run printed no curl command:\n" + "".join(output[-50:])
        ready = time.monotonic()
        answer = subprocess.run(
            ["bash", "-c", curl], capture_output=True, text=True, check=True, timeout=30
        )
        message = json.loads(answer.stdout)["data"][0]
        with open(os.path.join(clone, "var", "demo-account.json")) as fh:
            keys = json.load(fh)
        assert set(keys) == {"Application-Key", "Authorization"}

        def status() -> str | None:
            r = httpx.get(f"http://127.0.0.1:{port}/v2.1/sms/{message['id']}", headers=keys)
            s = r.json()["data"][0]["statusName"]
            return s if s == "sent" else None

        wait_until(status, 30, interval=0.1, what="hello-world message sent")
        sent = time.monotonic()
        print(
            f"\nfresh clone: make run ready in {ready - started:.1f} s "
            f"(venv install included); curl → sent in {sent - ready:.2f} s"
        )
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    assert proc.returncode in (0, -signal.SIGINT, 2, 130)
