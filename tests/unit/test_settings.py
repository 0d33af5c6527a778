"""Settings refuse mistakes: strict parsing naming the variable and what it accepts, secrets
from files, unknown variables warned about (refused by ``config check``), and every process
stopping on a bad value with that message instead of a traceback."""

from __future__ import annotations

import logging
import os
import pathlib
import subprocess
import sys

import pytest

from dispatcher import config_env
from dispatcher.config import ConfigError, Settings
from dispatcher.config_env import specs

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("variable", "value", "accepts"),
    [
        (
            "SMSDISPATCH_WEBHOOK_ALLOW_PRIVATE",
            "ture",
            "a boolean (true/false, 1/0, yes/no, on/off)",
        ),
        ("SMSDISPATCH_BILLING", "2", "a boolean"),
        ("SMSDISPATCH_API_PORT", "eighty", "an integer ≥ 0 and ≤ 65535"),
        ("SMSDISPATCH_API_PORT", "70000", "an integer ≥ 0 and ≤ 65535"),
        ("SMSDISPATCH_CHUNK_SIZE", "1.5", "an integer ≥ 1"),
        ("SMSDISPATCH_CARRIER_TPS", "fast", "a number > 0"),
        ("SMSDISPATCH_CARRIER_TPS", "nan", "a number > 0"),
        ("SMSDISPATCH_CARRIER_TPS", "-5", "a number > 0"),
        ("SMSDISPATCH_RATE_HEADROOM", "0.7", "a number ≥ 0 and < 0.5"),
        ("SMSDISPATCH_LOG_FORMAT", "xml", "one of json, console"),
        ("SMSDISPATCH_LOG_LEVEL", "LOUD", "one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("SMSDISPATCH_DEFAULT_REGION", "POL", "empty or a two-letter region code"),
        ("SMSDISPATCH_WORKER_METRICS_PORT", "none", "an integer ≥ 0 and ≤ 65535"),
        ("SMSDISPATCH_CARRIER_URL", "127.0.0.1:9090", "an `http://` or `https://` URL"),
    ],
)
def test_a_bad_value_names_the_variable_and_what_it_accepts(
    variable: str, value: str, accepts: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({variable: value})
    (problem,) = caught.value.problems
    assert problem.startswith(f"{variable}={value!r}: expected {accepts}"), problem


def test_every_bad_variable_is_reported_at_once() -> None:
    env = {
        "SMSDISPATCH_API_PORT": "x",
        "SMSDISPATCH_BILLING": "maybe",
        "SMSDISPATCH_LINKS_PORT": "8",
    }
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert [p.split("=", 1)[0] for p in caught.value.problems] == [
        "SMSDISPATCH_API_PORT",
        "SMSDISPATCH_BILLING",
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("YES", True), ("On", True), ("0", False), ("off", False)],
)
def test_booleans_accept_the_usual_spellings(value: str, expected: bool) -> None:
    assert Settings.from_env(
        {"SMSDISPATCH_WEBHOOK_ALLOW_PRIVATE": value}
    ).webhook_allow_private is (expected)


def test_values_are_typed_and_empty_means_the_default() -> None:
    s = Settings.from_env(
        {
            "SMSDISPATCH_LOG_LEVEL": "debug",
            "SMSDISPATCH_DEFAULT_REGION": "pl",
            "SMSDISPATCH_MAX_PARTS": " 4 ",
            "SMSDISPATCH_WORKER_METRICS_PORT": "0",
            "SMSDISPATCH_CARRIER_TPS": "",
        }
    )
    assert (s.log_level, s.default_region, s.max_parts, s.worker_metrics_port) == (
        "DEBUG",
        "PL",
        4,
        0,
    )
    assert s.carrier_tps == Settings().carrier_tps
    assert Settings.from_env({}) == Settings()


def test_secret_values_are_never_shown() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(
            {
                "DATABASE_URL": "mysql://root:hunter2@db.internal/sms",
                "REDIS_URL": "hunter3 is no url",
            }
        )
    text = str(caught.value)
    assert "hunter2" not in text and "hunter3" not in text
    assert "DATABASE_URL='mysql://***@db.internal/…'" in text
    assert "REDIS_URL=<hidden>" in text


