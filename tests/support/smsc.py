"""The independent SMSC (``tests/smsc/smsc.js``, the npm ``smpp`` package's server) as a test
fixture: started on free loopback ports, scripted over its control port, killed and restarted
with its message store kept.

Installed by ``scripts/ensure-services.sh smsc`` (``make test`` and CI run it); a missing install
is an error that says so, never a skip.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from devstack.ports import free_port

SMSC_DIR = pathlib.Path(__file__).resolve().parents[1] / "smsc"
ACCOUNT = ("smsd", "secret12")


class SmscNotInstalled(RuntimeError):
    """node or the npm packages are missing: run ``scripts/ensure-services.sh smsc``."""


class Smsc:
    """One SMSC process and its state folder (survives :meth:`kill` / :meth:`start`)."""

    def __init__(
        self,
        state_dir: str,
        accounts: dict[str, str] | None = None,
        max_binds: int = 0,
        port: int | None = None,
        tls: tuple[str, str] | None = None,
    ) -> None:
        if shutil.which("node") is None or not (SMSC_DIR / "node_modules" / "smpp").is_dir():
            raise SmscNotInstalled("test SMSC not installed: run scripts/ensure-services.sh smsc")
        self.state_dir = state_dir
        self.accounts = accounts or {ACCOUNT[0]: ACCOUNT[1]}
        self.max_binds = max_binds
        self.tls = tls  # (key file, certificate file): the SMSC listens with TLS
        self.port = port or free_port()
        self.control_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._http: httpx.Client | None = None

    # -- process ---------------------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> None:
        """Start (or restart) on the same SMPP port; returns once it listens."""
        args = ["node", str(SMSC_DIR / "smsc.js"), "--port", str(self.port)]
        args += ["--control-port", str(self.control_port), "--state", self.state_dir]
        args += ["--max-binds", str(self.max_binds)]
        if self.tls is not None:
            args += ["--tls-key", self.tls[0], "--tls-cert", self.tls[1]]
        for system_id, password in self.accounts.items():
            args += ["--account", f"{system_id}:{password}"]
        log = open(os.path.join(self.state_dir, "smsc.log"), "ab")  # noqa: SIM115
        # stdin stays open while we live: the SMSC exits by itself when it closes.
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log
        )
        log.close()
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith(b"ready") or not line:
                break
        if not line.startswith(b"ready"):
            self.kill()
            raise RuntimeError(f"test SMSC did not start: {self.log_tail()}")
        self._http = httpx.Client(base_url=f"http://127.0.0.1:{self.control_port}", timeout=10)

    def kill(self) -> None:
        """SIGKILL: no unbind, no FIN handshake of its own making; state files are kept."""
        if self._http is not None:
            self._http.close()
            self._http = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        if self.proc is not None:
            for stream in (self.proc.stdin, self.proc.stdout):
                if stream is not None:
                    stream.close()
        self.proc = None

    def log_tail(self) -> str:
        """The last lines of the SMSC's stderr."""
        try:
            return pathlib.Path(self.state_dir, "smsc.log").read_text()[-2000:]
        except OSError:
            return ""

    # -- control ---------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        assert self._http is not None, "SMSC not running"
        resp = self._http.request(method, path, json=body)
        resp.raise_for_status()
        return resp.json()

    def state(self) -> dict[str, Any]:
        """Binds (open, peak, total per account), counters, unacknowledged deliveries."""
        return dict(self._call("GET", "/state"))

    def pdus(
        self, command: str | None = None, direction: str | None = None
    ) -> list[dict[str, Any]]:
        """Every PDU recorded since the state folder was made (across restarts)."""
        out = []
        with open(os.path.join(self.state_dir, "pdus.jsonl"), encoding="utf-8") as fh:
            for line in fh:
                entry = json.loads(line)
                if command is not None and entry.get("command") != command:
                    continue
                if direction is not None and entry.get("dir") != direction:
                    continue
                out.append(entry)
        return out

    def answer_submits(self, *answers: tuple[str, int], default: str | None = None) -> None:
        """Answer the next submit_sm with these statuses (``("ESME_RTHROTTLED", 3)``, or
        ``("silent", n)`` for no answer); then ``default`` (``ok``, ``silent`` or a status)."""
        body: dict[str, Any] = {"answers": [{"status": s, "count": n} for s, n in answers]}
        if default is not None:
            body["default"] = default
        self._call("POST", "/submit-answers", body)

    def auto_receipts(self, stat: str | None) -> None:
        """Send a receipt with ``stat`` right after every accepted submit_sm (None: stop)."""
        self._call("POST", "/auto-receipts", {"stat": stat})

    def query_supported(self, supported: bool) -> None:
        """Whether query_sm is answered (else ESME_RINVCMDID)."""
        self._call("POST", "/query", {"supported": supported})

    def receipt(self, message_id: str, stat: str = "DELIVRD", **extra: Any) -> dict[str, Any]:
        """Send a delivery receipt for an accepted message."""
        return dict(
            self._call("POST", "/receipt", {"message_id": message_id, "stat": stat, **extra})
        )

    def mo(self, source: str, destination: str, parts: list[str], **extra: Any) -> Any:
        """Send a mobile-originated message (several parts: ``concat`` udh8/udh16/sar/payload)."""
        body = {"source_addr": source, "destination_addr": destination, "parts": parts, **extra}
        return self._call("POST", "/mo", body)

    def drop_connections(self) -> None:
        """Close every SMPP connection at once (no unbind)."""
        self._call("POST", "/drop")

    def send_raw(self, data: bytes) -> None:
        """Write bytes as they are to every bound session."""
        self._call("POST", "/send-raw", {"hex": data.hex()})

    def unbind_all(self) -> None:
        """Send unbind on every bound session."""
        self._call("POST", "/unbind")


@contextmanager
def running_smsc(**kwargs: Any) -> Iterator[Smsc]:
    """A started SMSC in a fresh state folder; killed and removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="smsd-smsc-") as d:
        smsc = Smsc(d, **kwargs)
        smsc.start()
        try:
            yield smsc
        finally:
            smsc.kill()
