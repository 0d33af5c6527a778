"""Hostile and malformed input over real HTTP (a real API process, database and Redis): every
case gets a clear 4xx whose error names the code and, where there is one, the field.

Oversized bodies (with and without Content-Length), huge ``phoneNumbers`` arrays, invalid
UTF-8, deeply nested JSON, wrong content types, non-object JSON, wrong types, absurd numbers,
bad query parameters and headers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.stack import ApiClient, Stack, running_stack

pytestmark = [pytest.mark.integration, pytest.mark.any_db]

MAX_BODY = 262_144
GOOD = {"sender": "ACME", "message": "hello", "phoneNumbers": ["+48111222333"]}


@pytest.fixture(scope="module")
def api() -> Iterator[tuple[Stack, ApiClient]]:
    with running_stack(workers={}, scheduler=False, max_body_bytes=MAX_BODY) as s:
        yield s, s.account()


def post_raw(
    client: ApiClient, content: Any, ctype: str | None = "application/json"
) -> httpx.Response:
    headers = {} if ctype is None else {"Content-Type": ctype}
    return client.http.post("/v2.1/sms", content=content, headers=headers)


def error(r: httpx.Response, status: int) -> dict[str, Any]:
    """The first error of a refused request, after checking the envelope and status."""
    assert r.status_code == status, (r.status_code, r.text[:500])
    doc = r.json()
    assert doc["meta"]["status"] == status
    assert doc["errors"], doc
    return dict(doc["errors"][0])


def test_a_good_request_is_accepted(api: tuple[Stack, ApiClient]) -> None:
    _, client = api
    assert client.send(GOOD).status_code == 200


def test_oversized_body_with_content_length_is_413(api: tuple[Stack, ApiClient]) -> None:
    _, client = api
    big = {**GOOD, "message": "x" * (MAX_BODY + 10)}
    err = error(client.send(big), 413)
    assert (err["code"], err["meta"]["parameter"]) == ("payload_too_large", "body")


def test_oversized_chunked_body_without_content_length_is_413(
    api: tuple[Stack, ApiClient],
) -> None:
    _, client = api

    def chunks() -> Iterator[bytes]:
        yield b'{"sender": "ACME", "message": "'
        for _ in range(80):
            yield b"y" * 4096
        yield b'", "phoneNumbers": ["+48111222333"]}'

    r = post_raw(client, chunks())
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert error(r, 413)["code"] == "payload_too_large"


def test_more_recipients_than_allowed_names_phone_numbers(api: tuple[Stack, ApiClient]) -> None:
    _, client = api
    numbers = [f"+4860{i:07d}" for i in range(10_001)]
    err = error(client.send({**GOOD, "phoneNumbers": numbers}), 400)
    assert (err["code"], err["meta"]["parameter"]) == ("too_many_recipients", "phoneNumbers")


def test_huge_phone_numbers_array_beyond_the_body_limit_is_413(
    api: tuple[Stack, ApiClient],
) -> None:
    _, client = api
    numbers = [f"+4860{i:07d}" for i in range(200_000)]
    assert error(client.send({**GOOD, "phoneNumbers": numbers}), 413)["code"] == "payload_too_large"


def test_phone_numbers_of_the_wrong_type_name_the_element(api: tuple[Stack, ApiClient]) -> None:
    _, client = api
    err = error(client.send({**GOOD, "phoneNumbers": "+48111222333"}), 400)
    assert (err["code"], err["meta"]["parameter"]) == ("invalid_field", "phoneNumbers")
    err = error(client.send({**GOOD, "phoneNumbers": ["+48111222333", {"a": 1}]}), 400)
    assert (err["code"], err["meta"]["source"]) == ("invalid_field", "phoneNumbers[1]")


def test_invalid_utf8_is_400_invalid_json(api: tuple[Stack, ApiClient]) -> None:
    _, client = api
    body = b'{"sender": "ACME", "message": "\xff\xfe bad", "phoneNumbers": ["+48111222333"]}'
    err = error(post_raw(client, body), 400)
    assert (err["code"], err["meta"]["parameter"]) == ("invalid_json", "body")
    assert "UTF-8" in err["message"]
    # A lone surrogate escape decodes, but is not text that can be sent.
    for escape in (b"\\ud800", b"x\\udfff", b"\\ud83d!"):
        body = b'{"sender": "ACME", "message": "' + escape + b'", "phoneNumbers": ["+48111222333"]}'
        err = error(post_raw(client, body), 400)
        assert (err["code"], err["meta"]["parameter"]) == ("invalid_json", "body"), err
    # A proper pair (an emoji) is text.
    body = b'{"sender": "ACME", "message": "\\ud83d\\ude00", "phoneNumbers": ["+48111222335"]}'
    assert post_raw(client, body).status_code == 200


@pytest.mark.parametrize("depth", [20, 33, 5_000, 100_000])
def test_deeply_nested_json_is_400(api: tuple[Stack, ApiClient], depth: int) -> None:
    _, client = api
    nested = b"[" * depth + b"]" * depth
    body = b'{"sender": "ACME", "message": ' + nested + b', "phoneNumbers": ["+48111222333"]}'
    err = error(post_raw(client, body), 400)
    if depth > 32:
        assert (err["code"], err["meta"]["parameter"]) == ("invalid_json", "body")
        assert "nested deeper" in err["message"]
    else:  # parsed: the field of the wrong type is named
        assert (err["code"], err["meta"]["parameter"]) == ("invalid_field", "message")


@pytest.mark.parametrize(
    "ctype", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_wrong_content_type_is_415_naming_the_header(
    api: tuple[Stack, ApiClient], ctype: str | None
) -> None:
    _, client = api
    r = post_raw(client, b'{"sender": "ACME"}', ctype)
    err = error(r, 415)
    assert (err["code"], err["meta"]["parameter"]) == ("unsupported_media_type", "Content-Type")


def test_json_with_a_charset_parameter_is_fine(api: tuple[Stack, ApiClient]) -> None:
    _, client = api
    r = post_raw(
        client,
        b'{"sender": "ACME", "message": "hi", "phoneNumbers": ["+48111222334"]}',
        "application/json; charset=utf-8",
    )
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("body", [b"", b"[]", b'"text"', b"null", b"42", b"{", b"{'a': 1}"])
def test_bodies_that_are_not_a_json_object_are_400(
    api: tuple[Stack, ApiClient], body: bytes
) -> None:
    _, client = api
    assert error(post_raw(client, body), 400)["code"] in {"invalid_json", "missing_field"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("validity", 10**100),
        ("validity", "NaN"),
        ("scheduleTime", -(10**30)),
        ("type", 1.5),
        ("message", 12345),
        ("sender", None),
        ("priority", "yes please"),
        ("externalId", "x" * 10_000),
        ("webhookUrl", "javascript:alert(1)"),
    ],
)
def test_wrong_values_name_their_field(
    api: tuple[Stack, ApiClient], field: str, value: Any
) -> None:
    _, client = api
    err = error(client.send({**GOOD, field: value}), 400)
    assert err["meta"]["parameter"] == field, err


def test_nan_and_infinity_literals_are_refused(api: tuple[Stack, ApiClient]) -> None:
    _, client = api
    for literal in (b"NaN", b"Infinity", b"-Infinity", b"1e999"):
        body = b'{"sender": "ACME", "message": "hi", "phoneNumbers": ["+48111222333"], '
        r = post_raw(client, body + b'"validity": ' + literal + b"}")
        assert 400 <= r.status_code < 500, (literal, r.text)


@pytest.mark.parametrize(
    "query",
    [
        "limit=abc",
        "limit=0",
        "limit=100000000000000000000000",
        "offset=-1",
        "status=nonsense",
        "dateFrom=yesterday",
        "orderBy=DROP%20TABLE",
        "phoneNumber=" + "9" * 5000,
        "sender=" + ",".join(["a"] * 50),
    ],
)
def test_bad_query_parameters_are_400_naming_them(api: tuple[Stack, ApiClient], query: str) -> None:
    _, client = api
    err = error(client.http.get("/v2.1/sms?" + query), 400)
    assert err["code"] == "invalid_query", err
    assert err["meta"]["parameter"] == query.split("=", 1)[0], err


@pytest.mark.parametrize(
    "mid", ["%00", "x" * 5000, "..%2F..%2Fetc%2Fpasswd", "1;DROP", "%F0%9F%98%80"]
)
def test_odd_message_ids_are_404(api: tuple[Stack, ApiClient], mid: str) -> None:
    _, client = api
    assert error(client.http.get(f"/v2.1/sms/{mid}"), 404)["code"] == "not_found"


@pytest.mark.parametrize("key", ["x" * 300, "caf\u00e9", "tab\tkey"])
def test_bad_idempotency_keys_are_400(api: tuple[Stack, ApiClient], key: str) -> None:
    _, client = api
    r = client.http.post("/v2.1/sms", json=GOOD, headers=[(b"Idempotency-Key", key.encode())])
    err = error(r, 400)
    assert (err["code"], err["meta"]["parameter"]) == ("invalid_idempotency_key", "Idempotency-Key")


def test_nul_characters_are_refused_before_the_database(api: tuple[Stack, ApiClient]) -> None:
    # PostgreSQL refuses NUL in text: left to the database these would be 5xx.
    _, client = api
    for param in ("externalId", "phoneNumber", "sender"):
        err = error(client.http.get(f"/v2.1/sms?{param}=a%00b"), 400)
        assert (err["code"], err["meta"]["parameter"]) == ("invalid_query", param)
    body = b'{"sender": "ACME", "message": "a\\u0000b", "phoneNumbers": ["+48111222333"]}'
    err = error(post_raw(client, body), 400)
    assert (err["code"], err["meta"]["parameter"]) == ("invalid_json", "body")
    assert error(client.http.delete("/v2.1/suppressions/%2B48%00"), 404)["code"] == "not_found"


def test_unknown_methods_are_405(api: tuple[Stack, ApiClient]) -> None:
    _, client = api
    assert error(client.http.put("/v2.1/sms", json=GOOD), 405)["code"] == "method_not_allowed"
    assert error(client.http.delete("/v2.1/sms"), 405)["code"] == "method_not_allowed"


def test_unauthenticated_bad_input_is_401_not_parsed(api: tuple[Stack, ApiClient]) -> None:
    stack, _ = api
    r = httpx.post(
        stack.api_url + "/v2.1/sms",
        content=b"[" * 10_000,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert r.status_code in (400, 401), r.text
    assert r.status_code < 500
