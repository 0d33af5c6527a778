"""Listing parameters in the spellings the original API's clients send (issue 16)."""

from __future__ import annotations

import pytest

from dispatcher.api.query import direction, order_key, phones, unix_time
from dispatcher.errors import ApiError
from dispatcher.store.queries import ORDER_COLUMNS


@pytest.mark.parametrize(
    ("given", "key"),
    [
        ("id", "id"),
        ("ID", "id"),
        ("createTime", "createTime"),
        ("createtime", "createTime"),
        ("CREATETIME", "createTime"),
        ("statusTime", "statusTime"),
        ("externalId", "externalId"),
        ("status", "status"),
        ("phoneNumber", "phoneNumber"),
        ("sender", "sender"),
        (" status ", "status"),
    ],
)
def test_order_keys_in_any_case(given: str, key: str) -> None:
    assert order_key(given) == key


def test_an_unknown_order_key_names_the_parameter_and_the_accepted_ones() -> None:
    with pytest.raises(ApiError) as err:
        order_key("DROP TABLE")
    assert (err.value.code, err.value.parameter, err.value.status) == (
        "invalid_query",
        "orderBy",
        400,
    )
    assert all(k in err.value.message for k in ORDER_COLUMNS)


@pytest.mark.parametrize(("given", "descending"), [("ASC", False), ("asc", False), ("Desc", True)])
def test_directions_in_any_case(given: str, descending: bool) -> None:
    assert direction(given) is descending


def test_an_unknown_direction_is_refused() -> None:
    with pytest.raises(ApiError) as err:
        direction("up")
    assert err.value.parameter == "orderDirection"


def test_a_plus_lost_to_query_decoding_is_restored() -> None:
    # ?phoneNumber=+48500100200,+48600111222 unencoded arrives with spaces for the pluses.
    assert phones(" 48500100200, 48600111222", None) == ("+48500100200", "+48600111222")


def test_a_national_number_is_not_given_a_plus() -> None:
    assert phones("+48500100200, 600111222", "PL") == ("+48500100200", "+48600111222")


def test_a_number_that_is_none_either_way_names_the_parameter() -> None:
    with pytest.raises(ApiError) as err:
        phones(" 12", None)
    assert (err.value.parameter, err.value.value) == ("phoneNumber", "12")


def test_times_with_a_decoded_plus_offset() -> None:
    utc = unix_time("2026-01-01T10:00:00Z", "dateFrom")
    assert unix_time("2026-01-01T11:00:00 01:00", "dateFrom") == utc
    assert unix_time("2026-01-01T11:00:00+01:00", "dateFrom") == utc
    assert unix_time("2026-01-01 10:00:00", "dateFrom") == utc
    assert unix_time(str(int(utc or 0)), "dateFrom") == utc
    with pytest.raises(ApiError):
        unix_time("yesterday", "dateTo")
