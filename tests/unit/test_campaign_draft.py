"""The browser campaign's draft: reading recipients, placeholders, rejections, windows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dispatcher.panel.campaign_draft import (
    MAX_ROWS,
    DraftError,
    build_draft,
    check_name,
    parse_clock,
    parse_schedule,
    placeholders,
    start_in_window,
)


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_csv_rows_become_personalised_messages_and_bad_rows_say_why() -> None:
    data = (
        "\ufeffFirst Name,phone,order\n"
        "Ann,+48 111 222 333,A-1\n"
        "Bob,not a number,A-2\n"
        "Ann again,0048111222333,A-3\n"
        "\n"
        "Zoë,+48111222334,A-4\n"
    ).encode()
    draft = build_draft("Hi {First Name}, order {order} shipped", data, "", None, 10)
    assert [(r.line, r.phone, r.text) for r in draft.recipients] == [
        (2, "+48111222333", "Hi Ann, order A-1 shipped"),
        (6, "+48111222334", "Hi Zoë, order A-4 shipped"),
    ]
    assert [r.encoding for r in draft.recipients] == ["gsm7", "ucs2"]  # ë is not GSM-7
    assert [(r.line, r.reason.split(" (")[0]) for r in draft.rejected] == [
        (3, "not a phone number"),
        (4, "duplicate of an earlier row"),
    ]
    assert draft.parts == 2 and draft.encodings == {"gsm7": 1, "ucs2": 1}


def test_pasted_numbers_in_any_separator_and_the_region() -> None:
    draft = build_draft("Hello {phone}", None, "111 222 333\n+48111222334; 48111222335", "PL", 10)
    assert [r.phone for r in draft.recipients] == ["+48111222333", "+48111222334", "+48111222335"]
    assert draft.recipients[0].text == "Hello 111 222 333"


def test_an_unknown_placeholder_names_the_columns() -> None:
    with pytest.raises(DraftError) as exc:
        build_draft("Hi {name}", b"phone,first\n+48111222333,Ann\n", "", None, 10)
    assert exc.value.field == "text"
    assert "{name}" in exc.value.message and "{first}" in exc.value.message
    assert placeholders("{a} {b} {a} {not closed") == ["a", "b"]


@pytest.mark.parametrize(
    ("text", "data", "pasted", "field"),
    [
        ("", None, "+48111222333", "text"),
        ("hi", None, "", "numbers"),
        ("hi", b"name,city\nAnn,Krakow\n", "", "file"),  # no phone column
        ("hi", b"", "", "numbers"),
        ("hi", b"phone\nnope\n", "", "file"),  # no row can be sent
    ],
)
def test_a_form_that_cannot_be_a_campaign_names_its_field(
    text: str, data: bytes | None, pasted: str, field: str
) -> None:
    with pytest.raises(DraftError) as exc:
        build_draft(text, data, pasted, None, 10)
    assert exc.value.field == field


def test_too_many_rows_and_too_long_texts() -> None:
    big = "phone\n" + "".join(f"+4850{n:07d}\n" for n in range(MAX_ROWS + 1))
    with pytest.raises(DraftError, match="More than"):
        build_draft("hi", big.encode(), "", None, 10)
    draft = build_draft("{long}", b"phone,long\n+48111222333," + b"x" * 300 + b"\n", "", None, 2)
    assert draft.recipients[0].parts == 2
    with pytest.raises(DraftError, match="line 2"):
        build_draft("{long}", b"phone,long\n+48111222333," + b"x" * 400 + b"\n", "", None, 1)


def test_names_times_and_windows() -> None:
    assert check_name("  spring sale 2026 ") == "spring sale 2026"
    for bad in ("", "-x", "a/b", "x" * 65):
        with pytest.raises(DraftError):
            check_name(bad)
    assert parse_clock("9:05", "window") == 545 and parse_clock("", "window") is None
    with pytest.raises(DraftError):
        parse_clock("25:00", "window")
    now = ts("2026-12-07T10:00:00")
    assert parse_schedule("2026-12-07T12:30", now) == ts("2026-12-07T12:30:00")
    assert parse_schedule("", now) is None
    for bad in ("2026-12-06T10:00", "tomorrow", "2028-01-01T00:00"):
        with pytest.raises(DraftError):
            parse_schedule(bad, now)
    day = (9 * 60, 20 * 60)
    assert start_in_window(ts("2026-12-07T10:00:00"), day) == ts("2026-12-07T10:00:00")
    assert start_in_window(ts("2026-12-07T07:10:00"), day) == ts("2026-12-07T09:00:00")
    assert start_in_window(ts("2026-12-07T21:00:00"), day) == ts("2026-12-08T09:00:00")
    night = (22 * 60, 6 * 60)  # spans midnight
    assert start_in_window(ts("2026-12-07T23:00:00"), night) == ts("2026-12-07T23:00:00")
    assert start_in_window(ts("2026-12-07T03:00:00"), night) == ts("2026-12-07T03:00:00")
    assert start_in_window(ts("2026-12-07T12:00:00"), night) == ts("2026-12-07T22:00:00")
    assert start_in_window(ts("2026-12-07T12:00:00"), None) == ts("2026-12-07T12:00:00")


@pytest.mark.parametrize(
    "data",
    [
        b"phone\x00,name\n+48111222333,Ann\n",  # NUL: a spreadsheet file, not a CSV
        b'phone,name\n+48111222333,"' + b"x" * 200_000 + b'"\n',  # over the csv field limit
        b'"' + b"p" * 200_000 + b'"\n',  # the header itself
    ],
)
def test_a_file_that_is_not_a_readable_csv_is_a_field_error(data: bytes) -> None:
    with pytest.raises(DraftError) as exc:
        build_draft("hi", data, "", None, 10)
    assert exc.value.field == "file" and "CSV" in exc.value.message


def test_nul_characters_never_reach_the_log() -> None:
    with pytest.raises(DraftError):
        build_draft("hi\x00", None, "+48111222333", None, 10)
    draft = build_draft("hi", None, "+48111222333\n12\x00ab", None, 10)
    assert [r.phone for r in draft.recipients] == ["+48111222333"]
    assert "\x00" not in draft.rejected[0].phone
