"""The ``smsdispatch`` command: every process of the Procfile, and the operator's tools.

Output: JSON when piped (or with --json), tables on a terminal. Exit codes: 0 ok, 1 refused,
2 usage, 4 invalid input, 5 API refused, 6 API unreachable (docs/clients.md).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence

from dispatcher.cli.accounts import register as register_accounts
from dispatcher.cli.balance import register as register_balance
from dispatcher.cli.client import register as register_client
from dispatcher.cli.config import invalid
from dispatcher.cli.config import register as register_config
from dispatcher.cli.connections import CONFIG_ERROR_EXIT, checked
from dispatcher.cli.connections import register as register_connections
from dispatcher.cli.dead_letters import register as register_dead_letters
from dispatcher.cli.examples import EXAMPLES
from dispatcher.cli.links import register as register_links
from dispatcher.cli.numbers import register as register_numbers
from dispatcher.cli.output import add_options, emit, fail
from dispatcher.cli.parsers import walk
from dispatcher.cli.prices import register as register_prices
from dispatcher.cli.prices import register_usage
from dispatcher.cli.senders import register as register_senders
from dispatcher.cli.users import register as register_users
from dispatcher.cli.webhooks import add_account_webhook_parser
from dispatcher.config import ConfigError, Settings
from dispatcher.ops.logs import configure
from dispatcher.store.db import StoreUnavailable


def _settings() -> Settings:
    s = Settings.from_env()
    configure(s.log_level, s.log_format)
    return s


def cmd_api(args: argparse.Namespace) -> int:
    """Serve the REST API with uvicorn (uvloop + httptools), one process per core if asked."""
    from dispatcher.api.serve import ServeOptions, serve

    s = _settings()
    if checked(s) is None:  # refuse to start on an invalid connections file
        return CONFIG_ERROR_EXIT
    workers = args.workers or s.api_workers
    os.environ.setdefault("PGAPPNAME", "smsdispatch-api")  # see cmd_worker
    if workers > 1:  # every API process writes its metrics where /metrics can sum them
        from dispatcher.ops.metrics_dir import use_multiprocess_dir

        use_multiprocess_dir("api")
    return serve(ServeOptions(host=args.host or s.api_host, port=args.port or s.api_port), workers)


def cmd_worker(args: argparse.Namespace) -> int:
    """Run a Celery worker pool for one lane (replaces this process with Celery's own CLI, so
    the producer side never imports worker code and signals reach Celery directly)."""
    from dispatcher.cli.worker import worker_command
    from dispatcher.contract import Lane

    lane = Lane(args.lane)
    if checked(_settings()) is None:  # refuse to start on an invalid connections file
        return CONFIG_ERROR_EXIT
    argv, env = worker_command(lane, args.concurrency)
    for name, value in env.items():
        os.environ.setdefault(name, value)
    os.execv(sys.executable, argv)


def cmd_scheduler(_args: argparse.Namespace) -> int:
    """Run the scheduler loop until SIGTERM/SIGINT."""
    from dispatcher.intake.broker import Broker
    from dispatcher.redis_clients import sync_client
    from dispatcher.scheduler.loop import Scheduler
    from dispatcher.store.db import make_engine

    s = _settings()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    engine = make_engine(s.database_url, pool_size=2, plan_each_run=True)
    broker = Broker(s.redis_url)
    Scheduler(s, engine, broker, sync_client(s.redis_url)).run(stop)
    broker.close()
    engine.dispose()
    return 0


def cmd_simulator(args: argparse.Namespace) -> int:
    """Run the carrier simulator (flags after ``--`` go to it)."""
    from simulator.cli import main as sim_main

    rest = list(args.rest)
    return sim_main(rest[1:] if rest[:1] == ["--"] else rest)


def cmd_exporter(args: argparse.Namespace) -> int:
    """Serve the broker-side metrics (queues, schedule, outbox, webhooks) on /metrics."""
    from dispatcher.ops.exporter import cmd_exporter as run_exporter

    return run_exporter(args)


def cmd_migrate(_args: argparse.Namespace) -> int:
    """Apply database migrations."""
    from dispatcher.store.migrate import upgrade

    s = _settings()
    upgrade(s.database_url)
    emit(_args, {"migrated": True})
    return 0


def cmd_accounts_create(args: argparse.Namespace) -> int:
    """Create an account and print its key pair once."""
    import time

    from dispatcher.accounts.account import create_account_in
    from dispatcher.cli.accounts import audit_cli
    from dispatcher.store.db import make_engine, transaction

    s = _settings()
    engine = make_engine(s.database_url, pool_size=1)
    try:
        with transaction(engine) as conn:
            account, pair = create_account_in(
                conn, args.name, args.priority, args.sender_policy, time.time()
            )
            policy = f"policy {account.sender_policy}"
            audit_cli(conn, None, "account.create", account.name, policy)
    finally:
        engine.dispose()
    out = {
        "account": account.name,
        "id": account.id,
        "priority": account.priority_enabled,
        "sender_policy": account.sender_policy,
        "Application-Key": pair.application_key,
        "Authorization": pair.authorization,
    }
    if args.write:
        os.makedirs(os.path.dirname(os.path.abspath(args.write)), exist_ok=True)
        with open(args.write, "w", encoding="utf-8") as fh:
            json.dump(
                {"Application-Key": pair.application_key, "Authorization": pair.authorization}, fh
            )
        os.chmod(args.write, 0o600)
    emit(args, out, indent=2)
    return 0


def cmd_smpp(args: argparse.Namespace) -> int:
    """Hold the SMPP binds of the ``smpp`` connections (replaces this process, like
    ``worker``: the producer side never imports worker code)."""
    if checked(_settings()) is None:
        return CONFIG_ERROR_EXIT
    argv = [sys.executable, "-m", "workers.smpp"]
    if args.max_binds is not None:
        argv += ["--max-binds", str(args.max_binds)]
    os.execv(sys.executable, argv)


def cmd_run(args: argparse.Namespace) -> int:
    """The whole stack in the foreground, on embedded defaults (``make run``)."""
    from devstack.run import run_stack

    return run_stack(args)


def cmd_completion(args: argparse.Namespace) -> int:
    """Print the shell completion script."""
    from dispatcher.cli.completion import script

    sys.stdout.write(script(args.shell, build_parser()))
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    def of(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:  # a source tree that was never installed
            return "unknown"

    return f"smsdispatch {of('smsdispatch')} (REST API v2.1, client {of('smsdispatch-client')})"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used by tests to check the Procfile's commands exist)."""
    p = argparse.ArgumentParser(prog="smsdispatch", description=__doc__)
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("api", help="serve the REST API")
    a.add_argument("--host")
    a.add_argument("--port", type=int)
    a.add_argument("--workers", type=int)
    a.set_defaults(func=cmd_api)

    w = sub.add_parser("worker", help="run a worker pool for one lane")
    w.add_argument("--lane", required=True, choices=["priority", "bulk", "dlr", "webhooks"])
    w.add_argument("--concurrency", type=int, default=2)
    w.set_defaults(func=cmd_worker)

    sub.add_parser(
        "scheduler", help="release scheduled/retrying messages, repair crash windows"
    ).set_defaults(func=cmd_scheduler)

    sim = sub.add_parser("simulator", help="run the carrier simulator")
    sim.add_argument("rest", nargs=argparse.REMAINDER)
    sim.set_defaults(func=cmd_simulator)

    e = sub.add_parser("exporter", help="serve queue, schedule and webhook gauges on /metrics")
    e.add_argument("--host")
    e.add_argument("--port", type=int)
    e.set_defaults(func=cmd_exporter)

    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)

    acc = sub.add_parser("accounts", help="manage accounts")
    acc_sub = acc.add_subparsers(dest="accounts_command", required=True)
    c = acc_sub.add_parser("create", help="create an account and print its keys")
    c.add_argument("name")
    c.add_argument("--priority", action="store_true", help="enable the priority add-on")
    c.add_argument("--write", metavar="FILE", help="also write the key pair to FILE (0600)")
    c.add_argument(
        "--sender-policy",
        choices=["registered", "open"],
        default="registered",
        help="registered (default, as the original): only sender names an operator approved; "
        "open: any valid name",
    )
    c.set_defaults(func=cmd_accounts_create)
    add_account_webhook_parser(acc_sub)
    register_accounts(acc_sub)
    register_links(sub, acc_sub)

    register_numbers(sub)
    register_prices(sub)
    register_balance(sub)
    register_usage(sub)
    register_senders(sub)
    register_client(sub)
    register_connections(sub)
    register_users(sub)
    register_dead_letters(sub)
    register_config(sub)

    sm = sub.add_parser("smpp", help="hold the SMPP binds of the smpp connections")
    sm.add_argument(
        "--max-binds",
        type=int,
        default=None,
        help="binds per connection this process takes at most (default: all it can get)",
    )
    sm.set_defaults(func=cmd_smpp)

    r = sub.add_parser("run", help="run the whole stack locally (make run)")
    r.add_argument("--port", type=int, help="API port (default SMSDISPATCH_API_PORT or 8080)")
    r.add_argument("--no-demo", action="store_true", help="do not create the demo account")
    r.set_defaults(func=cmd_run)

    comp = sub.add_parser("completion", help="print the shell completion script (bash, zsh)")
    comp.add_argument("shell", choices=["bash", "zsh"])
    comp.set_defaults(func=cmd_completion)

    for path, parser in walk(p):
        add_options(parser, top=len(path) == 1)
        example = EXAMPLES.get(" ".join(path[1:]))
        if example:
            parser.formatter_class = argparse.RawDescriptionHelpFormatter
            lines = "\n".join(f"  {line}" for line in example.splitlines())
            parser.epilog = f"example:\n{lines}"
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:  # a bad setting: its name and what it accepts, no traceback
        return invalid(args, exc)
    except StoreUnavailable as exc:
        if not exc.outage:  # a bug: its stack, not "try again"
            raise
        return fail(args, {"error": "database_unreachable", "message": f"the database: {exc}"})
