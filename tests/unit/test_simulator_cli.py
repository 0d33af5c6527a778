"""Carrier simulator: the command line (``python -m simulator``) as a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from simulator.cli import build_parser, config_from_args

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]


def start(*args: str) -> tuple[subprocess.Popen[str], dict[str, object]]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulator", "--host", "127.0.0.1", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"simulator did not start: {err}")
    return proc, json.loads(line)


@pytest.fixture()
def proc_and_event() -> Iterator[tuple[subprocess.Popen[str], dict[str, object]]]:
    proc, event = start("--token", "tok", "--reject-prefix", "+999", "--tps-cap", "1000")
    yield proc, event
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def test_cli_listens_serves_and_stops_on_sigterm(
    proc_and_event: tuple[subprocess.Popen[str], dict[str, object]],
) -> None:
    proc, event = proc_and_event
    assert event["event"] == "simulator.listening"
    port = event["port"]
    assert isinstance(port, int) and port > 0
    base = f"http://127.0.0.1:{port}"
    assert httpx.get(base + "/healthz").status_code == 200
    body = {"to": "+48111", "from": "A", "text": "never logged", "ref": "cli-1"}
    assert httpx.post(base + "/v1/sms", json=body).status_code == 401
    r = httpx.post(base + "/v1/sms", json=body, headers={"Authorization": "Bearer tok"})
    assert r.status_code == 200
    cfg = httpx.get(base + "/_sim/config").json()
    assert cfg["reject_prefixes"] == ["+999"] and cfg["tps_cap"] == 1000.0
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "never logged" not in out + err
    assert json.loads(out.strip().splitlines()[-1])["event"] == "simulator.stopped"


def test_cli_sigint(proc_and_event: tuple[subprocess.Popen[str], dict[str, object]]) -> None:
    proc, _ = proc_and_event
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=10)
    assert proc.returncode == 0


def test_config_from_args() -> None:
    args = build_parser().parse_args(
        [
            "--latency-ms", "5", "--error-rate", "0.1", "--reject-prefix", "+999",
            "--reject-prefix", "+998", "--dlr-url", "http://127.0.0.1:1/d",
            "--dlr-mix", "DELIVRD=9,REJECTD=1", "--keep-text", "--seed", "9",
        ]
    )  # fmt: skip
    cfg = config_from_args(args)
    assert cfg.latency_ms == 5.0 and cfg.error_rate == 0.1
    assert cfg.reject_prefixes == ["+999", "+998"]
    assert cfg.dlr_mix == {"DELIVRD": 9.0, "REJECTD": 1.0}
    assert cfg.keep_text and cfg.seed == 9 and cfg.dlr_url == "http://127.0.0.1:1/d"


def test_cli_rejects_bad_config() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "simulator", "--error-rate", "3"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert r.returncode == 2 and "error_rate" in r.stderr


def test_cli_workers_share_port_and_merge_control() -> None:
    proc, event = start("--workers", "2", "--reject-prefix", "+999")
    try:
        assert event["workers"] == 2
        base = f"http://127.0.0.1:{event['port']}"
        ids: set[str] = set()
        # separate connections so the kernel spreads them over both workers
        for i in range(16):
            body = {"to": "+48111", "from": "A", "text": "x", "ref": f"w-{i % 8}"}
            with httpx.Client(base_url=base) as c:
                r = c.post("/v1/sms", json=body)
                assert r.status_code == 200
                ids.add(r.json()["id"])
        assert len(ids) == 16  # carrier ids are unique across workers
        s = httpx.get(base + "/_sim/stats").json()
        assert s["workers"] == 2 and s["submits"] == 16
        assert s["unique_refs"] == 8 and s["duplicate_refs"] == 8
        assert s["duplicate_submits"] == 8
        lines = httpx.get(base + "/_sim/submits").text.splitlines()
        ats = [json.loads(x)["at"] for x in lines]
        assert len(ats) == 16 and ats == sorted(ats)
        r = httpx.get(base + "/v1/sms", params={"ref": "w-3"})
        assert r.status_code == 200 and r.json()["submits"] == 2
        found = httpx.post(base + "/v1/sms/lookup", json={"refs": ["w-0", "w-7", "x"]}).json()
        assert set(found["found"]) == {"w-0", "w-7"}
        # config and reset reach every worker
        r = httpx.post(base + "/_sim/config", json={"error_rate": 1.0})
        assert r.status_code == 200
        assert httpx.post(base + "/_sim/config", json={"error_rate": 5}).status_code == 400
        for _ in range(6):
            with httpx.Client(base_url=base) as c:
                body = {"to": "+48111", "from": "A", "text": "x", "ref": "e"}
                assert c.post("/v1/sms", json=body).status_code == 500
        assert httpx.post(base + "/_sim/reset").status_code == 200
        assert httpx.get(base + "/_sim/stats").json()["submits"] == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
    assert proc.returncode == 0
