"""CPU cost of the accept path's group commit, in process, on real PostgreSQL and Redis.

Scenario E's req/s moves more between identical 8-s runs on a shared 2-core machine than a
10 % change in the code would. This measures what the code controls: the writer's CPU per
submission (``time.process_time`` of this process) and the PostgreSQL backend's CPU per
submission (psutil on the backend process), for groups of ``--group`` single-recipient
submissions, the shape the API's writer threads see at 32 concurrent clients. Minimum over
``--repeat`` rounds (the least disturbed one).

    .venv/bin/python -m bench.accept_cost [--group 8] [--groups 300] [--repeat 5] [--billing]

``--billing``: prices and balances on (docs/prices.md): the account has a price list and a
balance, and every group commit locks and charges it.

Needs PostgreSQL and Redis on 127.0.0.1 (``make services``); creates and drops its own
database and uses Redis database 14 (the benchmarks' own).
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Sequence

import psutil
import psycopg
import redis
from sqlalchemy import text

from dispatcher.accounts.account import create_account
from dispatcher.config import Settings
from dispatcher.contract import Lane
from dispatcher.intake.broker import Broker
from dispatcher.intake.submit import SendRequest, prepare
from dispatcher.intake.writer import SubmissionWriter
from dispatcher.store.balances import post
from dispatcher.store.db import make_engine
from dispatcher.store.migrate import upgrade
from dispatcher.store.prices import NewPrice, PriceBookCache, add_price

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/14"


def measure(group: int, groups: int, repeat: int, billing: bool = False) -> dict[str, float]:
    """Writer and PostgreSQL CPU in µs per submission, best of ``repeat`` rounds."""
    name = "smsd_cost_" + uuid.uuid4().hex[:8]
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        upgrade(url)
        engine = make_engine(url, pool_size=1)
        account, _ = create_account(engine, "cost", priority=True, sender_policy="open")
        settings = Settings.from_env({}, redis_url=REDIS_URL, database_url=url)
        broker = Broker(REDIS_URL)
        prices = None
        if billing:
            with engine.begin() as conn:
                add_price(conn, None, NewPrice("PL", "0.07", "PLN"), "bench")
                post(conn, account.id, "topup", 10**12, 985, "bench")
            prices = PriceBookCache(engine)
        writer = SubmissionWriter(
            engine, broker, {Lane.BULK: 500, Lane.PRIORITY: 100}, prices=prices
        )
        with engine.connect() as conn:
            backend = psutil.Process(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        rounds: list[tuple[float, float]] = []
        for r in range(repeat + 1):  # the first round warms caches and prepared statements
            subs = [
                [
                    prepare(
                        SendRequest("ACME", f"Your code is {g:06d}", [f"+48500{g % 1000000:06d}"]),
                        account,
                        settings,
                        time.time(),
                    ).submission
                    for g in range(i * group, (i + 1) * group)
                ]
                for i in range(groups)
            ]
            pg0 = sum(backend.cpu_times()[:2])
            cpu0 = time.process_time()
            for batch in subs:
                # What one of the API's writer threads does per group (SubmissionWriter._loop):
                # the enqueued marks ride in the next group's transaction.
                _, done = writer._commit_and_publish(batch, carry_marks=True)
                writer._keep_marks(done)
            cpu = time.process_time() - cpu0
            pg = sum(backend.cpu_times()[:2]) - pg0
            if r:
                rounds.append((cpu, pg))
            redis.Redis.from_url(REDIS_URL).flushdb()
        broker.close()
        engine.dispose()
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    n = group * groups
    return {
        "group": group,
        "billing": billing,
        "submissions_per_round": n,
        "writer_cpu_us": round(min(c for c, _ in rounds) / n * 1e6, 1),
        "postgres_cpu_us": round(min(p for _, p in rounds) / n * 1e6, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Print the figures as JSON."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--group", type=int, default=8, help="submissions per group commit")
    p.add_argument("--groups", type=int, default=300, help="group commits per round")
    p.add_argument("--repeat", type=int, default=5, help="measured rounds (best is reported)")
    p.add_argument("--billing", action="store_true", help="prices and balances on")
    args = p.parse_args(argv)
    print(json.dumps(measure(args.group, args.groups, args.repeat, args.billing)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
