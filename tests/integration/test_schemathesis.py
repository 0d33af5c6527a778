"""Schemathesis against the schema the API serves (``/openapi.json`` of a real API process on a
real database and Redis), for every operation, authenticated with a test account.

Checked for every generated request, valid (positive) and invalid (negative): no 5xx, the
status code is declared for the operation, and the body and content type match the declared
response. Examples are limited and derandomised so the run is deterministic and short (CI).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.stack import ApiClient, Stack, running_stack

pytestmark = [pytest.mark.integration, pytest.mark.any_db]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = {GenerationMode.POSITIVE: 20, GenerationMode.NEGATIVE: 10}


@pytest.fixture(scope="module")
def api() -> Iterator[tuple[Stack, ApiClient]]:
    with running_stack(workers={}, scheduler=False, carrier_callback_token="cb-secret-st") as s:
        client = s.account()
        # Something to find: a message with a known externalId and phone number.
        body = {"sender": "ACME", "message": "hi", "phoneNumbers": ["+48111222333"]}
        assert client.send({**body, "externalId": "st-1"}).status_code == 200
        yield s, client


def operations(stack: Stack) -> list[Any]:
    schema = schemathesis.openapi.from_url(stack.api_url + "/openapi.json", timeout=30)
    return [result.ok() for result in schema.get_all_operations()]


def run_operation(op: Any, mode: GenerationMode, base_url: str, keys: dict[str, str]) -> None:
    @given(case=op.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES[mode],
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        # The account's pair on every request (schemathesis may also fuzz these headers).
        case.headers = {**keys, **(case.headers or {})}
        case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=30)

    check()


def test_authenticated_operations_declare_401_and_429(api: tuple[Stack, ApiClient]) -> None:
    # The rate limit is off in the fuzzing run (it would mostly meet 429s): declared by hand.
    stack, _ = api
    schema = httpx.get(stack.api_url + "/openapi.json", timeout=30).json()
    authenticated = 0
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            headers = {p["name"].lower() for p in op.get("parameters", []) if p["in"] == "header"}
            if "application-key" in headers:
                authenticated += 1
                assert {"401", "429"} <= set(op["responses"]), f"{method.upper()} {path}"
    assert authenticated >= 8


def test_every_operation_conforms_to_the_served_schema(api: tuple[Stack, ApiClient]) -> None:
    stack, client = api
    ops = operations(stack)
    labels = sorted(op.label for op in ops)
    # Every route of the versioned API is in the schema (the walk is not vacuous).
    for expected in ("POST /v2.1/sms", "GET /v2.1/sms", "GET /v2.1/sms/{message_id}"):
        assert expected in labels, labels
    failures: dict[str, str] = {}
    no_negative: list[str] = []
    started = time.monotonic()
    for op in ops:
        for mode in EXAMPLES:
            try:
                run_operation(op, mode, stack.api_url, client.keys)
            except Unsatisfiable:
                # No invalid input exists for an operation without constraints (/healthz).
                assert mode is GenerationMode.NEGATIVE, op.label
                no_negative.append(op.label)
            except (Exception, BaseExceptionGroup) as exc:  # collect them all, report together
                failures[f"{op.label} [{mode.value}]"] = str(exc)[:3000]
    elapsed = time.monotonic() - started
    print(
        f"schemathesis: {len(ops)} operations in {elapsed:.1f} s; no invalid input: {no_negative}"
    )
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
    # Invalid input was generated for the operations that take input at all.
    assert "POST /v2.1/sms" not in no_negative and "GET /v2.1/sms" not in no_negative
