"""``DATABASE_URL``'s ``pooler`` parameter: read, removed before the driver sees it, refused
when wrong (naming the variable, never repeating the URL: it may carry a password)."""

from __future__ import annotations

import pytest

from dispatcher.store.db import make_engine, split_pooler


def test_the_pooler_is_taken_out_of_the_url() -> None:
    url, pooler = split_pooler("postgresql+psycopg://u:s3cret@h:6432/smsd?pooler=pgbouncer")
    assert (url, pooler) == ("postgresql+psycopg://u:s3cret@h:6432/smsd", "pgbouncer")
    kept = split_pooler("postgresql+psycopg://h/smsd?sslmode=require&pooler=pgbouncer")[0]
    assert kept == "postgresql+psycopg://h/smsd?sslmode=require"


def test_urls_without_a_pooler_are_left_alone() -> None:
    for url in ("postgresql+psycopg://h/smsd", "postgresql+psycopg://u:pooler=x@h/smsd"):
        assert split_pooler(url) == (url, "")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql+psycopg://u:s3cret@h/smsd?pooler=pgpool", "pooler must be one of pgbouncer"),
        ("postgresql+psycopg://u:s3cret@h/smsd?pooler=", "pooler must be one of pgbouncer"),
        ("sqlite:///tmp/s3cret.db?pooler=pgbouncer", "for PostgreSQL URLs only"),
    ],
)
def test_a_wrong_pooler_stops_with_the_variable_named(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=says) as err:
        make_engine(url)
    assert str(err.value).startswith("DATABASE_URL: ")
    assert "s3cret" not in str(err.value)
