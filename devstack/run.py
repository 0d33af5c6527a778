"""``smsdispatch run``: the whole stack as child processes, on embedded defaults.

Without ``REDIS_URL`` a private ``redis-server`` is started on a free port, with a password;
without ``DATABASE_URL`` the log is a SQLite file under ``var/``. The carrier is the simulator.
A demo account is created (its keys in ``var/demo-account.json``) and a ready curl command is
printed. The exporter runs too (port 9105 when free), so the dashboard's queue and backlog
panels and their alerts have their series in the dev stack.

Another user of the machine learns nothing from it: ``var/`` and everything written under it
(the database, Redis's files, keys, logs) is readable by its owner only (umask 077), and no
secret is on a command line, where ``ps`` shows it to everyone: Redis reads its password from a
0600 configuration file, the simulator its callback token from the environment.

The children never outlive this process, however it ends, and a second ``smsdispatch run`` of
the same checkout refuses to start beside a live one and stops what a killed one left behind
(:mod:`devstack.supervise`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import sys
import time
import urllib.request
from typing import Any

from devstack.supervise import StackRunning, Supervisor
from dispatcher.cli.worker import worker_command
from dispatcher.contract import Lane

VAR = os.path.abspath("var")
DEMO_FILE = os.path.join(VAR, "demo-account.json")
DEMO_SECRET_FILE = os.path.join(VAR, "demo-webhook-secret")
DEMO_PANEL_FILE = os.path.join(VAR, "demo-panel-password")
INBOX_SECRET_ARG = f"--secret-file={DEMO_SECRET_FILE}"
RUN_DIR = os.path.join(VAR, "run")  # the supervisor's lock and state (devstack/supervise.py)
LOG_START: dict[str, int] = {}


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_or_free(port: int) -> int:
    """``port`` if nothing listens on it on loopback, else a free one."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return free_port()
    return port


