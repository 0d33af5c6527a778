"""Quiet hours' arithmetic: windows, zones from numbers, the next opening (DST included)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from dispatcher.sms.quiet_hours import (
    InvalidWindow,
    SendWindow,
    next_open,
    parse_window,
    parse_zones,
    zones_for,
)

WARSAW = ZoneInfo("Europe/Warsaw")


def at(zone: ZoneInfo, year: int, month: int, day: int, hour: int, minute: int) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=zone).timestamp()


def test_windows_parse_and_refuse_with_a_reason() -> None:
    assert parse_window("08:00-21:00") == SendWindow(480, 1260)
    assert parse_window(" 8:30 - 24:00 ") == SendWindow(510, 0)
    assert str(parse_window("22:00-06:00")) == "22:00-06:00"
    for bad, words in (
        ("8-21", "HH:MM-HH:MM"),
        ("25:00-06:00", "hours"),
        ("08:60-09:00", "minutes"),
        ("09:00-09:00", "any hour"),
        ("", "HH:MM"),
    ):
        with pytest.raises(InvalidWindow, match=words):
            parse_window(bad)


def test_a_window_across_midnight_is_open_at_night_only() -> None:
    night = parse_window("22:00-06:00")
    assert night.is_open(23 * 60) and night.is_open(5 * 60 + 59)
    assert not night.is_open(6 * 60) and not night.is_open(12 * 60)


def test_zones_come_from_the_number_unless_the_country_is_configured() -> None:
    assert zones_for("+48600111222", {}) == ("Europe/Warsaw",)
    assert zones_for("+12125551234", {}) == ("America/New_York",)
    assert len(zones_for("+79161234567", {})) > 5  # a Russian mobile: any of its zones
    assert zones_for("+79161234567", parse_zones("RU=Europe/Moscow")) == ("Europe/Moscow",)
    assert zones_for("+999", {}) == ("UTC",)


def test_zone_settings_name_the_bad_entry() -> None:
    assert parse_zones("ru=Europe/Moscow, US=America/Chicago") == {
        "RU": "Europe/Moscow",
        "US": "America/Chicago",
    }
    with pytest.raises(InvalidWindow, match="Mars/Olympus"):
        parse_zones("PL=Mars/Olympus")
    with pytest.raises(InvalidWindow, match="COUNTRY=Zone"):
        parse_zones("Poland=Europe/Warsaw")


def test_23_00_local_waits_for_08_00_the_next_morning() -> None:
    window = parse_window("08:00-21:00")
    late = at(WARSAW, 2026, 12, 7, 23, 0)
    assert next_open(late, window, ["Europe/Warsaw"]) == at(WARSAW, 2026, 12, 8, 8, 0)
    early = at(WARSAW, 2026, 12, 8, 6, 30)
    assert next_open(early, window, ["Europe/Warsaw"]) == at(WARSAW, 2026, 12, 8, 8, 0)
    noon = at(WARSAW, 2026, 12, 8, 12, 0)
    assert next_open(noon, window, ["Europe/Warsaw"]) == noon


def test_the_opening_follows_daylight_saving_time() -> None:
    # The clocks go forward on 2027-03-28 in Warsaw: 08:00 is then 06:00 UTC, not 07:00.
    window = parse_window("08:00-21:00")
    opens = next_open(at(WARSAW, 2027, 3, 27, 22, 0), window, ["Europe/Warsaw"])
    assert opens == at(WARSAW, 2027, 3, 28, 8, 0)
    assert datetime.fromtimestamp(opens, ZoneInfo("UTC")).hour == 6


def test_several_zones_wait_until_the_window_is_open_in_all() -> None:
    window = parse_window("08:00-21:00")
    zones = ["Europe/London", "Europe/Warsaw"]  # Warsaw is an hour ahead
    london = ZoneInfo("Europe/London")
    # 07:30 in London is 08:30 in Warsaw: open there, not in London yet.
    opens = next_open(at(london, 2026, 12, 8, 7, 30), window, zones)
    assert opens == at(london, 2026, 12, 8, 8, 0)
    # 20:30 in London is 21:30 in Warsaw: closed there until the next morning (07:00 London).
    opens = next_open(at(london, 2026, 12, 8, 20, 30), window, zones)
    assert opens == at(london, 2026, 12, 9, 8, 0)


def test_zones_whose_windows_never_meet_fall_back_to_the_first() -> None:
    window = parse_window("08:00-09:00")
    zones = ["Asia/Vladivostok", "Europe/Moscow"]  # 7 hours apart: a 1-hour window never meets
    start = at(ZoneInfo("Asia/Vladivostok"), 2026, 12, 8, 12, 0)
    assert next_open(start, window, zones) == at(ZoneInfo("Asia/Vladivostok"), 2026, 12, 9, 8, 0)
