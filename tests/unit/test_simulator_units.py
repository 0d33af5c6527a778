"""Carrier simulator: pure units (config validation, fault decisions, SMS helpers, state)."""

from __future__ import annotations

from typing import Any

import pytest

from simulator import faults as F
from simulator.config import ConfigError, SimConfig
from simulator.faults import Faults, format_retry_after
from simulator.sms import parts_for, split_text
from simulator.state import SimState


def test_config_apply_validates_atomically() -> None:
    c = SimConfig()
    assert c.apply({"error_rate": 0.5, "tps_cap": 10}) == ["error_rate", "tps_cap"]
    assert c.error_rate == 0.5 and isinstance(c.tps_cap, float)
    bad_updates: list[dict[str, Any]] = [
        {"error_rate": 1.5},
        {"error_rate": True},
        {"max_batch": 0},
        {"max_batch": 1.5},
        {"dlr_url": "ftp://x"},
        {"dlr_mix": {"DELIVRD": -1}},
        {"dlr_mix": {}},
        {"reject_prefixes": "+999"},
        {"throttle_burst_every_s": 1, "throttle_burst_len_s": 2},
        {"unknown": 1},
        {"latency_ms": float("nan")},
    ]
    for bad in bad_updates:
        with pytest.raises(ConfigError):
            c.apply(bad)
    assert c.error_rate == 0.5
    assert c.effective_tps_burst() == 1.0
    c.apply({"tps_cap": 500})
    assert c.effective_tps_burst() == 50.0
    c.apply({"tps_burst": 7})
    assert c.effective_tps_burst() == 7.0
    assert c.copy() == c and c.copy() is not c


def test_format_retry_after() -> None:
    assert format_retry_after(0.05) == "0.05"
    assert format_retry_after(0.0001) == "0.001"
    assert format_retry_after(1.0) == "1"
    assert format_retry_after(0.0123) == "0.013"
    assert format_retry_after(12.2) == "13"


def test_token_bucket_on_own_clock() -> None:
    f = Faults(SimConfig(tps_cap=100, tps_burst=10))
    t = 1000.0
    f.reset_bucket(now=t)
    assert [f.check(t, 1)[0] for _ in range(10)] == [F.OK] * 10
    verdict, wait = f.check(t, 1)
    assert verdict == F.THROTTLE_TPS and wait == pytest.approx(0.01)
    assert f.check(t + 0.01, 1)[0] == F.OK
    # a batch bigger than the bucket waits for a full bucket, then leaves it in debt
    verdict, wait = f.check(t + 0.01, 50)
    assert verdict == F.THROTTLE_TPS and wait == pytest.approx(0.1)
    assert f.check(t + 0.11, 50)[0] == F.OK
    verdict, wait = f.check(t + 0.11, 1)
    assert verdict == F.THROTTLE_TPS and wait == pytest.approx(0.41)
    # accepted rate over a long simulated run equals the cap
    accepted = 0
    now = t + 10
    f.reset_bucket(now=now)
    for i in range(100_000):
        if f.check(now + i * 0.0001, 1)[0] == F.OK:
            accepted += 1
    assert accepted == pytest.approx(100 * 10 + 10, abs=2)


def test_faults_seeded() -> None:
    def seq() -> list[int]:
        f = Faults(SimConfig(error_rate=0.2, timeout_rate=0.1, throttle_rate=0.1, seed=42))
        return [f.check(0.0, 1)[0] for _ in range(500)]

    a, b = seq(), seq()
    assert a == b
    assert {F.OK, F.ERROR, F.TIMEOUT, F.THROTTLE} == set(a)
    f = Faults(SimConfig())
    assert not f.active and f.check(0.0, 1) == (F.OK, 0.0)


def test_reject_prefix_matching() -> None:
    f = Faults(SimConfig(reject_prefixes=["+999", "4812"]))
    assert f.is_rejected("+999123") and f.is_rejected("999123")
    assert f.is_rejected("+48123") and not f.is_rejected("+48111")
    assert not Faults(SimConfig()).is_rejected("+999")


def test_latency_jitter_bounds() -> None:
    f = Faults(SimConfig(latency_ms=10, latency_jitter_ms=20))
    values = [f.latency_s() for _ in range(200)]
    assert min(values) == 0.0 and max(values) <= 0.030
    assert f.has_latency and not Faults(SimConfig()).has_latency


def test_sms_parts() -> None:
    assert parts_for("") == 1
    assert parts_for("a" * 160) == 1
    assert parts_for("a" * 161) == 2
    assert parts_for("a" * 306) == 2 and parts_for("a" * 307) == 3
    assert parts_for("[" * 80) == 1 and parts_for("[" * 81) == 2  # extension chars count 2
    assert parts_for("ż" * 70) == 1 and parts_for("ż" * 71) == 2
    assert split_text("abcdefg", 3) == ["abc", "de", "fg"]
    assert split_text("", 1) == [""]
    with pytest.raises(ValueError):
        split_text("x", 0)


def test_state_duplicates_and_reset() -> None:
    s = SimState()
    assert s.record("a", "+481", 100.5, 1, 3) == 1
    assert s.record("a", "+481", 100.7, 1, 3) == 2
    assert s.record("b", "+482", 101.2, 2, 200) == 3
    st = s.stats()
    assert st["submits"] == 3 and st["unique_refs"] == 2
    assert st["duplicate_refs"] == 1 and st["duplicate_submits"] == 1
    assert st["per_second"] == {"100": 2, "101": 1}
    assert st["first_at"] == 100.5 and st["last_at"] == 101.2
    rec = s.lookup("a")
    assert rec is not None and rec.carrier_id == "sim-1" and s.submit_count("a") == 2
    assert [d["id"] for d in s.iter_submits(1)] == ["sim-2", "sim-3"]
    s.reset()
    assert s.stats()["submits"] == 0 and s.lookup("a") is None
    assert s.record("a", "+481", 1.0, 1, 1) == 4  # carrier ids are never reused
