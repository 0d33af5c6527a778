"""Runs log themselves under ``bench/results/`` and ``chaos/results/``; the docs stay summaries.

``make bench`` and ``make chaos`` used to append a section to ``docs/benchmarks.md`` and
``docs/reliability.md`` on every run, which turned both into run logs a reader could not take in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import report
from bench.common import Ctx

ROOT = Path(__file__).resolve().parents[2]
DOC_LIMIT = 40_000  # characters: a page a person reads, not a log


def test_a_bench_run_writes_its_own_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = tmp_path / "bench" / "results" / "runs"
    monkeypatch.setattr(report, "RUNS", runs)
    chart = tmp_path / "bench" / "results" / "charts" / "20300101T000000Z-A.png"
    monkeypatch.setattr(report, "ROOT", tmp_path)
    ctx = Ctx(
        quick=False,
        run_id="20300101T000000Z",
        logdir=tmp_path,
        chartdir=chart.parent,
        profdir=tmp_path,
        profile=False,
    )
    mach = {
        "nproc": 2,
        "cpu_model": "test",
        "ram_gb": 1.0,
        "kernel": "k",
        "python": "3",
        "postgres": "15",
        "redis": "7",
        "commit": "0123456789abcdef",
        "dirty_tree": False,
        "loadavg_at_start": [0.5, 0.5, 0.5],
    }
    results: dict[str, Any] = {
        "A": {"msgs_per_s": 12_000.0, "baseline_msgs_per_s": 600.0, "ratio": 20.0}
    }
    results["A"]["chart"] = str(chart)
    results["A"]["pgbouncer"] = {"msgs_per_s": 9_000.0, "duration_s": 2.2, "wall_s": 30.0}
    results["A"]["pgbouncer"]["chart"] = str(chart.with_name("20300101T000000Z-A-pgbouncer.png"))
    log = report.write(tmp_path / "latest.json", results, {}, mach, ctx, total_s=1.0)

    assert log == runs / "20300101T000000Z.md"
    text = log.read_text()
    assert text.startswith("# ") and "`20300101T000000Z`" in text.splitlines()[0]
    assert "| A | msgs_per_s (msg/s) | 12,000 | ≥ 10,000 (20,000) | 600.0 | 20.0× | yes |" in text
    assert "![A](../charts/20300101T000000Z-A.png)" in text  # relative to the log itself
    # --pgbouncer: the same scenario behind PgBouncer, beside the direct figure.
    row = "| A behind PgBouncer | msgs_per_s (msg/s) | 9,000 | ≥ 10,000 (20,000) | | | no |"
    assert row in text
    assert "- behind PgBouncer (30.0 s): msgs_per_s 9,000, duration_s 2.2" in text
    assert "--pgbouncer" in text.splitlines()[2]
    assert "![A behind PgBouncer](../charts/20300101T000000Z-A-pgbouncer.png)" in text
    assert (tmp_path / "latest.json").exists()
    assert report.write(tmp_path / "latest.json", results, {}, mach, ctx, 1.0, docs=False) is None


def test_a_long_chaos_run_writes_its_own_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chaos import run as chaos_run

    monkeypatch.setattr(chaos_run, "ROOT", str(tmp_path))
    doc: dict[str, Any] = {
        "started_at": "2030-01-01T00:00:00Z",
        "seed": 7,
        "ok": True,
        "figures": {
            "accepted": 10,
            "statuses": {"delivered": 10},
            "duplicate_submits": 0,
            "carrier_submits": 10,
            "carrier_unique_refs": 10,
            "webhook_deliveries": 10,
            "webhook_receipts": 10,
            "webhook_duplicates": 0,
            "pending_retry": 0,
        },
        "carrier": {"errors_injected": 1, "timeouts_injected": 1, "throttled": 1},
        "accepted_by_lane": {"priority": 4, "bulk": 6},
        "examples": {},
        "violations": {},
        "api_answers": {"200": 3},
        "kills": {"bulk.child": 1},
        "recovery_s": {},
        "drain_s": 1.0,
        "events": [{"t": 1.0, "event": "kill.child", "lane": "bulk"}],
    }
    chaos_run.write_outputs(doc, long_form=True)
    log = tmp_path / "chaos" / "results" / "runs" / "20300101T000000Z-seed7.md"
    text = log.read_text()
    assert text.startswith("# Long run, 2030-01-01T00:00:00Z (seed 7)\n")
    assert "Result: **pass**" in text and "1.0:child:bulk" in text
    assert (tmp_path / "var" / "chaos" / "latest.json").exists()


@pytest.mark.parametrize("path", sorted((ROOT / "docs").glob("*.md")), ids=lambda p: p.name)
def test_docs_are_summaries_not_logs(path: Path) -> None:
    size = len(path.read_text(encoding="utf-8"))
    assert size <= DOC_LIMIT, f"{path.name}: {size} characters; move run logs under */results/"
