"""Listings: filters as the API names them, pages, the empty result, and walking every page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from fakeapi import FakeLog, Script, envelope, message, refused, sync_client
from smsdispatch_client import Page, SmsApiError


def query(script: Script | FakeLog, n: int = 0) -> dict[str, str]:
    return dict(script.requests[n].url.params)


def test_filters_become_the_api_query() -> None:
    script = Script(httpx.Response(200, json=envelope([message()], total=1, offset=0, limit=50)))
    since = datetime(2026, 1, 2, 3, 0, tzinfo=timezone(timedelta(hours=1)))
    sync_client(script).list_messages(
        external_id="order-7",
        phone_number=["+48111222333", "+48111222334"],
        status=["delivered", 22],
        sender="ACME",
        date_from=since,
        date_to=1_767_400_000,
        order_by="status",
        descending=False,
        limit=50,
    )
    assert script.requests[0].url.path == "/v2.1/sms"
    assert query(script) == {
        "externalId": "order-7",
        "phoneNumber": "+48111222333,+48111222334",
        "status": "delivered,22",
        "sender": "ACME",
        "dateFrom": repr(since.timestamp()),
        "dateTo": "1767400000.0",
        "orderBy": "status",
        "orderDirection": "ASC",
        "offset": "0",
        "limit": "50",
    }
    assert since.timestamp() == datetime(2026, 1, 2, 2, 0, tzinfo=UTC).timestamp()


def test_defaults_are_the_newest_hundred() -> None:
    script = Script(httpx.Response(200, json=envelope([message()], total=1)))
    sync_client(script).list_messages()
    assert query(script) == {"offset": "0", "limit": "100", "orderDirection": "DESC"}


def test_a_page_knows_where_the_next_one_starts() -> None:
    data = [message(f"m{i}") for i in range(3)]
    body = envelope(data, total=7, offset=3, limit=3)
    page = sync_client(Script(httpx.Response(200, json=body))).list_messages(offset=3, limit=3)
    assert [m.id for m in page.messages] == ["m0", "m1", "m2"]
    assert (page.total, page.offset, page.limit, page.next_offset) == (7, 3, 3, 6)
    assert page.request_id == "r1"
    last = envelope(data[:1], total=7, offset=6, limit=3)
    page = sync_client(Script(httpx.Response(200, json=last))).list_messages(offset=6, limit=3)
    assert page.next_offset is None


def test_nothing_matching_is_an_empty_page_not_an_error() -> None:
    page = sync_client(Script(refused(404, "no_results"))).list_messages(status="failed")
    assert page == Page([], 0, 0, 100, None, "")
    with pytest.raises(SmsApiError) as caught:
        sync_client(Script(refused(400, "invalid_query", "status"))).list_messages(status="x")
    assert (caught.value.code, caught.value.parameter) == ("invalid_query", "status")
    with pytest.raises(SmsApiError) as unauthorized:
        sync_client(Script(refused(401, "unauthorized"))).list_messages()
    assert unauthorized.value.status == 401


def test_statuses_is_its_own_endpoint() -> None:
    log = FakeLog(3)
    page = sync_client(log).list_statuses(sender="ACME", limit=2)
    assert log.requests[0].url.path == "/v2.1/sms/statuses"
    assert query(log)["sender"] == "ACME" and [m.id for m in page.messages] == ["m0002", "m0001"]


@pytest.mark.parametrize(
    ("kwargs", "error", "names"),
    [
        ({"date_from": datetime(2026, 1, 1)}, ValueError, "date_from"),
        ({"limit": 1001}, ValueError, "limit"),
        ({"limit": 0}, ValueError, "limit"),
        ({"offset": -1}, ValueError, "offset"),
        ({"colour": "red"}, TypeError, "colour"),
    ],
)
def test_bad_arguments_are_refused_before_any_request(
    kwargs: dict[str, object], error: type[Exception], names: str
) -> None:
    script = Script()
    with pytest.raises(error, match=names):
        sync_client(script).list_messages(**kwargs)  # type: ignore[arg-type]
    if "offset" not in kwargs:  # a walk has no offset; its page size is checked like a limit
        walk = {"page_size" if k == "limit" else k: v for k, v in kwargs.items()}
        with pytest.raises(error, match=names.replace("limit", "page_size")):
            next(sync_client(script).iter_messages(**walk))  # type: ignore[arg-type]
    assert script.requests == []


def test_iter_messages_walks_every_page() -> None:
    log = FakeLog(25)
    got = [m.id for m in sync_client(log).iter_messages(page_size=10, sender="ACME")]
    assert got == [f"m{i:04d}" for i in reversed(range(25))]
    assert [query(log, n)["offset"] for n in range(len(log.requests))] == ["0", "10", "20"]
    assert all(query(log, n)["sender"] == "ACME" for n in range(3))


def test_iter_pages_yields_pages_and_stops_on_an_exact_multiple() -> None:
    log = FakeLog(20)
    pages = list(sync_client(log).iter_pages(page_size=10))
    assert [len(p.messages) for p in pages] == [10, 10] and len(log.requests) == 2
    assert pages[0].total == 20 and pages[1].next_offset is None


def test_an_empty_listing_yields_nothing() -> None:
    log = FakeLog(0)
    assert list(sync_client(log).iter_messages()) == [] and len(log.requests) == 1


def test_messages_arriving_during_a_walk_are_neither_repeated_nor_lost() -> None:
    log = FakeLog(25)
    log.arrivals = {2: 3, 3: 4}  # 3 new before the second page, 4 before the third
    got = [m.id for m in sync_client(log).iter_messages(page_size=10)]
    assert len(got) == len(set(got)), "a message pushed onto the next page is yielded once"
    assert set(got) >= {f"m{i:04d}" for i in range(25)}, "every message of the start is there"
