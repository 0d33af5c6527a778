"""The Python client (``client/``, its own distribution) and this server agree: every request
the client can make is an operation of the server's OpenAPI document, with parameters, headers
and body fields it declares; and the server requires the client of the API version it serves."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import httpx
from packaging.requirements import Requirement
from smsdispatch_client import API_VERSION, SmsClient, __version__

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = json.loads((ROOT / "docs" / "openapi.json").read_text())
ANSWER = {
    "data": [{"id": "m1", "statusName": "queued"}],
    "errors": [],
    "meta": {"uniqId": "r1", "total": 1, "offset": 0, "limit": 100},
}


def every_kind_of_request() -> list[httpx.Request]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=ANSWER)

    with SmsClient("k", "a", "http://api.test", transport=httpx.MockTransport(handler)) as sms:
        sms.send_sms(
            ["+48111222333"],
            "hi",
            sender="ACME",
            idempotency_key="key-1",
            campaign="spring",
            priority=True,
            validity=60,
            schedule_time=1_900_000_000,
            external_id="e-1",
            webhook_url="https://example.test/hook",
            flash=True,
            short_link=True,
            time_restriction="follow",
            time_restriction_range="08:00-21:00",
        )
        sms.get_message("m1")
        filters: dict[str, Any] = {
            "external_id": "e-1",
            "phone_number": ["+48111222333"],
            "status": ["delivered", 21],
            "sender": "ACME",
            "date_from": 1.0,
            "date_to": "2026-01-01T00:00:00Z",
            "order_by": "status",
            "descending": False,
        }
        sms.list_messages(offset=5, limit=10, **filters)
        sms.list_statuses(**filters)
        list(sms.iter_messages(page_size=10, **filters))
    return seen


def operation(request: httpx.Request) -> dict[str, Any]:
    """The OpenAPI operation serving ``request`` (a literal path wins over a template)."""
    path = request.url.path
    candidates = sorted(OPENAPI["paths"], key=lambda p: "{" in p)
    for template in candidates:
        pattern = re.sub(r"\\{[^/]+\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            ops = OPENAPI["paths"][template]
            assert request.method.lower() in ops, f"{request.method} {template}"
            return dict(ops[request.method.lower()])
    raise AssertionError(f"the server has no {request.method} {path}")


def test_every_client_request_is_a_declared_operation() -> None:
    requests = every_kind_of_request()
    assert {(r.method, r.url.path) for r in requests} == {
        ("POST", "/v2.1/sms"),
        ("GET", "/v2.1/sms/m1"),
        ("GET", "/v2.1/sms"),
        ("GET", "/v2.1/sms/statuses"),
    }
    body_fields = set(OPENAPI["components"]["schemas"]["SendSmsBody"]["properties"])
    for request in requests:
        op = operation(request)
        declared = {(p["in"], p["name"].lower()) for p in op.get("parameters", [])}
        for name in request.url.params:
            assert ("query", name.lower()) in declared, (request.url.path, name)
        for name in ("Application-Key", "Authorization", "Idempotency-Key", "Smsdispatch-Campaign"):
            if name in request.headers:
                assert ("header", name.lower()) in declared, (request.url.path, name)
        if request.method == "POST":
            # every field the server takes
            assert set(json.loads(request.content)) == body_fields


def test_the_server_requires_the_client_of_its_api_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (spec,) = [
        Requirement(d) for d in project["dependencies"] if d.startswith("smsdispatch-client")
    ]
    assert spec.specifier.contains(__version__)
    assert spec.specifier.contains(f"{API_VERSION}.99")
    major, minor = API_VERSION.split(".")
    assert not spec.specifier.contains(f"{major}.{int(minor) + 1}.0")
    assert all(path.startswith(f"/v{API_VERSION}/") for path in OPENAPI["paths"] if "/sms" in path)