def wait_http(url: str, timeout: float = 30.0) -> bool:
    """Poll ``url`` until it answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def _demo_keys(env: dict[str, str], port: int) -> dict[str, str]:
    """Reuse the demo keys when they still work, else create them."""
    from dispatcher.accounts.account import KeyPair, add_key, create_account, find_account
    from dispatcher.config import Settings
    from dispatcher.store.db import make_engine

    settings = Settings.from_env(env)
    engine = make_engine(settings.database_url, pool_size=1)
    if os.path.exists(DEMO_FILE):
        with open(DEMO_FILE, encoding="utf-8") as fh:
            keys: dict[str, str] = json.load(fh)
        from dispatcher.accounts.account import Authenticator

        if Authenticator(engine).authenticate(keys["Application-Key"], keys["Authorization"]):
            return keys
    account = find_account(engine, "demo")
    pair: KeyPair
    if account is None:
        # Open: every example of the README and the snippets sends as printed, from any name.
        _, pair = create_account(engine, "demo", priority=True, sender_policy="open")
    else:
        pair = add_key(engine, account.id)
    keys = {"Application-Key": pair.application_key, "Authorization": pair.authorization}
    with open(DEMO_FILE, "w", encoding="utf-8") as fh:
        json.dump(keys, fh)
    os.chmod(DEMO_FILE, 0o600)
    engine.dispose()
    return keys


def _demo_webhook(env: dict[str, str], inbox_url: str) -> None:
    """Point the demo account's webhooks at the local inbox; its secret to DEMO_SECRET_FILE."""
    from dispatcher.config import Settings
    from dispatcher.store import webhook_settings
    from dispatcher.store.db import make_engine

    engine = make_engine(Settings.from_env(env).database_url, pool_size=1)
    with engine.begin() as conn:
        acct = webhook_settings.account_id(conn, "demo")
        webhook_settings.set_options(conn, acct, {"url": inbox_url}, None)
        webhook_settings.ensure_secret(conn, acct)
        secret = webhook_settings.current_secret(conn, acct)
    engine.dispose()
    fd = os.open(DEMO_SECRET_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(f"{secret}\n")


def _demo_panel_user(env: dict[str, str]) -> str:
    """An admin panel user ``demo`` for the demo account; its password (kept in
    DEMO_PANEL_FILE, 0600, so a restart keeps the same login)."""
    import secrets

    from dispatcher.config import Settings
    from dispatcher.store import webhook_settings
    from dispatcher.store.db import make_engine
    from dispatcher.store.users import Role, UserExists, create_user

    if os.path.exists(DEMO_PANEL_FILE):
        with open(DEMO_PANEL_FILE, encoding="utf-8") as fh:
            return fh.read().strip()
    password = secrets.token_urlsafe(12)
    engine = make_engine(Settings.from_env(env).database_url, pool_size=1)
    try:
        with engine.begin() as conn:
            acct = webhook_settings.account_id(conn, "demo")
            create_user(conn, acct, "demo", password, Role.ADMIN, time.time())
    except UserExists:  # created by an earlier run whose password file was removed
        return "(unknown: see docs/panel.md to create another user)"
    finally:
        engine.dispose()
    fd = os.open(DEMO_PANEL_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(f"{password}\n")
    return password


def curl_command(port: int, keys: dict[str, str], short_link: bool = False) -> str:
    """The hello-world request for the printed instructions (``short_link``: one whose link is
    shortened and tracked, docs/short-links.md)."""
    fields: dict[str, Any] = {
        "sender": "Demo",
        "message": "Hello from smsdispatch",
        "phoneNumbers": ["+48111222333"],
    }
    if short_link:
        fields["message"] = "Hello from smsdispatch: https://github.com/topics/sms-gateway"
        fields["shortLink"] = True
    body = json.dumps(fields)
    return (
        f"curl -s -X POST http://127.0.0.1:{port}/v2.1/sms "
        f"-H 'Content-Type: application/json' "
        f"-H 'Application-Key: {keys['Application-Key']}' "
        f"-H 'Authorization: {keys['Authorization']}' "
        f"-d '{body}'"
    )


def private_dir(path: str) -> None:
    """Make ``path`` (created if needed) and everything in it readable by its owner only, and
    new files in this process and its children too (earlier runs may have left files open to
    all)."""
    os.umask(0o077)
    os.makedirs(path, mode=0o700, exist_ok=True)
    for root, dirs, files in os.walk(path):
        os.chmod(root, 0o700)
        for name in files:
            full = os.path.join(root, name)
            if not os.path.islink(full):
                os.chmod(full, os.stat(full).st_mode & 0o700)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]


def redis_config(var: str) -> tuple[str, int, str]:
    """A private redis-server's configuration: a free loopback port and a random password, in
    a 0600 file (not the command line). Returns the file, the port and the URL (holding the
    password)."""
    port = free_port()
    password = secrets.token_urlsafe(24)
    data = os.path.join(var, "redis")
    os.makedirs(data, mode=0o700, exist_ok=True)
    conf = os.path.join(data, "redis.conf")
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(
            f"port {port}\nbind 127.0.0.1\nprotected-mode yes\nrequirepass {password}\n"
            f'save ""\nappendonly yes\ndir {data}\n'
        )
    return conf, port, f"redis://:{password}@127.0.0.1:{port}/0"


def run_stack(args: argparse.Namespace) -> int:
    """Start everything, print the curl, wait for Ctrl-C, stop everything."""
    from dispatcher.config import Settings

    # A bad setting stops here, naming it, before anything starts (dispatcher/config_env.py).
    settings = Settings.from_env()
    started = time.monotonic()
    private_dir(VAR)
    os.makedirs(os.path.join(VAR, "logs"), exist_ok=True)
    env = dict(os.environ)
    env.setdefault("SMSDISPATCH_LOG_FORMAT", "json")
    port = args.port or settings.api_port
    env["SMSDISPATCH_API_PORT"] = str(port)
    supervisor = Supervisor(
        RUN_DIR,
        watchdog_log=os.path.join(VAR, "logs", "watchdog.log"),
        info={"api": f"http://127.0.0.1:{port}"},
    )
    try:
        leftovers = supervisor.start()
    except StackRunning as exc:
        print(exc, file=sys.stderr)
        return 1
    if leftovers:
        print(
            f"stopped {leftovers} process(es) left running by an earlier smsdispatch run of "
            "this checkout (it was killed before it could stop them)",
            file=sys.stderr,
        )
    # SIGTERM and a closed terminal (SIGHUP) stop the stack in order, as Ctrl-C does.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    try:
        return _run(supervisor, env, port, started)
    except KeyboardInterrupt:
        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # let the shutdown finish
        supervisor.stop()


def _has_smpp(env: dict[str, str]) -> bool:
    """Whether the configured connections include an ``smpp`` one (an invalid file: the API
    and the pools refuse to start and say why)."""
    from dispatcher.config import Settings
    from dispatcher.routing import ConfigError, load_file

    settings = Settings.from_env(env)
    if not settings.connections:
        return False
    try:
        config = load_file(settings.connections, settings, env)  # secrets from the stack's env
    except ConfigError:
        return False
    return any(c.smpp is not None for c in config.connections)


def _interrupt(*_args: Any) -> None:
    raise KeyboardInterrupt


def _run(supervisor: Supervisor, env: dict[str, str], port: int, started: float) -> int:
    py = sys.executable

    def spawn(name: str, argv: list[str], child_env: dict[str, str] | None = None) -> None:
        path = os.path.join(VAR, "logs", f"{name}.log")
        with contextlib.suppress(OSError):
            LOG_START[name] = os.path.getsize(path)  # earlier runs' lines: look only after
        supervisor.spawn(name, argv, env if child_env is None else child_env, path)

    if not env.get("REDIS_URL"):
        redis_bin = shutil.which("redis-server")
        if redis_bin is None:
            print(
                "redis-server not found: install it (apt-get install redis-server) or set "
                "REDIS_URL",
                file=sys.stderr,
            )
            return 2
        conf, rport, env["REDIS_URL"] = redis_config(VAR)
        spawn("redis", [redis_bin, conf])
        _wait_port(rport)
    sim_port = free_port()
    env["SMSDISPATCH_CARRIER_URL"] = f"http://127.0.0.1:{sim_port}"
    env.setdefault("SMSDISPATCH_CARRIER_TPS", "100")
    # Local defaults: webhooks may target loopback (never in the production example).
    env.setdefault("SMSDISPATCH_WEBHOOK_ALLOW_PRIVATE", "1")
    token = env.setdefault("SMSDISPATCH_CARRIER_CALLBACK_TOKEN", secrets.token_urlsafe(16))
    # Short links (shortLink) are served on their own local address, so the example's is
    # clickable; SMSDISPATCH_SHORT_LINK_BASE set by the caller (a public name) is kept.
    links_port = int(env.get("SMSDISPATCH_LINKS_PORT") or free_port())
    env["SMSDISPATCH_LINKS_PORT"] = str(links_port)
    # The exporter (queue depth and age, scheduled, outbox and webhook backlogs: the dashboard's
    # queue panels and their alerts) on its documented port when free, else on a free one.
    exporter_port = int(env.get("SMSDISPATCH_EXPORTER_PORT") or _port_or_free(9105))
    env["SMSDISPATCH_EXPORTER_PORT"] = str(exporter_port)
    env.setdefault("SMSDISPATCH_SHORT_LINK_BASE", f"http://127.0.0.1:{links_port}")
    callbacks = f"http://127.0.0.1:{port}/carrier/default"
    sim = ["--host", "127.0.0.1", "--port", str(sim_port), "--dlr-delay-ms", "300"]
    sim += ["--dlr-url", f"{callbacks}/reports", "--mo-url", f"{callbacks}/inbound"]
    sim_env = {**env, "SIMULATOR_DLR_TOKEN": token, "SIMULATOR_MO_TOKEN": token}
    spawn("simulator", [py, "-m", "simulator", *sim], sim_env)
    # A local inbox receives the demo account's signed webhooks (delivery reports); it reads
    # the secret on each request, so it starts before the secret is written.
    inbox_port = free_port()
    inbox = f"http://127.0.0.1:{inbox_port}"
    spawn(
        "webhook-inbox",
        [py, "-m", "devstack.webhook_inbox", f"--port={inbox_port}", INBOX_SECRET_ARG],
    )
    migrating = time.monotonic()
    from dispatcher.config import Settings
    from dispatcher.store.migrate import upgrade

    upgrade(Settings.from_env(env).database_url)
    keys = _demo_keys(env, port)
    _demo_webhook(env, inbox + "/demo")
    panel_password = _demo_panel_user(env)
    spawning = time.monotonic()
    cli = [py, "-m", "dispatcher.cli"]
    spawn("api", [*cli, "api", "--port", str(port)])
    spawn("links", [*cli, "links"])
    # The pools start Celery directly (`smsdispatch worker` would import the whole command
    # line tool first, only to replace itself with Celery).
    for lane, n in ((Lane.PRIORITY, 1), (Lane.BULK, 2), (Lane.DLR, 1), (Lane.WEBHOOKS, 1)):
        argv, extra = worker_command(lane, n)
        spawn(f"worker-{lane}", argv, {**extra, **env})
    spawn("scheduler", [*cli, "scheduler"])
    spawn("exporter", [*cli, "exporter"])
    if _has_smpp(env):
        # The SMPP session holder, only when the connections file has an smpp connection.
        spawn("smpp", [py, "-m", "workers.smpp"], {"SMSDISPATCH_SMPP_METRICS_PORT": "0", **env})
    if not wait_http(f"http://127.0.0.1:{port}/readyz", 60):
        print("the API did not become ready; see var/logs/api.log", file=sys.stderr)
        return 1
    # The printed curl should be answered at once: wait until the pools consume.
    for child in supervisor.children:
        if child.name.startswith("worker-") and not _wait_log(child.name, "ready.", 90):
            print(
                f"{child.name} did not become ready; see var/logs/{child.name}.log", file=sys.stderr
            )
            return 1
    if not wait_http(f"http://127.0.0.1:{links_port}/readyz", 30):
        print("the short-link service did not start; see var/logs/links.log", file=sys.stderr)
        return 1
    if not wait_http(f"http://127.0.0.1:{exporter_port}/readyz", 30):
        print("the exporter did not start; see var/logs/exporter.log", file=sys.stderr)
        return 1
    if not wait_http(inbox, 10):
        print("the webhook inbox did not start; see var/logs/webhook-inbox.log", file=sys.stderr)
        return 1
    if not wait_http(f"http://127.0.0.1:{sim_port}/healthz", 30):
        print("the carrier simulator did not start; see var/logs/simulator.log", file=sys.stderr)
        return 1
    dead = [c.name for c in supervisor.exited()]
    if dead:
        print(f"{', '.join(dead)} exited at start; see var/logs/", file=sys.stderr)
        return 1
    ready = time.monotonic()
    print(
        f"\nsmsdispatch is running: API http://127.0.0.1:{port}  (logs in var/logs/)\n"
        f"ready in {ready - started:.1f} s: Redis and simulator {migrating - started:.1f} s, "
        f"migrations and demo account {spawning - migrating:.1f} s, "
        f"processes up {ready - spawning:.1f} s"
    )
    print(f"demo account keys: {DEMO_FILE}\n\nSend an SMS:\n")
    print(curl_command(port, keys))
    print(
        "\nSend one with a tracked short link (open the shortUrl of its answer in a browser, "
        "then look the message up: its clicks are counted):\n"
    )
    print(curl_command(port, keys, short_link=True))
    print(
        f"\nThen look it up:\n  curl -s http://127.0.0.1:{port}/v2.1/sms "
        f"-H 'Application-Key: {keys['Application-Key']}' "
        f"-H 'Authorization: {keys['Authorization']}'\n\n"
        f"Its delivery report arrives as a signed webhook; see them at:\n"
        f"  webhook inbox: {inbox}/   (secret in {DEMO_SECRET_FILE})\n\n"
        f"Support panel: http://127.0.0.1:{port}/panel   "
        f"user demo, password {panel_password}\n\n"
        f"API reference: http://127.0.0.1:{port}/docs\n"
        f"Queue and backlog metrics (exporter): http://127.0.0.1:{exporter_port}/metrics\n\n"
        "Ctrl-C stops everything.",
        flush=True,
    )
    while True:
        for child in supervisor.exited():
            print(
                f"{child.name} exited with {child.proc.returncode}; see var/logs/{child.name}.log",
                file=sys.stderr,
            )
            return 1
        time.sleep(0.2)


def _wait_log(name: str, marker: str, timeout: float) -> bool:
    """Wait until ``var/logs/<name>.log`` contains ``marker`` (Celery logs "ready.")."""
    path = os.path.join(VAR, "logs", f"{name}.log")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), open(path, "rb") as fh:
            fh.seek(LOG_START.get(name, 0))
            if marker.encode() in fh.read():
                return True
        time.sleep(0.1)
    return False


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
