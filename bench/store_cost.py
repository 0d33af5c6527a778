"""PostgreSQL's cost per message of the send path's writes alone, without the pipeline around it.

    python -m bench.store_cost [--messages 20000] [--rounds 3] [--hot-ceiling FILLFACTOR]

On a fresh ``smsd_bench`` database: the API's write of A's campaign (``write_submissions``,
submissions of 10,000 recipients, chunks of 500), then per chunk what a bulk worker does on
success (``SendProgress.claim``, then ``SendProgress.record_sent``). For each step: CPU of the
PostgreSQL backend that ran it (``/proc`` through psutil; one connection per step, so no other
session's work is counted), WAL bytes of the benchmark database (``bench.stack.WalCounter``),
and the rows and index entries written (``pg_stat``
counters of ``messages``). Prints one JSON line: the median over ``rounds`` of each figure,
per message. Far less noisy than a scenario on a shared machine: one backend, no HTTP, no
Celery; docs/benchmarks.md ("The database's cost per message") has the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import psutil

from bench.messages import CAMPAIGN_TEXT, phone
from bench.stack import BENCH_DB, DATABASE_URL, WalCounter, base_env, db_query, reset_database

PER_SUBMISSION = 10_000
CHUNK = 500


def _messages_stats() -> dict[str, int]:
    """Heap and index tuples written to ``messages`` so far (the statistics collector's view)."""
    db_query("SELECT pg_stat_force_next_flush()")
    heap = db_query(
        "SELECT n_tup_ins, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
        "WHERE relname = 'messages'"
    )[0]
    return {"inserted": heap[0], "updated": heap[1], "hot_updated": heap[2]}


def _measured(engine: Any, step: Callable[[Any], None]) -> dict[str, float]:
    """Run ``step(engine)`` on a connection of its own; that backend's CPU and the WAL."""
    with engine.connect() as conn:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        conn.commit()
        backend = psutil.Process(int(pid))
        cpu0 = sum(backend.cpu_times()[:2])
        wal, t0 = WalCounter(), time.perf_counter()
        step(conn)
        wall = time.perf_counter() - t0
        cpu = sum(backend.cpu_times()[:2]) - cpu0
        # Publish this backend's table counters as soon as it goes idle (they are otherwise
        # flushed at most once a second).
        conn.exec_driver_sql("SELECT pg_stat_force_next_flush()")
        conn.commit()
    time.sleep(0.5)
    written = wal.stop()
    return {
        "pg_cpu_s": cpu,
        "wal_bytes": float(
            written["bench"] if written["bench"] is not None else written["server"] or 0
        ),
        "wal_fpi_bytes": float(written["bench_fpi"] or 0),
        "wall_s": wall,
    }


# --hot-ceiling: the indexes of ``messages`` that name a column the claim or the record changes
# (in their key or their predicate); while any exists, both updates are non-HOT.
_HOT_BLOCKERS = (
    "ix_messages_carrier_id",
    "ix_messages_sent_valid",
    "ix_messages_held_due",
    "ix_messages_sending",
    "ix_messages_refundable",
    "ix_messages_batch",
)


def _without_hot_blockers(fillfactor: int) -> None:
    """What-if, not a schema to ship: drop :data:`_HOT_BLOCKERS` (the batch index comes back
    without its predicate), leave ``fillfactor`` % of each page to inserts, and keep the
    planner off sequential scans (the record finds its rows through the sending index, gone
    here). What the send path would cost if its status changes could be HOT updates."""
    db_query("DROP INDEX " + ", ".join(_HOT_BLOCKERS))
    db_query("CREATE INDEX ix_messages_batch ON messages (batch_id)")
    db_query(f"ALTER TABLE messages SET (fillfactor = {int(fillfactor)})")
    db_query(f'ALTER DATABASE "{BENCH_DB}" SET enable_seqscan = off')


def one_round(n: int, hot_ceiling: int | None = None) -> dict[str, dict[str, float]]:
    """One fresh database, ``n`` messages through insert, claim and record; totals per step.
    ``hot_ceiling``: :func:`_without_hot_blockers` with this fillfactor first."""
    from dispatcher.contract import Lane, Status
    from dispatcher.ids import new_message_id
    from dispatcher.store.db import make_engine
    from dispatcher.store.messages import write_submissions
    from dispatcher.store.progress import Sent, claim, record_sent
    from dispatcher.store.records import NewMessage, NewSubmission

    reset_database(base_env())
    if hot_ceiling is not None:
        _without_hot_blockers(hot_ceiling)
    api = make_engine(DATABASE_URL, pool_size=1)
    worker = make_engine(DATABASE_URL, pool_size=1, plan_each_run=True)
    now = time.time()
    subs: list[NewSubmission] = []
    for start in range(0, n, PER_SUBMISSION):
        sub = NewSubmission(new_message_id(), 1, "h", Lane.BULK, "api", now)
        sub.messages = [
            NewMessage(
                id=new_message_id(),
                account_id=1,
                submission_id=sub.id,
                external_id="",
                phone=phone(i),
                sender="BENCH",
                body=CAMPAIGN_TEXT,
                parts=1,
                encoding="GSM7",
                flash=False,
                lane=Lane.BULK,
                status=Status.QUEUED,
                created_at=now,
                valid_until=now + 86_400,
            )
            for i in range(start, min(n, start + PER_SUBMISSION))
        ]
        subs.append(sub)
    chunks: list[list[str]] = []

    def insert(conn: Any) -> None:
        for sub in subs:
            _stored, batches = write_submissions(conn, [sub], {Lane.BULK: CHUNK})
            conn.commit()
            chunks.extend([p["id"] for p in b.payloads] for b in batches)

    def claim_all(conn: Any) -> None:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        for ids in chunks:
            claim(conn, ids, "sim", time.time())

    def record_all(conn: Any) -> None:
        for ids in chunks:
            record_sent(conn, [Sent(i, "c" + i, 200, 1.0) for i in ids], time.time())
            conn.commit()

    out: dict[str, dict[str, float]] = {}
    for name, step, engine in (
        ("insert", insert, api),
        ("claim", claim_all, worker),
        ("record_sent", record_all, worker),
    ):
        before = _messages_stats()
        out[name] = _measured(engine, step)
        after = _messages_stats()
        out[name].update({k: float(after[k] - before[k]) for k in after})
    sent = db_query("SELECT count(*) FROM messages WHERE status = 'sent'")[0][0]
    if sent != n:
        raise RuntimeError(f"{sent} of {n} messages recorded sent")
    api.dispose()
    worker.dispose()
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the rounds; print the per-message medians as one JSON line."""
    p = argparse.ArgumentParser(prog="python -m bench.store_cost", description=__doc__)
    p.add_argument("--messages", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--hot-ceiling",
        type=int,
        metavar="FILLFACTOR",
        help="what-if: without the indexes that make the status changes non-HOT",
    )
    args = p.parse_args(argv)
    rounds = [one_round(args.messages, args.hot_ceiling) for _ in range(args.rounds)]
    out: dict[str, Any] = {"messages": args.messages, "rounds": args.rounds}
    if args.hot_ceiling is not None:
        out["hot_ceiling_fillfactor"] = args.hot_ceiling
    for step in rounds[0]:
        out[step] = {  # seconds become µs per message, counts per message
            key.replace("_s", "_us"): round(
                statistics.median(r[step][key] for r in rounds) / args.messages * 1e6, 1
            )
            if key.endswith("_s")
            else round(statistics.median(r[step][key] for r in rounds) / args.messages, 2)
            for key in rounds[0][step]
        }
    out["pg_cpu_us_per_msg"] = round(sum(out[s]["pg_cpu_us"] for s in rounds[0]), 1)
    out["wal_bytes_per_msg"] = round(sum(out[s]["wal_bytes"] for s in rounds[0]), 1)
    out["wal_fpi_bytes_per_msg"] = round(sum(out[s]["wal_fpi_bytes"] for s in rounds[0]), 1)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