def test_secrets_come_from_files(tmp_path: pathlib.Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")  # as `echo` writes it
    db = tmp_path / "db"
    db.write_text("postgresql://smsd:pw@db.internal/smsdispatch")
    s = Settings.from_env(
        {"SMSDISPATCH_CARRIER_TOKEN_FILE": str(token), "DATABASE_URL_FILE": str(db)}
    )
    assert s.carrier_token == "s3cret-token"
    assert s.database_url == "postgresql://smsd:pw@db.internal/smsdispatch"
    # A file's value is parsed like any other.
    port = tmp_path / "port"
    port.write_text("eighty")
    with pytest.raises(ConfigError, match=r"SMSDISPATCH_API_PORT_FILE='eighty': expected an int"):
        Settings.from_env({"SMSDISPATCH_API_PORT_FILE": str(port)})


def test_a_secret_file_must_be_readable_and_alone(tmp_path: pathlib.Path) -> None:
    missing = str(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match=r"SMSDISPATCH_CARRIER_TOKEN_FILE=.*cannot be read"):
        Settings.from_env({"SMSDISPATCH_CARRIER_TOKEN_FILE": missing})
    path = tmp_path / "t"
    path.write_text("a")
    both = {"SMSDISPATCH_CARRIER_TOKEN": "b", "SMSDISPATCH_CARRIER_TOKEN_FILE": str(path)}
    with pytest.raises(ConfigError, match="are both set: set one"):
        Settings.from_env(both)


def test_an_unknown_variable_is_warned_about_once_naming_the_closest_setting(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(config_env, "_warned", set())
    monkeypatch.setenv("SMSDISPATCH_WEBHOOK_ALLOW_PRIVAT", "1")
    monkeypatch.setenv("SMSDISPATCH_APP_KEY", "client-side")  # the client library's: fine
    with caplog.at_level(logging.WARNING, logger="smsdispatch.config"):
        s = Settings.from_env()
        Settings.from_env()
    assert s.webhook_allow_private is False  # ignored, not guessed
    assert [r.getMessage() for r in caplog.records] == [
        "SMSDISPATCH_WEBHOOK_ALLOW_PRIVAT is not a setting and is ignored "
        "(did you mean SMSDISPATCH_WEBHOOK_ALLOW_PRIVATE?)"
    ]


def test_every_setting_is_described_and_has_its_own_variable() -> None:
    all_specs = specs(Settings)
    assert [s.name for s in all_specs if not s.doc.strip()] == []
    names = [s.env for s in all_specs]
    assert len(names) == len(set(names))
    assert not set(names) & config_env.NOT_SETTINGS


# -- every process stops on a bad value, naming it, without a traceback ------------------------
PROCESSES = [
    ["api"],
    ["worker", "--lane", "priority"],
    ["worker", "--lane", "bulk"],
    ["scheduler"],
    ["exporter"],
    ["links"],
    ["smpp"],
    ["migrate"],
    ["run", "--no-demo"],
    ["config", "check"],
]


def _cli(args: list[str], env: dict[str, str], cwd: pathlib.Path) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SMSDISPATCH_")}
    return subprocess.run(
        [sys.executable, "-m", "dispatcher.cli", *args],
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("args", PROCESSES, ids=lambda a: " ".join(a))
def test_every_process_stops_on_a_bad_value_with_its_name(
    args: list[str], tmp_path: pathlib.Path
) -> None:
    env = {"SMSDISPATCH_WEBHOOK_ALLOW_PRIVATE": "ture", "DATABASE_URL": "sqlite:///x.db"}
    result = _cli(args, env, tmp_path)
    assert result.returncode == 4, result.stderr
    assert "SMSDISPATCH_WEBHOOK_ALLOW_PRIVATE='ture': expected a boolean" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.db").exists() and not (tmp_path / "var").exists()  # nothing ran


def test_config_check_refuses_unknown_variables_and_passes_a_good_environment(
    tmp_path: pathlib.Path,
) -> None:
    typo = _cli(["--json", "config", "check"], {"SMSDISPATCH_CHUNK_SIZ": "10"}, tmp_path)
    assert typo.returncode == 4
    assert "SMSDISPATCH_CHUNK_SIZ is not a setting (did you mean SMSDISPATCH_CHUNK_SIZE?)" in (
        typo.stderr
    )
    good = _cli(["--json", "config", "check"], {"SMSDISPATCH_CHUNK_SIZE": "10"}, tmp_path)
    assert good.returncode == 0 and '"valid": true' in good.stdout, good.stderr


def test_a_process_reads_its_database_url_from_a_file(tmp_path: pathlib.Path) -> None:
    """``DATABASE_URL_FILE`` end to end: ``smsdispatch migrate`` builds the schema there."""
    db = tmp_path / "from-file.db"
    secret = tmp_path / "database-url"
    secret.write_text(f"sqlite:///{db}\n")
    result = _cli(["--json", "migrate"], {"DATABASE_URL_FILE": str(secret)}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert db.stat().st_size > 0
