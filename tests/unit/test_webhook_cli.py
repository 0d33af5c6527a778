"""``smsdispatch accounts webhook NAME …``: URLs checked, secret printed when created or
rotated, options, unknown accounts, and the JSON it prints."""

from __future__ import annotations

import argparse
import json
from typing import Any

import pytest
from smsdispatch_client.webhooks import secret_key
from sqlalchemy import Engine, select

from dispatcher.cli.exits import Exit
from dispatcher.cli.webhooks import add_account_webhook_parser, apply, cmd_accounts_webhook
from dispatcher.config import Settings
from dispatcher.store.schema import accounts
from dispatcher.store.webhook_settings import AccountNotFound
from dispatcher.webhooks.urls import UrlRefused
from tests.unit.test_webhook_outbox import add_account


def parse(*argv: str) -> argparse.Namespace:
    root = argparse.ArgumentParser(prog="smsdispatch")
    sub = root.add_subparsers(dest="command", required=True)
    acc = sub.add_parser("accounts").add_subparsers(dest="accounts_command", required=True)
    add_account_webhook_parser(acc)
    return root.parse_args(["accounts", "webhook", *argv])


def name_of(eng: Engine, acct: int) -> str:
    with eng.connect() as conn:
        return str(conn.execute(select(accounts.c.name).where(accounts.c.id == acct)).scalar())


def row(eng: Engine, acct: int) -> Any:
    with eng.connect() as conn:
        return conn.execute(select(accounts).where(accounts.c.id == acct)).one()


PUBLIC = Settings(webhook_allow_private=False)
LOCAL = Settings(webhook_allow_private=True)


def test_set_urls_creates_and_prints_the_secret_once(engine: Engine) -> None:
    name = name_of(engine, acct := add_account(engine))
    out = apply(
        engine,
        LOCAL,
        parse(name, "--url", "http://127.0.0.1:8099/h", "--secondary", "http://127.0.0.1:8098/h"),
    )
    assert out["webhookUrl"] == "http://127.0.0.1:8099/h"
    assert out["webhookUrlSecondary"] == "http://127.0.0.1:8098/h"
    assert out["secret"].startswith("whsec_") and len(secret_key(out["secret"])) == 32
    assert row(engine, acct).webhook_secret == out["secret"]
    again = apply(engine, LOCAL, parse(name, "--inbound-url", "http://127.0.0.1:8097/in"))
    assert "secret" not in again and again["inboundWebhookUrl"] == "http://127.0.0.1:8097/in"
    shown = apply(engine, LOCAL, parse(name, "--show-secret"))
    assert shown["secret"] == out["secret"]
    cleared = apply(engine, LOCAL, parse(name, "--secondary", ""))
    assert cleared["webhookUrlSecondary"] is None


def test_private_urls_refused_unless_allowed_and_nothing_changes(engine: Engine) -> None:
    name = name_of(engine, acct := add_account(engine))
    for url in ("http://127.0.0.1/h", "http://169.254.169.254/", "ftp://x.example/"):
        with pytest.raises(UrlRefused):
            apply(engine, PUBLIC, parse(name, "--url", url))
    with pytest.raises(UrlRefused, match="--secondary"):
        apply(engine, PUBLIC, parse(name, "--secondary", "http://10.0.0.1/h"))
    r = row(engine, acct)
    assert r.webhook_url is None and r.webhook_url_secondary is None and r.webhook_secret is None


def test_rotation_keeps_the_old_secret_for_the_overlap(engine: Engine) -> None:
    name = name_of(engine, acct := add_account(engine))
    first = apply(engine, LOCAL, parse(name, "--show-secret"))["secret"]
    out = apply(engine, LOCAL, parse(name, "--rotate-secret", "--overlap-hours", "2"))
    assert out["secret"] != first and out["previousSecretValidUntil"]
    r = row(engine, acct)
    assert (r.webhook_secret, r.webhook_secret_previous) == (out["secret"], first)
    immediate = apply(engine, LOCAL, parse(name, "--rotate-secret", "--overlap-hours", "0"))
    assert row(engine, acct).webhook_secret_previous is None
    assert immediate["previousSecretValidUntil"] is None


def test_on_sent_flag_and_unknown_account(engine: Engine) -> None:
    name = name_of(engine, acct := add_account(engine))
    assert apply(engine, LOCAL, parse(name, "--on-sent"))["onSent"] is True
    assert row(engine, acct).webhook_on_sent is True
    assert apply(engine, LOCAL, parse(name, "--no-on-sent"))["onSent"] is False
    assert apply(engine, LOCAL, parse(name))["onSent"] is False  # unchanged when not given
    with pytest.raises(AccountNotFound):
        apply(engine, LOCAL, parse("no-such-account"))


def test_command_prints_json_and_exit_codes(
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = name_of(engine, add_account(engine))
    monkeypatch.setenv("DATABASE_URL", str(engine.url.render_as_string(hide_password=False)))
    monkeypatch.setenv("SMSDISPATCH_WEBHOOK_ALLOW_PRIVATE", "0")
    assert cmd_accounts_webhook(parse(name, "--url", "http://127.0.0.1/h")) == Exit.INPUT
    assert json.loads(capsys.readouterr().err)["error"] == "forbidden_address"
    assert cmd_accounts_webhook(parse("nobody")) == 1
    capsys.readouterr()
    assert cmd_accounts_webhook(parse(name, "--resume")) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["resumed"] == {"endpoints": 0, "requeued": 0} and out["account"] == name
