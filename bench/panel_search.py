"""How fast the panel's searches and dashboard are on a log of 1,000,000 messages (PostgreSQL).

Creates a scratch database, migrates it, generates the rows in SQL (one account with
``--rows`` messages over 30 days, 50,000 distinct recipients, five senders, 10 % priority, a
realistic mix of statuses, 500-recipient bulk submissions; a second account with 5 % as many),
``ANALYZE``s, then times each panel query (the functions the panel calls, through SQLAlchemy:
the message search, a campaign's page and progress curve, the audit log, recent webhook
deliveries) ``--repeat`` times, and the dashboard's queries (24 hours and 7 days, as the panel
asks for them) twice: first **live** (every hour read from ``messages``, as without the
scheduler's rollup), then after building the rollup as the scheduler does
(``dispatcher/store/rollups.py``, timed), **rolled** (closed hours from the rollup). The two
modes' answers are compared (they must be equal). Prints the median, p99 (nearest rank: with
20 runs, the worst) and worst of each, with the plan of each query.

    python bench/panel_search.py [--rows 1000000] [--repeat 20] [--keep NAME]
        [--pg postgresql://postgres@127.0.0.1:5432/postgres]

The scratch database is named by ``SMSD_BENCH_DB`` when set (dropped at the end unless it is
``--keep``). Results are written to ``bench/results/panel_search.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import psycopg
from sqlalchemy import Connection, text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from dispatcher.store import audit, rollups  # noqa: E402
from dispatcher.store.dashboard import (  # noqa: E402
    campaign_curve,
    delivery_times,
    failure_reasons,
    per_connection,
    period_range,
    volume,
)
from dispatcher.store.db import make_engine  # noqa: E402
from dispatcher.store.migrate import upgrade  # noqa: E402
from dispatcher.store.panel_queries import (  # noqa: E402
    Cursor,
    SearchFilter,
    campaign,
    list_campaigns,
    message_detail,
    recent_deliveries,
    search_outgoing,
)

NOW = 1_795_000_000.0
SPAN_S = 30 * 86400.0
GENERATE = """
INSERT INTO messages (id, account_id, submission_id, external_id, phone, sender, body, parts,
    encoding, flash, lane, status, created_at, status_at, valid_until, queued_at, sent_at,
    final_at, attempts, connection, carrier_message_id, http_status, latency_ms, report_stat)
SELECT md5(:acct || '-' || i)::uuid::text,
       :acct,
       md5(:acct || '-s-' || (i / 500))::uuid::text,
       md5(:acct || '-e-' || i),
       '+48' || (500000000 + (i::bigint * 7919) % 50000)::text,
       (ARRAY['ACME', 'ACMESHOP', 'Bank', 'Delivery', '12345'])[1 + i % 5],
       'Hello, this is message ' || i,
       1, 'gsm7', false,
       CASE WHEN i % 10 = 0 THEN 'priority' ELSE 'bulk' END,
       CASE WHEN i > :rows - 1000 THEN 'queued'
            WHEN i % 1000 < 5 THEN 'failed'
            WHEN i % 1000 < 10 THEN 'rejected'
            WHEN i % 1000 < 30 THEN 'undelivered'
            WHEN i % 1000 < 40 THEN 'expired'
            WHEN i % 1000 < 60 THEN 'sent'
            ELSE 'delivered' END,
       :now - :span + i * (:span / :rows),
       :now - :span + i * (:span / :rows) + 1,
       :now - :span + i * (:span / :rows) + 259200,
       :now - :span + i * (:span / :rows),
       :now - :span + i * (:span / :rows) + 0.2,
       :now - :span + i * (:span / :rows) + 3,
       1, 'default', 'sim-' || i, 200, 30.0, 'DELIVRD'
FROM generate_series(1, :rows) AS i
"""
SUBMISSIONS = """
INSERT INTO submissions (id, account_id, body_hash, lane, recipients, source, created_at, campaign)
SELECT md5(:acct || '-s-' || g)::uuid::text, :acct, 'x', 'bulk', 500, 'api',
       :now - :span + g * 500 * (:span / :rows),
       CASE WHEN g % 20 = 0 THEN 'campaign-' || (g / 20) END
