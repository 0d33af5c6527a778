"""Carrier simulator: delivery reports and mobile-originated messages posted to a local receiver."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson
import pytest

from simulator.config import SimConfig
from simulator.server import SimulatorThread

pytestmark = pytest.mark.timeout(60)


class Receiver:
    """A small HTTP server recording JSON posts; ``fail_first`` answers the first N with 500."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any], str | None]] = []
        self.lock = threading.Lock()
        self.fail_first = 0
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = orjson.loads(self.rfile.read(length))
                with receiver.lock:
                    if receiver.fail_first > 0:
                        receiver.fail_first -= 1
                        status = 500
                    else:
                        status = receiver.status
                        receiver.posts.append((self.path, body, self.headers.get("Authorization")))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the default (5) drops SYNs of concurrent report posts

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def bodies(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [b for p, b, _ in self.posts if p == path]

    def clear(self) -> None:
        with self.lock:
            self.posts.clear()
            self.fail_first = 0
            self.status = 200

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def sim(receiver: Receiver) -> Iterator[SimulatorThread]:
    cfg = SimConfig(dlr_delay_ms=30, dlr_token="dlr-secret", seed=3, reject_prefixes=["+999"])
    with SimulatorThread(cfg) as s:
        yield s


@pytest.fixture()
def client(sim: SimulatorThread, receiver: Receiver) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, timeout=5.0) as c:
        c.post("/_sim/reset", json={"config": True})
        receiver.clear()
        c.post("/_sim/config", json={"dlr_url": receiver.url + "/dlr"})
        yield c


def submit(c: httpx.Client, ref: str, to: str = "+48600000001") -> str:
    r = c.post("/v1/sms", json={"to": to, "from": "A", "text": "hi", "ref": ref})
    assert r.status_code == 200
    return str(r.json()["id"])


def stats(c: httpx.Client) -> dict[str, Any]:
    return dict(c.get("/_sim/stats").json())


def test_dlr_posted_for_each_accepted_message(client: httpx.Client, receiver: Receiver) -> None:
    ids = {submit(client, f"d-{i}", to=f"+4860000{i:04d}"): f"d-{i}" for i in range(20)}
    batch = {"from": "A", "text": "x", "recipients": [{"to": "+48600", "ref": "d-batch"}]}
    ids[client.post("/v1/sms/batch", json=batch).json()["results"][0]["id"]] = "d-batch"
    client.post("/v1/sms", json={"to": "+99900", "from": "A", "text": "x", "ref": "bad"})
    wait_for(lambda: len(receiver.bodies("/dlr")) >= 21)
    time.sleep(0.1)
    reports = receiver.bodies("/dlr")
    assert len(reports) == 21
    for rep in reports:
        assert set(rep) == {"id", "ref", "to", "stat", "err", "done_at"}
        assert ids[rep["id"]] == rep["ref"]
        assert rep["stat"] in {"DELIVRD", "UNDELIV", "EXPIRED"}
        assert len(rep["err"]) == 3 and rep["err"].isdigit()
        assert rep["done_at"] == pytest.approx(time.time(), abs=10)
    with receiver.lock:
        assert {auth for _, _, auth in receiver.posts} == {"Bearer dlr-secret"}
    wait_for(lambda: stats(client)["dlr_sent"] == 21)
    assert stats(client)["dlr_failed"] == 0


def test_dlr_mix_and_error_codes(client: httpx.Client, receiver: Receiver) -> None:
    client.post("/_sim/config", json={"dlr_mix": {"UNDELIV": 1}})
    for i in range(5):
        submit(client, f"mix-{i}")
    wait_for(lambda: len(receiver.bodies("/dlr")) == 5)
    assert {(r["stat"], r["err"]) for r in receiver.bodies("/dlr")} == {("UNDELIV", "001")}


def test_dlr_duplicates(client: httpx.Client, receiver: Receiver) -> None:
    client.post("/_sim/config", json={"dlr_duplicate_rate": 1.0})
    for i in range(5):
        submit(client, f"dup-{i}")
    wait_for(lambda: len(receiver.bodies("/dlr")) == 10)
    refs = sorted(r["ref"] for r in receiver.bodies("/dlr"))
    assert refs == sorted([f"dup-{i}" for i in range(5)] * 2)
    wait_for(lambda: stats(client)["dlr_sent"] == 10)


