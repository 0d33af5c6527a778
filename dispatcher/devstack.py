"""``smsdispatch run``: the whole stack as child processes, on embedded defaults.

Without ``REDIS_URL`` a private ``redis-server`` is started on a free port; without
``DATABASE_URL`` the log is a SQLite file under ``var/``. The carrier is the simulator. A demo
account is created (its keys in ``var/demo-account.json``) and a ready curl command is printed.
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
import subprocess
import sys
import time
import urllib.request
from typing import Any

VAR = os.path.abspath("var")
DEMO_FILE = os.path.join(VAR, "demo-account.json")
DEMO_SECRET_FILE = os.path.join(VAR, "demo-webhook-secret")
DEMO_PANEL_FILE = os.path.join(VAR, "demo-panel-password")
INBOX_SECRET_ARG = f"--secret-file={DEMO_SECRET_FILE}"
LOG_START: dict[str, int] = {}


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def _spawn(name: str, argv: list[str], env: dict[str, str], procs: list[Any]) -> None:
    log = open(os.path.join(VAR, "logs", f"{name}.log"), "ab")  # noqa: SIM115 - lives with child
    LOG_START[name] = log.tell()  # earlier runs' lines stay in the file: look only after this
    proc = subprocess.Popen(
        argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    procs.append((name, proc))


def _demo_keys(env: dict[str, str], port: int) -> dict[str, str]:
    """Reuse the demo keys when they still work, else create them."""
    from dispatcher.accounts import KeyPair, add_key, create_account, find_account
    from dispatcher.config import Settings
    from dispatcher.store.db import make_engine

    settings = Settings.from_env(env)
    engine = make_engine(settings.database_url, pool_size=1)
    if os.path.exists(DEMO_FILE):
        with open(DEMO_FILE, encoding="utf-8") as fh:
            keys: dict[str, str] = json.load(fh)
        from dispatcher.accounts import Authenticator

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
    from dispatcher.store.db import make_engine
    from dispatcher.webhooks import admin

    engine = make_engine(Settings.from_env(env).database_url, pool_size=1)
    with engine.begin() as conn:
        acct = admin.account_id(conn, "demo")
        admin.set_options(conn, acct, {"url": inbox_url}, None)
        admin.ensure_secret(conn, acct)
        secret = admin.current_secret(conn, acct)
    engine.dispose()
    fd = os.open(DEMO_SECRET_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(f"{secret}\n")


def _demo_panel_user(env: dict[str, str]) -> str:
    """An admin panel user ``demo`` for the demo account; its password (kept in
    DEMO_PANEL_FILE, 0600, so a restart keeps the same login)."""
    import secrets

    from dispatcher.config import Settings
    from dispatcher.store.db import make_engine
    from dispatcher.store.users import Role, UserExists, create_user
    from dispatcher.webhooks import admin

    if os.path.exists(DEMO_PANEL_FILE):
        with open(DEMO_PANEL_FILE, encoding="utf-8") as fh:
            return fh.read().strip()
    password = secrets.token_urlsafe(12)
    engine = make_engine(Settings.from_env(env).database_url, pool_size=1)
    try:
        with engine.begin() as conn:
            acct = admin.account_id(conn, "demo")
            create_user(conn, acct, "demo", password, Role.ADMIN, time.time())
    except UserExists:  # created by an earlier run whose password file was removed
        return "(unknown: see docs/panel.md to create another user)"
    finally:
        engine.dispose()
    fd = os.open(DEMO_PANEL_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(f"{password}\n")
    return password


def curl_command(port: int, keys: dict[str, str]) -> str:
    """The hello-world request for the printed instructions."""
    body = json.dumps(
        {"sender": "Demo", "message": "Hello from smsdispatch", "phoneNumbers": ["+48111222333"]}
    )
    return (
        f"curl -s -X POST http://127.0.0.1:{port}/v2.1/sms "
        f"-H 'Content-Type: application/json' "
        f"-H 'Application-Key: {keys['Application-Key']}' "
        f"-H 'Authorization: {keys['Authorization']}' "
        f"-d '{body}'"
    )


def run_stack(args: argparse.Namespace) -> int:
    """Start everything, print the curl, wait for Ctrl-C, stop everything."""
    os.makedirs(os.path.join(VAR, "logs"), exist_ok=True)
    env = dict(os.environ)
    env.setdefault("SMSDISPATCH_LOG_FORMAT", "json")
    port = args.port or int(env.get("SMSDISPATCH_API_PORT") or 8080)
    env["SMSDISPATCH_API_PORT"] = str(port)
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    py = sys.executable
    try:
        if not env.get("REDIS_URL"):
            redis_bin = shutil.which("redis-server")
            if redis_bin is None:
                print(
                    "redis-server not found: install it (apt-get install redis-server) or set "
                    "REDIS_URL",
                    file=sys.stderr,
                )
                return 2
            rport = free_port()
            os.makedirs(os.path.join(VAR, "redis"), exist_ok=True)
            _spawn(
                "redis",
                [
                    redis_bin,
                    "--port",
                    str(rport),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "yes",
                    "--dir",
                    os.path.join(VAR, "redis"),
                ],
                env,
                procs,
            )
            env["REDIS_URL"] = f"redis://127.0.0.1:{rport}/0"
            _wait_port(rport)
        sim_port = free_port()
        env["SMSDISPATCH_CARRIER_URL"] = f"http://127.0.0.1:{sim_port}"
        env.setdefault("SMSDISPATCH_CARRIER_TPS", "100")
        # Local defaults: webhooks may target loopback (never in the production example).
        env.setdefault("SMSDISPATCH_WEBHOOK_ALLOW_PRIVATE", "1")
        token = env.setdefault("SMSDISPATCH_CARRIER_CALLBACK_TOKEN", secrets.token_urlsafe(16))
        callbacks = f"http://127.0.0.1:{port}/carrier/default"
        sim = ["--host", "127.0.0.1", "--port", str(sim_port), "--dlr-delay-ms", "300"]
        sim += ["--dlr-url", f"{callbacks}/reports", f"--dlr-token={token}"]
        sim += ["--mo-url", f"{callbacks}/inbound", f"--mo-token={token}"]
        _spawn("simulator", [py, "-m", "simulator", *sim], env, procs)
        subprocess.run(
            [py, "-m", "dispatcher.cli", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL
        )
        keys = _demo_keys(env, port)
        # A local inbox receives the demo account's signed webhooks (delivery reports).
        inbox_port = free_port()
        inbox = f"http://127.0.0.1:{inbox_port}"
        _demo_webhook(env, inbox + "/demo")
        panel_password = _demo_panel_user(env)
        _spawn(
            "webhook-inbox",
            [py, "-m", "dispatcher.webhook_inbox", f"--port={inbox_port}", INBOX_SECRET_ARG],
            env,
            procs,
        )
        cli = [py, "-m", "dispatcher.cli"]
        _spawn("api", [*cli, "api", "--port", str(port)], env, procs)
        _spawn(
            "worker-priority",
            [*cli, "worker", "--lane", "priority", "--concurrency", "1"],
            env,
            procs,
        )
        _spawn("worker-bulk", [*cli, "worker", "--lane", "bulk", "--concurrency", "2"], env, procs)
        for lane, n in (("dlr", "1"), ("webhooks", "1")):
            _spawn(
                f"worker-{lane}", [*cli, "worker", "--lane", lane, "--concurrency", n], env, procs
            )
        _spawn("scheduler", [*cli, "scheduler"], env, procs)
        if not wait_http(f"http://127.0.0.1:{port}/readyz", 60):
            print("the API did not become ready; see var/logs/api.log", file=sys.stderr)
            return 1
        # The printed curl should be answered at once: wait until the pools consume.
        for name, _p in procs:
            if name.startswith("worker-") and not _wait_log(name, "ready.", 90):
                print(f"{name} did not become ready; see var/logs/{name}.log", file=sys.stderr)
                return 1
        if not wait_http(inbox, 10):
            print(
                "the webhook inbox did not start; see var/logs/webhook-inbox.log", file=sys.stderr
            )
            return 1
        if not wait_http(f"http://127.0.0.1:{sim_port}/healthz", 30):
            print(
                "the carrier simulator did not start; see var/logs/simulator.log", file=sys.stderr
            )
            return 1
        dead = [name for name, p in procs if p.poll() is not None]
        if dead:
            print(f"{', '.join(dead)} exited at start; see var/logs/", file=sys.stderr)
            return 1
        print(f"\nsmsdispatch is running: API http://127.0.0.1:{port}  (logs in var/logs/)")
        print(f"demo account keys: {DEMO_FILE}\n\nSend an SMS:\n")
        print(curl_command(port, keys))
        print(
            f"\nThen look it up:\n  curl -s http://127.0.0.1:{port}/v2.1/sms "
            f"-H 'Application-Key: {keys['Application-Key']}' "
            f"-H 'Authorization: {keys['Authorization']}'\n\n"
            f"Its delivery report arrives as a signed webhook; see them at:\n"
            f"  webhook inbox: {inbox}/   (secret in {DEMO_SECRET_FILE})\n\n"
            f"Support panel: http://127.0.0.1:{port}/panel   "
            f"user demo, password {panel_password}\n\n"
            f"API reference: http://127.0.0.1:{port}/docs\n\nCtrl-C stops everything.",
            flush=True,
        )
        stop = {"now": False}

        def _stop(*_a: Any) -> None:
            stop["now"] = True

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        while not stop["now"]:
            for name, p in procs:
                if p.poll() is not None:
                    print(
                        f"{name} exited with {p.returncode}; see var/logs/{name}.log",
                        file=sys.stderr,
                    )
                    stop["now"] = True
            time.sleep(0.2)
        return 0
    finally:
        _terminate(procs)


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


def _terminate(procs: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    for _name, p in reversed(procs):
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for _name, p in reversed(procs):
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