FROM generate_series(0, :rows / 500) AS g
"""


ACCOUNTS = """
INSERT INTO accounts (id, name, priority_enabled, created_at)
VALUES (1, 'bench-1', true, :now - :span), (2, 'bench-2', true, :now - :span)
ON CONFLICT (id) DO NOTHING
"""


def build(url: str, rows: int) -> None:
    """Migrate and fill the scratch database."""
    upgrade(url)
    engine = make_engine(url, pool_size=1)
    with engine.begin() as conn:
        # The accounts themselves: the operator's per-connection view and the scheduler's
        # rollup go account by account (before issue 23's rollups the bench had none, so the
        # per-connection figure timed an empty account list).
        conn.execute(text(ACCOUNTS), {"now": NOW, "span": SPAN_S})
        for acct, n in ((1, rows), (2, max(1000, rows // 20))):
            params = {"acct": acct, "rows": n, "now": NOW, "span": SPAN_S}
            t = time.perf_counter()
            conn.execute(text(GENERATE), params)
            conn.execute(text(SUBMISSIONS), params)
            print(f"account {acct}: {n} messages in {time.perf_counter() - t:.1f} s", flush=True)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))
    engine.dispose()


def cases(conn: Connection) -> dict[str, Callable[[], Any]]:
    """Each panel query, as the panel calls it (page size 50)."""
    a = 1
    day = NOW - 10 * 86400

    def out(flt: SearchFilter, after: Cursor | None = None) -> Callable[[], Any]:
        return lambda: search_outgoing(conn, a, flt, after, 50)

    page20 = None
    for _ in range(20):
        _, page20 = search_outgoing(conn, a, SearchFilter(), page20, 50)
    some_id = conn.execute(text("SELECT id FROM messages WHERE account_id = 1 LIMIT 1")).scalar()
    some_ext = conn.execute(
        text("SELECT external_id FROM messages WHERE account_id = 1 LIMIT 1")
    ).scalar()
    found = campaign(conn, a, "c", "campaign-10")
    assert found is not None
    curve_ids = found.submission_ids
    return {
        "first page, no filter": out(SearchFilter()),
        "page 21 (keyset)": out(SearchFilter(), page20),
        "phone (+48500012345)": out(SearchFilter(phones=("+48500012345",))),
        "externalId": out(SearchFilter(external_id=some_ext)),
        "message id": out(SearchFilter(message_id=some_id)),
        "status=delivered": out(SearchFilter(statuses=("delivered",))),
        "status=failed (0.5 %)": out(SearchFilter(statuses=("failed",))),
        "status=scheduled (none)": out(SearchFilter(statuses=("scheduled",))),
        "sender=Bank": out(SearchFilter(sender="Bank")),
        "sender=Nobody (none)": out(SearchFilter(sender="Nobody")),
        "lane=priority": out(SearchFilter(lane="priority")),
        "one day": out(SearchFilter(date_from=day, date_to=day + 86400)),
        "one day + status=failed": out(
            SearchFilter(statuses=("failed",), date_from=day, date_to=day + 86400)
        ),
        "priority + failed": out(SearchFilter(lane="priority", statuses=("failed",))),
        "phone + status=delivered": out(
            SearchFilter(phones=("+48500012345",), statuses=("delivered",))
        ),
        "message detail": lambda: message_detail(conn, a, str(some_id)),
        "campaigns list": lambda: list_campaigns(conn, a, 0, 25),
        "campaign detail (named)": lambda: campaign(conn, a, "c", "campaign-10"),
        # The curve alone (the campaign's lookup is the line above; before issue 23's
        # rollups this line timed both).
        "campaign progress curve (500)": lambda: campaign_curve(conn, a, curve_ids),
        "audit log page": lambda: audit.entries(conn, a, None, 51),
        "recent webhook deliveries": lambda: recent_deliveries(conn, a),
    }


def dashboard_cases(conn: Connection, use_rollup: bool) -> dict[str, Callable[[], Any]]:
    """The dashboard's queries as the panel asks for them at ``NOW``: the last 24 hours by
    hour and the last 7 days by day (UTC boundaries), and the operator's last hour."""
    a = 1
    out: dict[str, Callable[[], Any]] = {}
    for label, bucket_s, n in (("24 h", 3600, 24), ("7 d", 86400, 7)):
        start, until = period_range(NOW, bucket_s, n)
        rolled = {"use_rollup": use_rollup}
        out[f"dashboard {label}: volume"] = partial(volume, conn, a, start, n, bucket_s, **rolled)
        out[f"dashboard {label}: delivery times"] = partial(
            delivery_times, conn, a, start, until, **rolled
        )
        out[f"dashboard {label}: failure reasons"] = partial(
            failure_reasons, conn, a, start, until, **rolled
        )
    out["dashboard: per connection 1 h"] = lambda: per_connection(conn, NOW - 3600, NOW)
    return out


