"""The CSV reader of ``campaign upload`` streams, and refuses bad rows with their line."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from dispatcher.cli.csv_upload import Row, read_rows


class Endless(io.RawIOBase):
    """A CSV that never ends: reading it all would never return."""

    def __init__(self) -> None:
        self.lines = self._lines()
        self.served = 0

    def _lines(self) -> Iterator[bytes]:
        yield b"phone,name\n"
        n = 0
        while True:
            n += 1
            yield f"+4860{n:07d},Ann {n}\n".encode()

    def __iter__(self) -> Iterator[bytes]:  # type: ignore[override]
        for line in self.lines:
            self.served += 1
            yield line


def test_rows_are_read_lazily() -> None:
    source = Endless()
    rows = read_rows(source, "Hi {name}", [0], lambda r, why: None)  # type: ignore[arg-type]
    first = [next(rows) for _ in range(3)]
    assert [r.text for r in first] == ["Hi Ann 1", "Hi Ann 2", "Hi Ann 3"]
    assert source.served <= 10


def test_bad_rows_are_refused_with_their_line_number() -> None:
    data = b"\xef\xbb\xbfPhoneNumber,Message\n+48600000001,Hi\n,Hi\n+48600000002,\n\n"
    data += b'+48600000003,"Yo\nthere"\n+48600000004,Hey\n'
    refused: list[tuple[Row, str]] = []
    counter = [0]
    rows = list(read_rows(io.BytesIO(data), None, counter, lambda r, why: refused.append((r, why))))
    assert [(r.line, r.phone, r.text) for r in rows] == [
        (2, "+48600000001", "Hi"),
        (7, "+48600000003", "Yo\nthere"),
        (8, "+48600000004", "Hey"),
    ]
    assert [(r.line, why.split(":")[0]) for r, why in refused] == [
        (3, "missing_phone"),
        (4, "empty_message"),
    ]
    assert counter[0] == len(data)


def test_a_file_without_text_needs_a_template() -> None:
    with pytest.raises(ValueError, match="--text"):
        list(read_rows(io.BytesIO(b"phone\n+48600000001\n"), None, [0], lambda r, w: None))
    rows = read_rows(io.BytesIO(b"phone\n+48600000001\n"), "Hi {nope}", [0], lambda r, w: None)
    assert list(rows) == []
