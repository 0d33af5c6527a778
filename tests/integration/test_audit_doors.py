"""Every command that changes an account writes its audit entry (``dispatcher/store/audit.py``),
in the same transaction, whichever door it came through: each ``smsdispatch`` command here runs
in-process against a real database, the panel's suppression removal (the one panel action
without a walk of its own in ``test_panel_workspace.py``), login, failed login and logout
through the panel over HTTP, and the API's state-changing endpoints with a named key pair.
"""

from __future__ import annotations

import html
import pathlib
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from dispatcher.accounts.account import Account, create_account, create_named_key
from dispatcher.api.app import build_context, create_app
from dispatcher.cli.accounts import cli_actor
from dispatcher.cli.main import main
from dispatcher.config import Settings
from dispatcher.store import audit, callback_inbox, dead_letters
from dispatcher.store.accounts import account_id, list_keys
from dispatcher.store.db import make_engine, reading, transaction
from dispatcher.store.suppressions import add_suppression, list_suppressions
from dispatcher.store.users import Role, create_user
from tests.support.services import fresh_database, fresh_redis

pytestmark = pytest.mark.integration

PASSWORD = "a long enough password"


@dataclass(frozen=True)
class Door:
    """A CLI command, what must run before it, and the entries it must add."""

    argv: list[str]
    # (account: "shop" or None for a platform entry, action, target, a part of the detail)
    entries: list[tuple[str | None, str, str | None, str | None]]
    before: tuple[list[str], ...] = ()


COMMANDS = {
    "accounts create": Door(
        ["accounts", "create", "newco", "--sender-policy", "open"],
        [(None, "account.create", "newco", "policy open")],
    ),
    "accounts rotate-key": Door(
        ["accounts", "rotate-key", "shop", "--overlap", "60"],
        [("shop", "key.rotate", "all keys", "60 more seconds")],
    ),
    "accounts limits": Door(
        ["accounts", "limits", "shop", "--rate", "5", "--daily-cap", "100"],
        [("shop", "account.limits", "shop", "rate 5.0/s, daily cap 100")],
    ),
    "accounts webhook": Door(
        ["accounts", "webhook", "shop", "--url", "http://127.0.0.1:8099/h", "--on-sent"],
        [
            ("shop", "webhook.secret_create", None, None),
            ("shop", "webhook.url", "url", "127.0.0.1"),
            ("shop", "webhook.on_sent", None, "on"),
        ],
    ),
    "accounts webhook --rotate-secret --resume": Door(
        ["accounts", "webhook", "shop", "--rotate-secret", "--overlap-hours", "2", "--resume"],
        [
            ("shop", "webhook.secret_rotate", None, "2 more hours"),
            ("shop", "webhook.resume", None, "0 endpoint(s) resumed"),
        ],
    ),
    "accounts links": Door(
        ["accounts", "links", "shop", "--lifetime", "2d", "--click-webhooks", "all"],
        [("shop", "account.links", "shop", "link lifetime 172800 s, click webhooks all")],
    ),
    "numbers add": Door(
        ["numbers", "add", "48500", "--account", "shop"],
        [("shop", "number.add", "48500", "short_code")],
    ),
    "numbers remove": Door(
        ["numbers", "remove", "48501"],
        [("shop", "number.remove", "48501", None)],
        before=(["numbers", "add", "48501", "--account", "shop"],),
    ),
    "prices set": Door(
        ["prices", "set", "+4850", "0.07", "--currency", "PLN", "--account", "shop"],
        [("shop", "price.set", "shop", "+4850 0.07 PLN per part")],
    ),
    "prices set (platform list)": Door(
        ["prices", "set", "PL", "0.09", "--currency", "PLN", "--by", "ann"],
        [(None, "price.set", "default list", "+48 0.09 PLN per part")],
    ),
    "prices remove": Door(
        ["prices", "remove", "+4851", "--account", "shop"],
        [("shop", "price.remove", "shop", "+4851: 1 entry")],
        before=(["prices", "set", "+4851", "0.05", "--currency", "PLN", "--account", "shop"],),
    ),
    "balance top-up": Door(
        ["balance", "top-up", "shop", "10", "--currency", "PLN", "--by", "ann"],
        [("shop", "balance.topup", "shop", "10.00 PLN, balance 10.00")],
    ),
    "balance adjust": Door(
        ["balance", "adjust", "shop", "-1", "--currency", "PLN", "--note", "refund"],
        [("shop", "balance.adjust", "shop", "-1.00 PLN")],
    ),
    "balance limits": Door(
        ["balance", "limits", "shop", "--currency", "PLN", "--credit-limit", "unlimited"],
        [("shop", "balance.limits", "shop", "credit limit unlimited")],
    ),
    "senders request": Door(
        ["senders", "request", "shop", "Acme"], [("shop", "sender.request", "Acme", None)]
    ),
    "senders approve": Door(
        ["senders", "approve", "shop", "Acme2"],
        [("shop", "sender.approve", "Acme2", None)],
        before=(["senders", "request", "shop", "Acme2"],),
    ),
    "senders reject": Door(
        ["senders", "reject", "shop", "Acme3", "--reason", "not yours"],
        [("shop", "sender.reject", "Acme3", "not yours")],
        before=(["senders", "request", "shop", "Acme3"],),
    ),
    "users create": Door(
        [
            *("users", "create", "clerk", "--account", "shop", "--role", "support"),
            *("--password-file", "{password_file}"),
        ],
        [("shop", "user.create", "clerk", "support")],
    ),
    "senders policy": Door(
        ["senders", "policy", "shop", "open"], [("shop", "sender.policy", "shop", "open")]
    ),
}