def p99(times: list[float]) -> float:
    """Nearest-rank 99th percentile."""
    ordered = sorted(times)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def timed(named: dict[str, Callable[[], Any]], repeat: int, tag: str = "") -> dict[str, Any]:
    """Median, p99 and worst milliseconds per case (after one warm-up run each)."""
    out: dict[str, Any] = {}
    for name, run in named.items():
        run()  # warm: plan cache, buffers
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            run()
            times.append((time.perf_counter() - t) * 1000)
        out[name] = {
            "median_ms": statistics.median(times),
            "p99_ms": p99(times),
            "max_ms": max(times),
        }
        print(f"{tag}{name:38s} median {out[name]['median_ms']:8.2f} ms   p99 "
              f"{out[name]['p99_ms']:8.2f} ms   max {out[name]['max_ms']:8.2f} ms",
              flush=True)  # fmt: skip
    return out


def measure(url: str, repeat: int) -> dict[str, Any]:
    """Every case: the searches, then the dashboard live, then the rollup's build, then the
    dashboard rolled (answers checked equal to the live ones)."""
    engine = make_engine(url, pool_size=1)
    out: dict[str, Any] = {}
    with engine.begin() as conn:  # a kept database: the rollup is built again, and timed
        for table in ("dashboard_rollup", "dashboard_counts", "dashboard_delivery"):
            conn.execute(text(f"DELETE FROM {table}"))
        conn.execute(text("DELETE FROM dashboard_pending"))
    with engine.connect() as conn:
        out["queries"] = timed(cases(conn), repeat)
        live = dashboard_cases(conn, use_rollup=False)
        out["dashboard_live"] = timed(live, repeat, "live    ")
        conn.rollback()
    t = time.perf_counter()
    built = rollups.run(engine, NOW, budget_s=3600.0)
    took = time.perf_counter() - t
    out["rollup_build"] = {"hours": built.hours, "seconds": took}
    print(f"rollup: {built.hours} hours rolled in {took:.1f} s "
          f"({took / max(built.hours, 1) * 1000:.1f} ms per hour)", flush=True)  # fmt: skip
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # As autovacuum would after the backfill (messages were ANALYZEd after the build).
        conn.execute(text("ANALYZE dashboard_counts, dashboard_delivery, dashboard_pending"))
    with engine.connect() as conn:
        rolled = dashboard_cases(conn, use_rollup=True)
        again = dashboard_cases(conn, use_rollup=False)
        for name, run in rolled.items():
            if run() != again[name]():
                raise SystemExit(f"{name}: the rollup's answer differs from the live one")
        out["dashboard_rolled"] = timed(rolled, repeat, "rolled  ")
    engine.dispose()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--keep", help="reuse/keep this database name instead of a scratch one")
    args = p.parse_args()
    name = (
        args.keep or os.environ.get("SMSD_BENCH_DB") or "smsd_panel_bench_" + uuid.uuid4().hex[:8]
    )
    base = args.pg.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    with psycopg.connect(args.pg, autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            admin.execute(f'CREATE DATABASE "{name}"')
    try:
        if not exists:
            try:
                build(url, args.rows)
            except BaseException:
                args.keep = None  # a half-built database is never reused
                raise
        else:
            upgrade(url)
            with psycopg.connect(url, autocommit=True) as c:
                c.execute(ACCOUNTS.replace(":now - :span", "%(t)s"), {"t": NOW - SPAN_S})
                c.execute("ANALYZE")
        results = measure(url, args.repeat)
    finally:
        if not args.keep:
            with psycopg.connect(args.pg, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "panel_search.json"), "w") as fh:
        json.dump({"rows": args.rows, "repeat": args.repeat, **results}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
