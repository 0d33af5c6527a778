"""Connector for an upstream speaking MessageFlow SMS API v2.1 (MessageFlow itself, or another
smsdispatch): ``POST {base}/v2.1/sms`` with ``Application-Key`` / ``Authorization``.

One request carries one text to many ``phoneNumbers``; the answer's envelope is read per
recipient: ``data[]`` elements (matched by ``phoneNumber``) carry the upstream's message
``id``, which becomes our carrier message id; ``errors[]`` elements name the refused number in
``meta.value`` and become permanent rejects with the upstream's code.

Idempotency: ``externalId`` is our message id for a single submit, and a digest of the member
ids for a batch; the upstream answers a repeated ``externalId`` with the original messages, so
a retried single submit, or the same batch again, is never sent twice. Look-ups
(``GET /v2.1/sms?externalId=``) find single submits only: a batch whose answer was lost and
whose messages are retried in other groupings may be sent again (``docs/routing.md``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import orjson

from workers.connectors.base import InboundPart, Outbound, Report, SubmitResult
from workers.connectors.callbacks import parse_simple_inbound, parse_smpp_style_report
from workers.connectors.simulator import error_from_status, translate
from workers.connectors.wire import WireClient
from workers.errors import (
    AmbiguousCarrierError,
    CarrierError,
    PermanentCarrierError,
    RetryableCarrierError,
)

# An upstream that refuses our keys is misconfigured, not refusing the message: retry (the
# breaker opens and the messages wait) instead of rejecting every message for good.
AUTH_STATUSES = (401, 403)


class MessageFlowConnector:
    """Relays to a MessageFlow v2.1 API."""

    def __init__(
        self,
        name: str,
        base_url: str,
        application_key: str,
        authorization: str,
        max_batch: int = 1,
        timeout_s: float = 10.0,
        max_connections: int = 64,
    ) -> None:
        self.name = name
        self.max_batch = max(1, max_batch)
        headers = {"Application-Key": application_key, "Authorization": authorization}
        self._client = WireClient(base_url, headers, limit=max_connections)
        self._timeout_s = timeout_s

    async def submit(self, msg: Outbound) -> SubmitResult:
        """Submit one message (``externalId`` = our id)."""
        return (await self.submit_batch([msg]))[0]

    async def submit_batch(self, msgs: Sequence[Outbound]) -> list[SubmitResult]:
        """Submit recipients of one text; the upstream refuses a number twice in one request,
        so repeated numbers go in further requests."""
        out: dict[str, SubmitResult] = {}
        rest = list(msgs)
        while rest:
            seen: set[str] = set()
            now_batch: list[Outbound] = []
            later: list[Outbound] = []
            for m in rest:
                (later if m.to in seen else now_batch).append(m)
                seen.add(m.to)
            for r in await self._request(now_batch):
                out[r.ref] = r
            rest = later
        return [out[m.ref] for m in msgs]

    async def _request(self, msgs: Sequence[Outbound]) -> list[SubmitResult]:
        first = msgs[0]
        body = {
            "sender": first.sender,
            "message": first.text,
            "phoneNumbers": [m.to for m in msgs],
            "externalId": external_id(msgs),
            "type": 1 if first.flash else 0,
        }
        started = time.perf_counter()
        try:
            resp = await self._client.post("/v2.1/sms", orjson.dumps(body), self._timeout_s)
        except Exception as exc:  # translated at the boundary, never raised past it
            err = translate(exc)
            return [SubmitResult(m.ref, None, None, _ms(started), err) for m in msgs]
        latency = _ms(started)
        status, data, headers = resp.status, resp.body, resp.headers
        try:
            envelope = orjson.loads(data)
        except orjson.JSONDecodeError:
            envelope = None
        if status in AUTH_STATUSES:
            err = RetryableCarrierError("upstream_auth_failed", f"HTTP {status}", status)
            return [SubmitResult(m.ref, None, status, latency, err) for m in msgs]
        if not isinstance(envelope, dict) or (status != 200 and not envelope.get("errors")):
            bad: CarrierError = AmbiguousCarrierError(
                "carrier_bad_response", "unreadable envelope", status
            )
            if status != 200:
                bad = error_from_status(status, data, headers)
            return [SubmitResult(m.ref, None, status, latency, bad) for m in msgs]
        if status == 429 or status >= 500:
            err = error_from_status(status, b"", headers)
            return [SubmitResult(m.ref, None, status, latency, err) for m in msgs]
        return _per_recipient(msgs, envelope, status, latency)

    async def lookup(self, refs: Sequence[str]) -> dict[str, str] | None:
        """Upstream ids of refs it recorded (by ``externalId``)."""
        found: dict[str, str] = {}
        for ref in refs:
            try:
                resp = await self._client.get(
                    "/v2.1/sms?externalId=" + quote(ref, safe=""), self._timeout_s
                )
            except Exception as exc:
                raise translate(exc) from exc
            status, data = resp.status, resp.body
            if status == 404:
                continue
            if status != 200:
                raise RetryableCarrierError("carrier_lookup_failed", f"HTTP {status}", status)
            items = orjson.loads(data).get("data") or []
            if len(items) == 1 and items[0].get("id"):
                found[ref] = str(items[0]["id"])
        return found

    async def close(self) -> None:
        """Close the connections to the upstream."""
        await self._client.close()

    def parse_report(self, raw: Mapping[str, Any]) -> Report:
        """Reports reach the dlr lane already in the generic form (the callback endpoint
        verifies and translates the upstream's signed webhooks)."""
        return parse_smpp_style_report(raw)

    def parse_inbound(self, raw: Mapping[str, Any]) -> InboundPart:
        """Inbound messages in the generic form."""
        return parse_simple_inbound(raw)


def external_id(msgs: Sequence[Outbound]) -> str:
    """Our id for one message; for a batch, a digest of its members' ids, so that the same
    batch sent again is answered with the original messages instead of being sent twice."""
    if len(msgs) == 1:
        return msgs[0].ref
    digest = hashlib.sha256("\n".join(sorted(m.ref for m in msgs)).encode()).hexdigest()
    return "batch-" + digest[:40]


def _per_recipient(
    msgs: Sequence[Outbound], envelope: Mapping[str, Any], status: int, latency: float
) -> list[SubmitResult]:
    ids: dict[str, str] = {}
    for item in envelope.get("data") or []:
        if isinstance(item, dict) and item.get("phoneNumber") and item.get("id"):
            ids[str(item["phoneNumber"])] = str(item["id"])
    refused: dict[str, PermanentCarrierError] = {}
    for e in envelope.get("errors") or []:
        if not isinstance(e, dict):
            continue
        value = (e.get("meta") or {}).get("value")
        if isinstance(value, str):
            refused[value] = PermanentCarrierError(
                str(e.get("code") or "upstream_refused"), str(e.get("message") or ""), status
            )
    first = next((e for e in envelope.get("errors") or [] if isinstance(e, dict)), {})
    whole: CarrierError = AmbiguousCarrierError("carrier_missing_result", "no result for recipient")
    if status >= 400:  # refused as a whole (e.g. invalid_sender): the request-level reason
        whole = PermanentCarrierError(
            str(first.get("code") or f"carrier_http_{status}"),
            str(first.get("message") or ""),
            status,
        )
    out = []
    for m in msgs:
        if m.to in ids:
            out.append(SubmitResult(m.ref, ids[m.to], status, latency))
        else:
            out.append(SubmitResult(m.ref, None, status, latency, refused.get(m.to, whole)))
    return out


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
