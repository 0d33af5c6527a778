"""The connections file (validation errors name the file and the key), the route look-up,
the ``connections list`` command, and the API refusing to start on a bad file."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dispatcher.cli.main import main
from dispatcher.config import Settings
from dispatcher.routing import ConfigError, RoutingTable, implicit, load_file
from dispatcher.routing.loader import parse
from dispatcher.routing.upstream import report_from_status_event

ROOT = Path(__file__).resolve().parents[2]
GOOD = """
[breaker]
cooldown_s = 2

[[connections]]
name = "orange"
type = "simulator"
url = "http://127.0.0.1:9091"
tps = 50
destinations = ["+4850", "+4851"]
api_key_env = "T_ORANGE_KEY"
callback_token_file = "orange.token"

[[connections]]
name = "orange-backup"
type = "http_json"
url = "http://127.0.0.1:9092"
tps = 10
destinations = ["+4850"]
preference = 2

[[connections]]
name = "pl-a"
type = "simulator"
url = "http://127.0.0.1:9093"
tps = 100
destinations = ["PL"]
weight = 3
lanes = ["bulk"]

[[connections]]
name = "pl-b"
type = "simulator"
url = "http://127.0.0.1:9094"
tps = 100
destinations = ["PL"]

[[connections]]
name = "gb"
type = "simulator"
url = "http://127.0.0.1:9095"
tps = 100
destinations = ["GB"]
accounts = ["shop"]