@pytest.fixture(scope="module")
def log_url() -> Iterator[str]:
    with fresh_database() as url:
        engine = make_engine(url)
        create_account(engine, "shop")
        engine.dispose()
        yield url


def _entries(url: str, after: int) -> list[audit.AuditEntry]:
    engine = make_engine(url)
    with reading(engine) as conn:
        rows = [e for e in audit.entries(conn, None, None, 200) if e.id > after]
    engine.dispose()
    return sorted(rows, key=lambda e: e.id)


def _newest(url: str) -> int:
    rows = _entries(url, 0)
    return rows[-1].id if rows else 0


@pytest.mark.parametrize("door", COMMANDS.values(), ids=list(COMMANDS))
def test_each_cli_command_that_changes_an_account_writes_its_audit_entry(
    door: Door,
    log_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: pathlib.Path,
) -> None:
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    argv = [a.replace("{password_file}", str(secret)) for a in door.argv]
    monkeypatch.setenv("DATABASE_URL", log_url)
    monkeypatch.setenv("SMSDISPATCH_WEBHOOK_ALLOW_PRIVATE", "1")
    for setup in door.before:
        assert main([*setup, "--json"]) == 0, capsys.readouterr().err
    last = _newest(log_url)
    assert main([*argv, "--json"]) == 0, capsys.readouterr().err
    engine = make_engine(log_url)
    with reading(engine) as conn:
        shop = account_id(conn, "shop")
    engine.dispose()
    got = _entries(log_url, last)
    assert [(e.action, e.target) for e in got] == [(a, t) for _, a, t, _ in door.entries]
    for entry, (account, _, _, detail) in zip(got, door.entries, strict=True):
        assert entry.account_id == (shop if account else None), entry
        assert detail is None or (entry.detail and detail in entry.detail), entry
        by = "ann" if "--by" in door.argv else None
        assert entry.actor == by if by else entry.actor.startswith("cli"), entry


