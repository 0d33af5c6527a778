"""Where the CPU goes during a scenario: py-spy on our processes, sampling of PostgreSQL.

* :class:`PySpy` runs ``py-spy record --format raw --gil --subprocesses --nonblocking`` on a
  process (a prefork pool or uvicorn with its children) until stopped. ``--gil`` keeps only the
  samples of threads holding the GIL, i.e. Python actually running (threads waiting for the
  database, Redis or the network are not counted). :func:`summarize` turns the collapsed stacks
  into shares per library (by the leaf-most known frame: where the CPU is), the top leaf
  functions, and the top project functions inclusive.
* :class:`PgSampler` polls ``pg_stat_activity`` of the benchmark database every 100 ms and
  counts which statements the backends were running (a sampling profile of the server side).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from bench.stack import DATABASE_URL, PY

CATEGORIES: list[tuple[str, str]] = [
    (r"(^|/)(psycopg|psycopg_binary|psycopg_pool)/", "psycopg (PostgreSQL driver)"),
    (r"(^|/)sqlalchemy/", "SQLAlchemy"),
    (r"(^|/)(aiohttp|yarl|multidict)/", "aiohttp (carrier HTTP client)"),
    (r"(^|/)(httpx|httpcore|h11)/", "httpx/httpcore"),
    (r"(^|/)(kombu|celery|billiard|vine|amqp)/", "Celery/kombu"),
    (r"(^|/)redis/", "redis-py"),
    (r"(^|/)phonenumbers/|dispatcher/sms/", "validation (phonenumbers, GSM-7)"),
    (r"(^|/)(pydantic|pydantic_core)/", "pydantic"),
    (r"(^|/)(fastapi|starlette)/", "FastAPI/Starlette"),
    (r"(^|/)(uvicorn|httptools)/", "uvicorn/httptools"),
    (r"(^|/)(structlog|logging)/", "logging"),
    (r"(^|/)(json|orjson)/", "JSON"),
    (r"(^|/)(dispatcher|workers|simulator|bench)/", "smsdispatch code"),
    (r"(^|/)(asyncio|uvloop|concurrent)/|(^|/)(threading|selectors|queue)\.py", "asyncio/threads"),
]
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(:\d+)?\)$")


def pyspy_path() -> str | None:
    """py-spy next to the interpreter, else on PATH."""
    local = Path(PY).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


class PySpy:
    """``py-spy record`` on one process tree until :meth:`stop`."""

    def __init__(self, pid: int, out: Path, rate: int = 67) -> None:
        self.out = out
        self.proc: subprocess.Popen[bytes] | None = None
        exe = pyspy_path()
        if exe is None:
            return
        out.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(pid),
                "--format",
                "raw",
                "--output",
                str(out),
                "--rate",
                str(rate),
                "--gil",
                "--subprocesses",
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def stop(self) -> dict[str, Any] | None:
        """Stop sampling and summarize (``None`` when py-spy is missing or failed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if not self.out.exists():
            return None
        return summarize(self.out.read_text(encoding="utf-8", errors="replace"))


def _short(path: str) -> str:
    for marker in ("site-packages/", "/work/main/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def _category(file: str) -> str | None:
    for pattern, name in CATEGORIES:
        if re.search(pattern, file):
            return name
    return None


def summarize(raw: str, top: int = 12) -> dict[str, Any]:
    """Collapsed stacks → shares per library (leaf-most known frame), top functions."""
    total = 0
    by_cat: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        n = int(count_s)
        total += n
        frames = []
        for f in stack.split(";"):
            m = _FRAME.match(f)
            if m and m.group("file").endswith(".py"):
                frames.append((m.group("func"), m.group("file")))
        if not frames:
            by_cat["(native / no Python frame)"] += n
            continue
        func, file = frames[-1]
        leaf[f"{func} ({_short(file)})"] += n
        cat = next((c for _, fl in reversed(frames) if (c := _category(fl))), "other")
        by_cat[cat] += n
        seen = set()
        for func, file in frames:
            short = _short(file)
            if short.startswith(("dispatcher/", "workers/", "simulator/")):
                key = f"{func} ({short})"
                if key not in seen:
                    seen.add(key)
                    inclusive[key] += n

    def pct(c: Counter[str]) -> list[list[Any]]:
        return [[k, round(100 * v / max(1, total), 1)] for k, v in c.most_common(top)]

    return {
        "samples": total,
        "by_library_pct": pct(by_cat),
        "top_leaf_pct": pct(leaf),
        "top_project_inclusive_pct": pct(inclusive),
    }


class PgSampler:
    """Samples ``pg_stat_activity`` of the benchmark database in a thread."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.samples = 0
        self.active: Counter[str] = Counter()
        self.waits: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psycopg

        try:
            conn = psycopg.connect(DATABASE_URL, autocommit=True)
        except psycopg.Error:
            return
        with conn:
            while not self._stop.is_set():
                rows = conn.execute(
                    "SELECT query, coalesce(wait_event_type || ':' || wait_event, 'CPU') "
                    "FROM pg_stat_activity WHERE datname = current_database() "
                    "AND state = 'active' AND pid <> pg_backend_pid()"
                ).fetchall()
                self.samples += 1
                for query, wait in rows:
                    q = re.sub(r"\s+", " ", str(query)).strip()
                    q = re.sub(r"\(\$\d+(::\w+)?(, \$\d+(::\w+)?)*\)", "(...)", q)
                    self.active[q[:90]] += 1
                    self.waits[str(wait)] += 1
                self._stop.wait(self.interval)

    def start(self) -> PgSampler:
        """Start sampling."""
        self._thread.start()
        return self

    def stop(self, top: int = 8) -> dict[str, Any]:
        """Mean active backends, the statements they ran and what they waited for."""
        self._stop.set()
        self._thread.join(5)
        n = max(1, self.samples)
        total = sum(self.active.values())
        return {
            "samples": self.samples,
            "mean_active_backends": round(total / n, 2),
            "statements_pct": [
                [q, round(100 * c / max(1, total), 1)] for q, c in self.active.most_common(top)
            ],
            "wait_events_pct": [
                [w, round(100 * c / max(1, total), 1)] for w, c in self.waits.most_common(5)
            ],
        }


class Profiler:
    """py-spy on named processes of a stack plus the PostgreSQL sampler; no-op when disabled."""

    def __init__(self, enabled: bool, outdir: Path, scenario: str) -> None:
        self.enabled = enabled
        self.outdir = outdir
        self.scenario = scenario
        self.spies: dict[str, PySpy] = {}
        self.pg: PgSampler | None = None

    def start(self, pids: dict[str, int]) -> None:
        """Start sampling ``{label: pid}`` and PostgreSQL."""
        if not self.enabled:
            return
        if pyspy_path() is None:
            print("py-spy not found: no profiles", file=sys.stderr)
        for label, pid in pids.items():
            self.spies[label] = PySpy(pid, self.outdir / f"{self.scenario}-{label}.txt")
        self.pg = PgSampler().start()

    def stop(self) -> dict[str, Any]:
        """Stop everything; summaries by label (``postgres`` for the server side)."""
        out: dict[str, Any] = {}
        for label, spy in self.spies.items():
            with contextlib.suppress(Exception):
                summary = spy.stop()
                if summary:
                    out[label] = summary
        if self.pg is not None:
            out["postgres"] = self.pg.stop()
        self.spies.clear()
        self.pg = None
        return out
