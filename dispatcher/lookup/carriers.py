"""Asking a carrier connection about a number: one call per connection type.

* ``simulator`` and ``http_json`` (the generic HTTP JSON carrier, docs/routing.md):
  ``POST {url}/v1/hlr`` ``{"phone": "+48…"}`` with ``Authorization: Bearer <api_key>`` when
  configured; the answer ``{"phone", "valid", "country", "mcc", "mnc", "network", "ported",
  "reachable"}`` (docs/lookup.md has the contract);
* ``messageflow`` (an upstream MessageFlow or smsdispatch): its ``POST /v2.1/sms/hlr``, whose
  ``data[0]`` is our own look-up answer.

Every failure (no answer, a non-200, an answer that is not the contract) is a
:class:`LookupFailed`, translated here once; the caller tries the next connection.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from dispatcher.lookup.result import LookupResult
from dispatcher.routing import ConnectionConfig

_TEXT_FIELDS = ("country", "mcc", "mnc", "network")
_FLAG_FIELDS = ("ported", "reachable")


class LookupFailed(Exception):
    """The connection did not answer the look-up usefully; ``reason`` says how."""

    def __init__(self, connection: str, reason: str) -> None:
        super().__init__(f"{connection}: {reason}")
        self.connection = connection
        self.reason = reason


def _request(conn: ConnectionConfig, phone: str) -> tuple[str, dict[str, str], bytes]:
    creds = conn.credentials
    if conn.type == "messageflow":
        headers = {
            "Application-Key": creds.application_key,
            "Authorization": creds.authorization,
        }
        return f"{conn.url}/v2.1/sms/hlr", headers, orjson.dumps({"phone": phone})
    headers = {"Authorization": f"Bearer {creds.api_key}"} if creds.api_key else {}
    return f"{conn.url}/v1/hlr", headers, orjson.dumps({"phone": phone})


def _text(value: Any, name: str, conn: str) -> str | None:
    if value is None or isinstance(value, str):
        return value[:64] if isinstance(value, str) else None
    raise LookupFailed(conn, f"the answer's {name} is not a string")


def _flag(value: Any, name: str, conn: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise LookupFailed(conn, f"the answer's {name} is not a boolean")


def parse_answer(conn: ConnectionConfig, phone: str, body: Any, now: float) -> LookupResult:
    """The carrier's answer as a :class:`LookupResult`; :class:`LookupFailed` if it is not
    the documented contract."""
    if conn.type == "messageflow" and isinstance(body, dict):
        items = body.get("data")
        body = items[0] if isinstance(items, list) and items else None
        network = body.get("network") if isinstance(body, dict) else None
        if isinstance(body, dict):
            body = {**body, **(network if isinstance(network, dict) else {})}
            body["network"] = network.get("name") if isinstance(network, dict) else None
    if not isinstance(body, dict) or not isinstance(body.get("valid"), bool):
        raise LookupFailed(conn.name, "the answer has no boolean valid")
    texts = {f: _text(body.get(f), f, conn.name) for f in _TEXT_FIELDS}
    flags = {f: _flag(body.get(f), f, conn.name) for f in _FLAG_FIELDS}
    return LookupResult(
        phone=phone,
        valid=bool(body["valid"]),
        country=texts["country"],
        mcc=texts["mcc"],
        mnc=texts["mnc"],
        network=texts["network"],
        ported=flags["ported"],
        reachable=flags["reachable"],
        connection=conn.name,
        looked_up_at=now,
    )


async def ask(
    http: httpx.AsyncClient, conn: ConnectionConfig, phone: str, now: float
) -> LookupResult:
    """Look ``phone`` up over ``conn``; :class:`LookupFailed` on any failure."""
    url, headers, body = _request(conn, phone)
    headers["Content-Type"] = "application/json"
    try:
        resp = await http.post(url, content=body, headers=headers)
    except httpx.TimeoutException:
        raise LookupFailed(conn.name, "no answer in time") from None
    except httpx.HTTPError as exc:
        raise LookupFailed(conn.name, f"unreachable ({type(exc).__name__})") from None
    if resp.status_code != 200:
        raise LookupFailed(conn.name, f"answered HTTP {resp.status_code}")
    try:
        answer = orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        raise LookupFailed(conn.name, "the answer is not JSON") from None
    return parse_answer(conn, phone, answer, now)