[[connections]]
name = "upstream"
type = "messageflow"
url = "http://127.0.0.1:9096/"
tps = 20
fallback = true
application_key_env = "T_APP"
authorization_env = "T_AUTH"
"""
ENV = {"T_ORANGE_KEY": "k", "T_APP": "a", "T_AUTH": "b"}


@pytest.fixture
def good(tmp_path: Path) -> Path:
    (tmp_path / "orange.token").write_text("cb-secret\n")
    path = tmp_path / "connections.toml"
    path.write_text(GOOD)
    return path


def names(tiers: Any) -> list[list[str]]:
    return [[c.name for c in t] for t in tiers]


def test_loads_and_resolves_secrets_by_reference(good: Path) -> None:
    config = load_file(str(good), Settings(), ENV)
    orange = config.connection("orange")
    assert orange is not None
    assert orange.credentials.api_key == "k" and orange.credentials.callback_token == "cb-secret"
    assert "cb-secret" not in repr(orange)  # secrets never in reprs (logs)
    up = config.connection("upstream")
    assert up is not None and up.url == "http://127.0.0.1:9096" and up.batch_size == 1
    assert config.breaker.cooldown_s == 2 and config.breaker.failure_threshold == 5


def test_longest_prefix_then_preference_then_shorter_routes(good: Path) -> None:
    table = RoutingTable(load_file(str(good), Settings(), ENV))
    # +4850: the operator's route first, its backup next, then the country-wide routes.
    assert names(table.tiers("+48501234567", "bulk")) == [
        ["orange"],
        ["orange-backup"],
        ["pl-a", "pl-b"],
    ]
    assert names(table.tiers("+48511234567", "bulk")) == [["orange"], ["pl-a", "pl-b"]]
    # The lane filter: pl-a carries bulk only.
    assert names(table.tiers("+48601234567", "priority")) == [["pl-b"]]
    # GB shares +44 with GG/JE/IM: the number's region decides; the account filter applies.
    assert names(table.tiers("+447400123456", "bulk", "shop")) == [["gb"]]
    assert names(table.tiers("+447911123456", "bulk", "shop")) == [["upstream"]]  # GG
    assert names(table.tiers("+447400123456", "bulk", "other")) == [["upstream"]]
    # No direct route: the explicit fallback; without one, unrouteable.
    assert names(table.tiers("+12025550123", "bulk")) == [["upstream"]]
    config = load_file(str(good), Settings(), ENV)
    no_fallback = type(config)(
        tuple(c for c in config.connections if not c.fallback), config.breaker, config.source
    )
    assert not RoutingTable(no_fallback).routable("+12025550123", "bulk")


def test_weights_share_a_tier(good: Path) -> None:
    import asyncio
    import random

    from workers.connectors.chooser import RouteChooser

    table = RoutingTable(load_file(str(good), Settings(), ENV))
    chooser = RouteChooser(table, None, rng=random.Random(7))
    msgs = [{"id": f"m{i}", "to": "+48601234567", "account": 1} for i in range(2000)]
    plan = asyncio.run(chooser.plan(msgs, "bulk"))
    share = len(plan.by_connection["pl-a"]) / len(msgs)
    assert 0.7 < share < 0.8, share  # weight 3 : 1


def test_headroom_defaults_to_the_setting_and_lowers_the_enforced_rate(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    conn = "[[connections]]\nname='{}'\ntype='simulator'\nurl='http://x'\ntps=500\n"
    conn += "destinations=['PL']\n"
    path.write_text(conn.format("a") + conn.format("b") + "headroom = 0\n")
    a, b = load_file(str(path), Settings(rate_headroom=0.02), {}).connections
    assert (a.headroom, a.send_rate) == (0.02, 490.0)
    assert (b.headroom, b.send_rate) == (0.0, 500.0)
    default = implicit(Settings(carrier_tps=1000, rate_headroom=0.05)).connections[0]
    assert default.send_rate == 950.0


def test_implicit_default_routes_everything() -> None:
    config = implicit(Settings(carrier_url="http://127.0.0.1:1234", carrier_callback_token="t"))
    assert config.implicit and [c.name for c in config.connections] == ["default"]
    assert config.connections[0].credentials.callback_token == "t"
    assert RoutingTable(config).routable("+12025550123", "priority")


BAD = [
    ("connections = []", "connections: must be a non-empty array"),
    ("[[connections]]\nname = 'a'\ntype = 'sms'", "connections[0].type: must be one of"),
    (
        "[[connections]]\nname='a'\ntype='simulator'\nurl='http://x'\ntps=0\ndestinations=['PL']",
        "connections[0].tps: must be a positive integer",
    ),
    (
        "[[connections]]\nname='a'\ntype='simulator'\nurl='http://x'\ntps=true\n",
        "connections[0].tps: must be a positive integer",
    ),
    (
        "[[connections]]\nname='a'\ntype='simulator'\nurl='http://x'\ntps=5\nheadroom=0.5",
        "connections[0].headroom: must be a fraction from 0 to 0.5",
    ),
    (
        "[[connections]]\nname='a'\ntype='simulator'\nurl='http://x'\ntps=5\ndestinations=['+48x']",
        "connections[0].destinations[0]: must be prefixes",
    ),
    (
        "[[connections]]\nname='a'\ntype='simulator'\nurl='http://x'\ntps=5\n",
        "connections[0].destinations: is empty and fallback is false",
    ),
    (
        "[[connections]]\nname='a'\ntype='simulator'\nurl='http://x'\ntps=5\nfallback=true\n"
        "api_key_env='T_MISSING'",
        "connections[0].api_key_env: environment variable T_MISSING is not set",
    ),
    (
        "[[connections]]\nname='a'\ntype='simulator'\nurl='http://x'\ntps=5\nfallback=true\n"
        "api_key='inline-secret'",
        "connections[0].api_key: unknown key",
    ),
    (
        "[[connections]]\nname='a'\ntype='messageflow'\nurl='http://x'\ntps=5\nfallback=true",
        "connections[0].application_key_env: messageflow needs",
    ),
    (
        "[[connections]]\nname='a'\ntype='simulator'\nurl='http://x'\ntps=5\nfallback=true\n"
        "[[connections]]\nname='a'\ntype='simulator'\nurl='http://y'\ntps=5\nfallback=true",
        "connections[1].name: duplicate connection name 'a'",
    ),
    (
        "[breaker]\nerror_ratio = 2\n[[connections]]\nname='a'\ntype='simulator'\n"
        "url='http://x'\ntps=5\nfallback=true",
        "breaker.error_ratio: must be a number in (0, 1]",
    ),
    ("[[connections]\n", "(syntax):"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_errors_name_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "routes.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_file(str(path), Settings(), {})
    assert str(info.value).startswith("routes.toml: "), str(info.value)
    assert message in str(info.value), str(info.value)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match=r"nowhere\.toml: \(file\): not found"):
        load_file("/nonexistent/nowhere.toml", Settings(), {})


def test_parse_rejects_unknown_top_level_keys() -> None:
    with pytest.raises(ConfigError, match=r"x\.toml: routes: unknown key"):
        parse({"routes": []}, "/etc/x.toml", Settings(), {})


def test_cli_lists_without_secrets(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    os.environ.update(ENV)
    try:
        assert main(["connections", "list", "--config", str(good)]) == 0
    finally:
        for k in ENV:
            os.environ.pop(k)
    out = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in out["connections"]][:2] == ["orange", "orange-backup"]
    assert out["connections"][0]["secrets"]["api_key"] is True
    assert "cb-secret" not in json.dumps(out) and '"k"' not in json.dumps(out)


def test_cli_reports_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "connections.toml"
    path.write_text("[[connections]]\nname='a'\ntype='simulator'\nurl='http://x'\ntps=-1\n")
    assert main(["connections", "list", "--config", str(path)]) == 4  # Exit.INPUT
    err = json.loads(capsys.readouterr().err)
    assert err["message"] == "connections.toml: connections[0].tps: must be a positive integer"


def test_api_refuses_to_start_with_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "connections.toml"
    path.write_text("[[connections]]\nname='a'\ntype='simulator'\nurl='ftp://x'\ntps=1\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSDISPATCH_")}
    env.update(SMSDISPATCH_CONNECTIONS=str(path), SMSDISPATCH_API_PORT="1", PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "dispatcher.cli", "api"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 4, done.stderr  # Exit.INPUT
    assert "connections.toml: connections[0].url: must be an URL" in done.stderr


def test_upstream_status_events_become_reports() -> None:
    event = {
        "type": "message.status",
        "id": "b-1",
        "statusName": "undelivered",
        "statusTime": "2026-11-26T13:57:35.977Z",
        "error": {"code": "001"},
    }
    report = report_from_status_event(event)
    assert report == {"id": "b-1", "stat": "UNDELIV", "err": "001", "done_at": 1795701455.977}
    assert report_from_status_event({**event, "statusName": "sent"})["stat"] == "ACCEPTD"  # type: ignore[index]
    assert report_from_status_event({"type": "message.inbound", "id": "x"}) is None
    assert report_from_status_event({**event, "statusName": "weird"}) is None


def test_the_commented_example_is_valid(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "orange-pl-callback.token").write_text("t\n")
    (tmp_path / "secrets" / "upstream-webhook.secret").write_text("whsec_dGVzdA==\n")
    shutil.copy(ROOT / "deploy" / "connections.example.toml", tmp_path / "c.toml")
    text = (ROOT / "deploy" / "connections.example.toml").read_text()
    env = {v: "x" for v in re.findall(r'_env = "([A-Z0-9_]+)"', text)}
    config = load_file(str(tmp_path / "c.toml"), Settings(), env)
    table = RoutingTable(config)
    assert names(table.tiers("+48501234567", "priority", "bank")) == [
        ["orange-pl"],
        ["orange-pl-backup"],
        ["pl-aggregator", "pl-otp"],
    ]
    assert names(table.tiers("+33612345678", "bulk")) == [["upstream"]]
