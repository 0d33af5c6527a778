"""Number look-ups: the carrier answers we accept or refuse, and the simulator's answers."""

from __future__ import annotations

from typing import Any

import pytest

from dispatcher.lookup.carriers import LookupFailed, parse_answer
from dispatcher.routing import ConnectionConfig
from simulator import hlr
from simulator.config import ConfigError, SimConfig

HTTP = ConnectionConfig("c", "http_json", "http://127.0.0.1:1", 10.0, lookups=True)
UPSTREAM = ConnectionConfig("u", "messageflow", "http://127.0.0.1:1", 10.0, lookups=True)
GOOD = {
    "phone": "+48500100200",
    "valid": True,
    "country": "PL",
    "mcc": "260",
    "mnc": "01",
    "network": "Net",
    "ported": False,
    "reachable": True,
}


def test_the_generic_carrier_answer_is_read_field_by_field() -> None:
    r = parse_answer(HTTP, "+48500100200", GOOD, 5.0)
    assert (r.valid, r.country, r.mcc, r.mnc, r.network, r.ported, r.reachable) == (
        True,
        "PL",
        "260",
        "01",
        "Net",
        False,
        True,
    )
    assert (r.connection, r.looked_up_at, r.phone) == ("c", 5.0, "+48500100200")


def test_an_upstream_smsdispatch_answer_is_its_data_element() -> None:
    body = {
        "data": [
            {
                "phoneNumber": "+48500100200",
                "valid": True,
                "country": "PL",
                "network": {"mcc": "260", "mnc": "02", "name": "Up"},
                "ported": True,
                "reachable": None,
            }
        ]
    }
    r = parse_answer(UPSTREAM, "+48500100200", body, 1.0)
    assert (r.mcc, r.mnc, r.network, r.ported, r.reachable) == ("260", "02", "Up", True, None)


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {},
        {"valid": "yes"},
        {**GOOD, "mcc": 260},
        {**GOOD, "ported": "no"},
        {**GOOD, "reachable": 1},
    ],
)
def test_answers_outside_the_contract_are_failures(body: Any) -> None:
    with pytest.raises(LookupFailed) as failed:
        parse_answer(HTTP, "+48500100200", body, 0.0)
    assert failed.value.connection == "c"


def test_the_simulator_answers_deterministically() -> None:
    plain = hlr.lookup("+48500100202", (), (), ())
    assert plain == {
        "phone": "+48500100202",
        "valid": True,
        "country": "PL",
        "mcc": "260",
        "mnc": "03",
        "network": "Simulated PL 03",
        "ported": False,
        "reachable": True,
    }
    assert hlr.lookup("48500100202", (), ("48500",), ())["mnc"] == "01"  # ported: next network
    assert hlr.lookup("+48500100202", (), (), ("4850",))["reachable"] is False
    gone = hlr.lookup("+48500100202", ("485001",), (), ())
    assert (gone["valid"], gone["network"], gone["reachable"]) == (False, None, False)
    assert hlr.lookup("+9991234", (), (), ())["valid"] is False  # no country
    assert hlr.lookup("+35312345678", (), (), ())["mcc"] == hlr.PRIVATE_MCC


def test_the_simulator_config_takes_lookup_prefix_lists() -> None:
    c = SimConfig()
    c.apply({"hlr_ported_prefixes": ["+48511"], "hlr_absent_prefixes": ["+48512"]})
    assert (c.hlr_ported_prefixes, c.hlr_absent_prefixes) == (["+48511"], ["+48512"])
    with pytest.raises(ConfigError):
        c.apply({"hlr_ported_prefixes": "+48"})


def test_connections_answer_lookups_when_the_file_says_so() -> None:
    from dispatcher.config import Settings
    from dispatcher.routing import ConfigError as RoutingError
    from dispatcher.routing.loader import implicit, parse

    def conn(**extra: Any) -> dict[str, Any]:
        return {"name": "x", "url": "http://127.0.0.1:1", "tps": 1, "fallback": True, **extra}

    settings = Settings()
    read = [
        parse({"connections": [conn(type=t, **extra)]}, "c.toml", settings, {}).connections[0]
        for t, extra in (("simulator", {}), ("http_json", {}), ("http_json", {"lookups": True}))
    ]
    assert [c.lookups for c in read] == [True, False, True]
    assert implicit(settings).connections[0].lookups is True
    with pytest.raises(RoutingError, match=r"connections\[0\]\.lookups: must be a boolean"):
        parse({"connections": [conn(type="simulator", lookups="yes")]}, "c.toml", settings, {})
