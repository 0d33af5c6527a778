"""Connector for the carrier simulator's HTTP JSON API (``docs/simulator.md``).

The hot path uses our lean HTTP/1.1 client (:mod:`workers.connectors.wire`) rather than httpx or
aiohttp: it costs a fraction of their CPU per request (``docs/client-choice.md``). Its errors
never leave the connectors; they become :mod:`workers.errors` types in :func:`translate`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from workers.connectors.base import InboundPart, Outbound, Report, SubmitResult
from workers.connectors.callbacks import parse_simple_inbound, parse_smpp_style_report
from workers.connectors.wire import ConnectFailed, Disconnected, WireClient, WireTimeout
from workers.errors import (
    AmbiguousCarrierError,
    CarrierError,
    PermanentCarrierError,
    RetryableCarrierError,
    ThrottledError,
)


def retry_after_seconds(value: str | None, default: float = 1.0) -> float:
    """Parse ``Retry-After`` given in (possibly fractional) seconds; fall back to ``default``."""
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        return default


def error_from_status(status: int, body: bytes, headers: Mapping[str, str]) -> CarrierError:
    """Classify a non-2xx answer: 429 throttled, 5xx retryable, other 4xx permanent.
    ``headers`` have lower-case names (:class:`workers.connectors.wire.Response`)."""
    code, description = f"carrier_http_{status}", f"HTTP {status}"
    try:
        err = orjson.loads(body).get("error") or {}
        code = str(err.get("code") or code)
        description = str(err.get("message") or description)
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        pass
    if status == 429:
        return ThrottledError(retry_after_seconds(headers.get("retry-after")))
    if status >= 500 or status in (408, 425):
        return RetryableCarrierError(code, description, status)
    return PermanentCarrierError(code, description, status)


def translate(exc: BaseException) -> CarrierError:
    """HTTP client errors → ours. A request that may have reached the carrier is ambiguous."""
    if isinstance(exc, WireTimeout):
        return AmbiguousCarrierError("carrier_timeout", "no answer in time")
    if isinstance(exc, ConnectFailed):
        return RetryableCarrierError("carrier_unreachable", "could not connect")
    if isinstance(exc, Disconnected):
        return AmbiguousCarrierError("carrier_disconnected", "connection dropped mid-request")
    # BadResponse and anything unforeseen: the request was written, so it may have arrived.
    return AmbiguousCarrierError("carrier_unexpected", type(exc).__name__)


class SimulatorConnector:
    """Talks to ``smsdispatch simulator`` (single and batch submit, lookup by reference)."""

    def __init__(
        self,
        name: str,
        base_url: str,
        token: str = "",
        max_batch: int = 500,
        timeout_s: float = 10.0,
        max_connections: int = 64,
    ) -> None:
        self.name = name
        self.max_batch = max(1, max_batch)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = WireClient(base_url, headers, limit=max_connections)
        self._timeout_s = timeout_s

    async def _post(
        self, path: str, body: dict[str, Any]
    ) -> tuple[int, bytes, Mapping[str, str], float]:
        started = time.perf_counter()
        resp = await self._client.post(path, orjson.dumps(body), self._timeout_s)
        return resp.status, resp.body, resp.headers, (time.perf_counter() - started) * 1000

    async def submit(self, msg: Outbound) -> SubmitResult:
        """Submit one message."""
        body = {
            "to": msg.to,
            "from": msg.sender,
            "text": msg.text,
            "ref": msg.ref,
            "parts": msg.parts,
            "flash": msg.flash,
        }
        started = time.perf_counter()
        try:
            status, data, headers, latency = await self._post("/v1/sms", body)
        except Exception as exc:  # translated at the boundary, never raised past it
            return SubmitResult(msg.ref, None, None, _ms_since(started), translate(exc))
        if status == 200:
            try:
                carrier_id = str(orjson.loads(data)["id"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                err = AmbiguousCarrierError("carrier_bad_response", "unparseable 200 answer", 200)
                return SubmitResult(msg.ref, None, status, latency, err)
            return SubmitResult(msg.ref, carrier_id, status, latency)
        return SubmitResult(
            msg.ref, None, status, latency, error_from_status(status, data, headers)
        )

    async def submit_batch(self, msgs: Sequence[Outbound]) -> list[SubmitResult]:
        """Submit recipients of one text in one request; per-recipient results."""
        first = msgs[0]
        body = {
            "from": first.sender,
            "text": first.text,
            "parts": first.parts,
            "flash": first.flash,
            "recipients": [{"to": m.to, "ref": m.ref} for m in msgs],
        }
        started = time.perf_counter()
        try:
            status, data, headers, latency = await self._post("/v1/sms/batch", body)
        except Exception as exc:
            err = translate(exc)
            return [SubmitResult(m.ref, None, None, _ms_since(started), err) for m in msgs]
        if status != 200:
            err = error_from_status(status, data, headers)
            return [SubmitResult(m.ref, None, status, latency, err) for m in msgs]
        try:
            results = {r["ref"]: r for r in orjson.loads(data)["results"]}
        except (orjson.JSONDecodeError, KeyError, TypeError):
            err = AmbiguousCarrierError("carrier_bad_response", "unparseable batch answer", 200)
            return [SubmitResult(m.ref, None, status, latency, err) for m in msgs]
        out: list[SubmitResult] = []
        for m in msgs:
            r = results.get(m.ref)
            if r is None:
                err = AmbiguousCarrierError("carrier_missing_result", "no result for recipient")
                out.append(SubmitResult(m.ref, None, status, latency, err))
            elif r.get("status") == "accepted" and r.get("id"):
                out.append(SubmitResult(m.ref, str(r["id"]), status, latency))
            else:
                e = r.get("error") or {}
                err = PermanentCarrierError(
                    str(e.get("code") or "carrier_rejected"), str(e.get("message") or ""), status
                )
                out.append(SubmitResult(m.ref, None, status, latency, err))
        return out

    async def lookup(self, refs: Sequence[str]) -> dict[str, str] | None:
        """Ask the carrier which refs it recorded (reconciling claims left by a crash)."""
        try:
            status, data, _headers, _lat = await self._post("/v1/sms/lookup", {"refs": list(refs)})
        except Exception as exc:
            raise translate(exc) from exc
        if status != 200:
            raise RetryableCarrierError("carrier_lookup_failed", f"HTTP {status}", status)
        found = orjson.loads(data).get("found") or {}
        return {str(k): str(v) for k, v in found.items()}

    async def close(self) -> None:
        """Close the connections to the carrier."""
        await self._client.close()

    def parse_report(self, raw: Mapping[str, Any]) -> Report:
        """The simulator posts SMPP-style reports (``docs/simulator.md``)."""
        return parse_smpp_style_report(raw)

    def parse_inbound(self, raw: Mapping[str, Any]) -> InboundPart:
        """The simulator posts one JSON object per part, with a UDH-like ``udh`` object."""
        return parse_simple_inbound(raw)


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