def test_dlr_reorder(client: httpx.Client, receiver: Receiver) -> None:
    client.post(
        "/_sim/config",
        json={"dlr_reorder": True, "dlr_reorder_window": 10, "dlr_concurrency": 1},
    )
    refs = [f"ro-{i:02d}" for i in range(30)]
    rcpts = [{"to": "+48600", "ref": r} for r in refs]
    client.post("/v1/sms/batch", json={"from": "A", "text": "x", "recipients": rcpts})
    wait_for(lambda: len(receiver.bodies("/dlr")) == 30)
    got = [r["ref"] for r in receiver.bodies("/dlr")]
    assert sorted(got) == refs
    assert got != refs


def test_dlr_retries_then_success(client: httpx.Client, receiver: Receiver) -> None:
    receiver.fail_first = 2
    client.post("/_sim/config", json={"dlr_concurrency": 1})
    submit(client, "retry-1")
    wait_for(lambda: len(receiver.bodies("/dlr")) == 1)
    wait_for(lambda: stats(client)["dlr_sent"] == 1)
    s = stats(client)
    assert s["dlr_retried"] == 2 and s["dlr_failed"] == 0


def test_dlr_failures_counted_not_fatal(client: httpx.Client, receiver: Receiver) -> None:
    receiver.status = 500
    client.post("/_sim/config", json={"dlr_retries": 1})
    submit(client, "fail-1")
    wait_for(lambda: stats(client)["dlr_failed"] == 1)
    assert stats(client)["dlr_retried"] == 1
    # an unreachable receiver is also just counted
    client.post("/_sim/config", json={"dlr_url": "http://127.0.0.1:1/dlr", "dlr_retries": 0})
    submit(client, "fail-2")
    wait_for(lambda: stats(client)["dlr_failed"] == 2)
    assert client.get("/healthz").status_code == 200


def test_mo_multipart(client: httpx.Client, receiver: Receiver) -> None:
    text = "Hello, this is a long inbound message that arrives in three parts!"
    r = client.post("/_sim/mo", json={"from": "+48600111222", "to": "1234", "text": text})
    assert r.status_code == 409  # no mo_url yet
    client.post("/_sim/config", json={"mo_url": receiver.url + "/mo", "mo_token": "mo-secret"})
    r = client.post(
        "/_sim/mo", json={"from": "+48600111222", "to": "1234", "text": text, "parts": 3}
    )
    assert r.status_code == 200
    res = r.json()
    assert res["parts"] == 3 and res["sent"] == 3 and len(res["ids"]) == 3
    parts = receiver.bodies("/mo")
    assert len(parts) == 3
    assert [p["udh"]["seq"] for p in parts] == [1, 2, 3]
    assert {p["udh"]["ref"] for p in parts} == {res["ref"]}
    assert {p["udh"]["total"] for p in parts} == {3}
    assert "".join(p["text"] for p in parts) == text
    assert {(p["from"], p["to"]) for p in parts} == {("+48600111222", "1234")}
    assert [p["id"] for p in parts] == res["ids"]
    with receiver.lock:
        assert {a for p, _, a in receiver.posts if p == "/mo"} == {"Bearer mo-secret"}
    assert stats(client)["mo_sent"] == 3

    r = client.post("/_sim/mo", json={"from": "+48", "to": "1", "text": "ab", "parts": 5})
    assert r.status_code == 400
    r = client.post("/_sim/mo", json={"from": "+48", "to": "1", "text": "single"})
    assert r.status_code == 200 and r.json()["parts"] == 1
    assert receiver.bodies("/mo")[-1]["udh"] == {"ref": r.json()["ref"], "total": 1, "seq": 1}


def test_mo_shuffled(client: httpx.Client, receiver: Receiver) -> None:
    client.post("/_sim/config", json={"mo_url": receiver.url + "/mo"})
    text = "".join(chr(ord("a") + i) for i in range(20))
    seqs: list[list[int]] = []
    for _ in range(3):
        receiver.clear()
        r = client.post(
            "/_sim/mo",
            json={"from": "+48", "to": "1", "text": text, "parts": 10, "shuffle": True},
        )
        assert r.status_code == 200
        parts = receiver.bodies("/mo")
        assert "".join(p["text"] for p in sorted(parts, key=lambda p: p["udh"]["seq"])) == text
        seqs.append([p["udh"]["seq"] for p in parts])
    assert any(s != sorted(s) for s in seqs)
