"""Settings from the environment, and logs that never carry bodies or secrets."""

from __future__ import annotations

import json

import pytest
import structlog

from dispatcher.config import Settings
from dispatcher.ops.logs import configure
from workers.sending.retry import RetryPolicy


def test_settings_from_env() -> None:
    s = Settings.from_env(
        {
            "REDIS_URL": "redis://x:1/2",
            "SMSDISPATCH_API_PORT": "9000",
            "SMSDISPATCH_CARRIER_TPS": "12.5",
            "DATABASE_URL": "sqlite:///a.db",
        }
    )
    assert (s.redis_url, s.api_port, s.carrier_tps, s.database_url) == (
        "redis://x:1/2",
        9000,
        12.5,
        "sqlite:///a.db",
    )
    assert Settings.from_env({}).api_port == 8080


def test_bad_setting_names_the_variable() -> None:
    with pytest.raises(ValueError, match="SMSDISPATCH_API_PORT"):
        Settings.from_env({"SMSDISPATCH_API_PORT": "eighty"})


def test_reconciler_must_outwait_the_carrier_timeout() -> None:
    with pytest.raises(ValueError, match="SENDING_STALE_S"):
        Settings.from_env(
            {"SMSDISPATCH_SENDING_STALE_S": "5", "SMSDISPATCH_CARRIER_TIMEOUT_S": "10"}
        )


def test_logs_redact_bodies_and_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    configure("INFO", "json")
    structlog.get_logger().info(
        "x",
        text="Your code is 123456",
        authorization="s3cret",
        message_id="m1",
        webhook_secret="whsec",
    )
    line = capsys.readouterr().err.strip().splitlines()[-1]
    event = json.loads(line)
    assert event["message_id"] == "m1"
    assert "123456" not in line and "s3cret" not in line and "whsec" not in line


def test_backoff_grows_with_jitter_and_honours_retry_after() -> None:
    p = RetryPolicy(max_attempts=5, base_s=1.0, cap_s=8.0)
    for attempt, (lo, hi) in enumerate([(0.5, 1), (1, 2), (2, 4), (4, 8), (4, 8)], start=1):
        assert lo <= p.delay(attempt) <= hi
    assert p.delay(1, retry_after=30.0) == 30.0
    assert not p.exhausted(4) and p.exhausted(5)