def test_a_command_that_changes_nothing_writes_nothing(
    log_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", log_url)
    last = _newest(log_url)
    assert main(["accounts", "limits", "shop", "--json"]) == 0  # shows, sets nothing
    assert main(["senders", "policy", "shop", "--json"]) == 0
    assert main(["numbers", "remove", "49999", "--json"]) == 1  # not assigned
    assert _entries(log_url, last) == []


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page[:500]
    return found.group(1)


@dataclass(frozen=True)
class Shop:
    """A served app over a fresh database with account ``shop`` (admin ``boss``, the number
    +48500100200 suppressed)."""

    engine: Engine
    account: Account
    http: TestClient


@contextmanager
def _shop() -> Iterator[Shop]:
    with fresh_database() as url, fresh_redis() as redis_url:
        engine = make_engine(url)
        account, _ = create_account(engine, "shop")
        with transaction(engine) as conn:
            create_user(conn, account.id, "boss", PASSWORD, Role.ADMIN, time.time())
            add_suppression(conn, account.id, "+48500100200", time.time())
        settings = Settings.from_env({}, database_url=url, redis_url=redis_url)
        try:
            with TestClient(create_app(settings, build_context(settings))) as http:
                yield Shop(engine, account, http)
        finally:
            engine.dispose()


def _login(http: TestClient, password: str, status: int) -> None:
    form = {"username": "boss", "password": password}
    token = _csrf(http.get("/panel/login").text)
    login = http.post("/panel/login", data={**form, "csrf_token": token}, follow_redirects=False)
    assert login.status_code == status, login.text


def test_removing_a_suppression_in_the_panel_writes_its_audit_entry() -> None:
    with _shop() as shop:
        engine, account, http = shop.engine, shop.account, shop.http
        _login(http, PASSWORD, 303)
        page = http.get("/panel/suppressions")
        assert page.status_code == 200, page.text
        done = http.post(
            "/panel/suppressions/remove",
            data={"phone": "+48500100200", "csrf_token": _csrf(page.text)},
            follow_redirects=False,
        )
        assert done.status_code == 303, done.text
        shown = html.unescape(http.get("/panel/account/audit").text)
        with reading(engine) as conn:
            assert list_suppressions(conn, account.id)[0] == []
            entry, login = audit.entries(conn, account.id)  # newest first
    assert (entry.action, entry.target, entry.actor) == (
        "suppression.remove",
        "+48500100200",
        "panel:boss",
    )
    assert (login.action, login.actor) == ("login", "panel:boss")
    assert "suppression.remove" in shown and "+48500100200" in shown


Row = tuple[int | None, str, str | None, str | None, str]


def _rows(entries: list[audit.AuditEntry]) -> list[Row]:
    """(account, action, target, detail, actor) oldest first."""
    ordered = sorted(entries, key=lambda e: e.id)
    return [(e.account_id, e.action, e.target, e.detail, e.actor) for e in ordered]


def test_dead_letters_retry_and_drop_write_platform_entries(
    log_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", log_url)
    engine = make_engine(log_url)
    now = time.time()
    with transaction(engine) as conn:
        one, two = callback_inbox.add(
            conn, callback_inbox.REPORT, "default", [[{"id": "r-1"}], [{"id": "r-2"}]], now, 30
        )
        for row in (one, two):
            assert dead_letters.record_failure(conn, row, "DataError", now, 1)
    engine.dispose()
    last = _newest(log_url)
    retry = ["dead-letters", "retry", "--kind", "report", str(one), "--by", "ann", "--json"]
    assert main(retry) == 0, capsys.readouterr().err
    assert main(["dead-letters", "drop", "--kind", "report", "--all", "--json"]) == 0
    assert main(["dead-letters", "drop", "--kind", "report", "--all", "--json"]) == 0  # none
    assert _rows(_entries(log_url, last)) == [
        (None, "deadletter.retry", "report", f"ids {one}: 1 retried", "ann"),
        (None, "deadletter.drop", "report", "all: 1 dropped", cli_actor()),
    ]


def test_the_apis_changes_are_recorded_with_the_key_pair_that_made_them() -> None:
    with _shop() as shop:
        engine, account, http = shop.engine, shop.account, shop.http
        with transaction(engine) as conn:
            pair = create_named_key(conn, account.id, "deploy", "panel:boss", time.time())
            [key] = [k for k in list_keys(conn, account.id) if k.name == "deploy"]
        keys = {"Application-Key": pair.application_key, "Authorization": pair.authorization}
        for _ in range(2):  # asking again for a pending name changes nothing
            asked = http.post("/v2.1/sms/senders", json={"sender": "Acme"}, headers=keys)
            assert asked.status_code == 200, asked.text
        for expected in (200, 404):  # the second time it is no longer on the list
            gone = http.delete("/v2.1/suppressions/+48500100200", headers=keys)
            assert gone.status_code == expected, gone.text
        with reading(engine) as conn:
            got = _rows(audit.entries(conn, account.id))
    actor = f"api:key#{key.id} deploy"
    assert got == [
        (account.id, "sender.request", "Acme", None, actor),
        (account.id, "suppression.remove", "+48500100200", None, actor),
    ]
    assert not any(secret in repr(got) for secret in keys.values())


def test_panel_logins_failed_logins_and_logouts_are_security_events() -> None:
    with _shop() as shop:
        engine, account, http = shop.engine, shop.account, shop.http
        _login(http, "not the password", 401)
        _login(http, PASSWORD, 303)
        page = http.get("/panel/account/audit")
        assert page.status_code == 200, page.text
        out = http.post(
            "/panel/logout", data={"csrf_token": _csrf(page.text)}, follow_redirects=False
        )
        assert out.status_code == 303, out.text
        with reading(engine) as conn:
            got = _rows(audit.entries(conn, None))  # as the platform operator reads them
            admins = _rows(audit.entries(conn, account.id))
    where = "from testclient"  # the address Starlette's test client connects from
    assert got == [
        (None, "login.failed", None, where, "panel:boss"),
        (account.id, "login", None, where, "panel:boss"),
        (account.id, "logout", None, None, "panel:boss"),
    ]
    assert admins == got[1:]  # a failed login is the platform's: the name may be anyone's
    assert PASSWORD not in repr(got) and "not the password" not in repr(got)
