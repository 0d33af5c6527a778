"""Endpoint handlers: the carrier API (``/v1/...``) and the control API (``/_sim/...``).

Longer than 400 lines on purpose: one handler per simulated endpoint, each short; the list is
the simulator's whole surface.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterator
from typing import Any, cast
from urllib.parse import parse_qs

import orjson

from simulator import faults as F
from simulator import hlr
from simulator.config import ConfigError, SimConfig
from simulator.dlr import Emitter
from simulator.faults import Faults, format_retry_after
from simulator.http import (
    Delayed,
    Hold,
    Reply,
    Request,
    Router,
    error_response,
    json_response,
    ok_json,
    response,
)
from simulator.sms import parts_for
from simulator.state import SimState

#: The 401 reply of the carrier endpoints.
UNAUTHORIZED = error_response(
    401, "unauthorized", "missing or wrong bearer token", [(b"WWW-Authenticate", b"Bearer")]
)
_INTERNAL_INJECTED = error_response(500, "internal", "injected error")
_HEALTH = ok_json(b'{"status":"ok"}')
_MAX_TO_LEN = 32
_MAX_REF_LEN = 256
_MAX_PARTS = 255

_dumps = orjson.dumps
_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError


class BadRequest(Exception):
    """A client error reported as ``400 invalid_request``."""


def _bad(message: str) -> bytes:
    return error_response(400, "invalid_request", message)


def _valid_to(to: Any) -> bool:
    if type(to) is not str or not to or len(to) > _MAX_TO_LEN:
        return False
    digits = to[1:] if to[0] == "+" else to
    return digits.isascii() and digits.isdigit()


def _valid_ref(ref: Any) -> bool:
    return type(ref) is str and 0 < len(ref) <= _MAX_REF_LEN


def _parts(value: Any, text: str) -> int:
    if value is None:
        return parts_for(text)
    if type(value) is not int or not 1 <= value <= _MAX_PARTS:
        raise BadRequest(f"parts must be an integer within [1, {_MAX_PARTS}]")
    return value


def _common_fields(data: dict[str, Any]) -> tuple[str, int]:
    """Validate ``text``, ``from``, ``parts``, ``flash``; return ``(text, parts)``."""
    text = data.get("text")
    if type(text) is not str:
        raise BadRequest("text must be a string")
    sender = data.get("from")
    if sender is not None and type(sender) is not str:
        raise BadRequest("from must be a string")
    flash = data.get("flash")
    if flash is not None and type(flash) is not bool:
        raise BadRequest("flash must be a boolean")
    return text, _parts(data.get("parts"), text)


class SimApp:
    """The simulator's request handling: state, faults, outbound emitter and routing."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config if config is not None else SimConfig()
        self.initial_config = self.config.copy()
        self.state = SimState()
        self.faults = Faults(self.config)
        self.emitter = Emitter(self.config, self.state)
        self._auth_expected: bytes | None = None
        self._reconfigured(None)
        self.router = Router()
        self.register_routes(self.router)

    def register_routes(self, r: Router) -> None:
        """Register every endpoint of this instance on ``r``."""
        r.add("POST", "/v1/sms", self.submit)
        r.add("GET", "/v1/sms", self.get_by_ref)
        r.add("POST", "/v1/sms/batch", self.submit_batch)
        r.add("POST", "/v1/sms/lookup", self.lookup)
        r.add("POST", "/v1/hlr", self.hlr)
        r.add("GET", "/healthz", self.healthz)
        r.add("GET", "/_sim/stats", self.stats)
        r.add("GET", "/_sim/submits", self.submits)
        r.add("GET", "/_sim/refcounts", self.refcounts)
        r.add("GET", "/_sim/config", self.get_config)
        r.add("POST", "/_sim/config", self.set_config)
        r.add("POST", "/_sim/reset", self.reset)
        r.add("POST", "/_sim/mo", self.mo)

    def dispatch(self, req: Request) -> Reply:
        """Route one request (used as the HTTP server's dispatch function)."""
        return self.router.dispatch(req)

    def on_handler_error(self) -> None:
        """Count a crashed handler (it was answered with 500)."""
        self.state.counters.handler_errors += 1

    # -- helpers ------------------------------------------------------------------------------

    def _reconfigured(self, changed: list[str] | None) -> None:
        token = self.config.token
        self._auth_expected = f"Bearer {token}".encode() if token else None
        self.faults.reconfigure(changed)
        if changed is None or "seed" in changed:
            self.emitter.reseed()

    def _authorized(self, req: Request) -> bool:
        expected = self._auth_expected
        if expected is None:
            return True
        auth = req.auth
        return auth is not None and hmac.compare_digest(auth, expected)

    def _fault_reply(self, verdict: int, retry_after: float) -> Reply:
        counters = self.state.counters
        if verdict == F.TIMEOUT:
            counters.timeouts_injected += 1
            return Hold(self.config.timeout_s)
        if verdict == F.ERROR:
            counters.errors_injected += 1
            return self._delay(_INTERNAL_INJECTED)
        counters.throttled += 1
        if verdict == F.THROTTLE_TPS:
            counters.throttled_tps += 1
        data = error_response(
            429,
            "throttled",
            "rate limit exceeded",
            [(b"Retry-After", format_retry_after(retry_after).encode())],
        )
        return self._delay(data)

    def _delay(self, data: bytes) -> Reply:
        if self.faults.has_latency:
            delay = self.faults.latency_s()
            if delay > 0:
                return Delayed(delay, data)
        return data

    def _parse_json(self, req: Request) -> Any:
        try:
            return _loads(req.body)
        except _JSONDecodeError:
            raise BadRequest("body is not valid JSON") from None

    # -- carrier API --------------------------------------------------------------------------

    def submit(self, req: Request) -> Reply:
        """``POST /v1/sms``: submit one message."""
        if self._auth_expected is not None and not self._authorized(req):
            self.state.counters.unauthorized += 1
            return UNAUTHORIZED
        try:
            data = self._parse_json(req)
            if type(data) is not dict:
                raise BadRequest("body must be a JSON object")
            to = data.get("to")
            if not _valid_to(to):
                raise BadRequest("to must be a phone number (digits, optional leading +)")
            ref = data.get("ref")
            if not _valid_ref(ref):
                raise BadRequest(f"ref must be a non-empty string of at most {_MAX_REF_LEN}")
            text, parts = _common_fields(data)
        except BadRequest as exc:
            self.state.counters.invalid += 1
            return self._delay(_bad(str(exc)))
        to = cast(str, to)
        ref = cast(str, ref)
        now = time.time()
        faults = self.faults
        held = False
        if faults.active:
            verdict, retry_after = faults.check(now, 1)
            if verdict:
                if verdict != F.TIMEOUT or not self.config.timeout_accepts:
                    return self._fault_reply(verdict, retry_after)
                held = True
        if faults.reject_prefixes and faults.is_rejected(to):
            self.state.counters.rejected += 1
            if held:
                return self._fault_reply(F.TIMEOUT, 0.0)
            return self._delay(
                error_response(400, "unknown_subscriber", "destination is not reachable")
            )
        cid = self._accept(ref, to, now, parts, text)
        if held:
            return self._fault_reply(F.TIMEOUT, 0.0)
        return self._delay(ok_json(_dumps({"id": cid, "ref": ref, "status": "accepted"})))

    def _accept(self, ref: str, to: str, now: float, parts: int, text: str) -> str:
        state = self.state
        num = state.record(ref, to, now, parts, len(text))
        if self.config.keep_text:
            state.attach_text(text)
        cid = f"sim-{num}"
        if self.config.dlr_url is not None:
            self.emitter.schedule(cid, ref, to, now)
        return cid

    def submit_batch(self, req: Request) -> Reply:
        """``POST /v1/sms/batch``: one text to many recipients."""
        if self._auth_expected is not None and not self._authorized(req):
            self.state.counters.unauthorized += 1
            return UNAUTHORIZED
        counters = self.state.counters
        try:
            data = self._parse_json(req)
            if type(data) is not dict:
                raise BadRequest("body must be a JSON object")
            text, parts = _common_fields(data)
            recipients = data.get("recipients")
            if type(recipients) is not list or not recipients:
                raise BadRequest("recipients must be a non-empty list")
            if len(recipients) > self.config.max_batch:
                raise BadRequest(f"at most {self.config.max_batch} recipients per batch")
            for rcpt in recipients:
                if type(rcpt) is not dict or not _valid_ref(rcpt.get("ref")):
                    raise BadRequest("every recipient needs a ref (non-empty string)")
        except BadRequest as exc:
            counters.invalid += 1
            return self._delay(_bad(str(exc)))
        counters.batches += 1
        now = time.time()
        faults = self.faults
        held = False
        if faults.active:
            verdict, retry_after = faults.check(now, len(recipients))
            if verdict:
                if verdict != F.TIMEOUT or not self.config.timeout_accepts:
                    return self._fault_reply(verdict, retry_after)
                held = True
        results: list[dict[str, Any]] = []
        append = results.append
        check_prefix = bool(faults.reject_prefixes)
        accept = self._accept
        for rcpt in recipients:
            ref = rcpt["ref"]
            to = rcpt.get("to")
            if not _valid_to(to):
                counters.invalid += 1
                append(
                    {
                        "ref": ref,
                        "status": "rejected",
                        "error": {"code": "invalid_request", "message": "invalid destination"},
                    }
                )
            elif check_prefix and faults.is_rejected(to):
                counters.rejected += 1
                append(
                    {
                        "ref": ref,
                        "status": "rejected",
                        "error": {
                            "code": "unknown_subscriber",
                            "message": "destination is not reachable",
                        },
                    }
                )
            else:
                append({"ref": ref, "id": accept(ref, to, now, parts, text), "status": "accepted"})
        if held:
            return self._fault_reply(F.TIMEOUT, 0.0)
        return self._delay(ok_json(_dumps({"results": results})))

    def get_by_ref(self, req: Request) -> Reply:
        """``GET /v1/sms?ref=...``: the first accepted submit with that ref."""
        if self._auth_expected is not None and not self._authorized(req):
            self.state.counters.unauthorized += 1
            return UNAUTHORIZED
        refs = parse_qs(req.query.decode("utf-8", "replace")).get("ref")
        if not refs:
            return self._delay(_bad("query parameter ref is required"))
        rec = self.state.lookup(refs[0])
        if rec is None:
            return self._delay(error_response(404, "not_found", "no message with this ref"))
        body = {
            "id": rec.carrier_id,
            "ref": rec.ref,
            "status": "accepted",
            "submitted_at": rec.at,
            "submits": self.state.submit_count(rec.ref),
        }
        return self._delay(ok_json(_dumps(body)))

    def lookup(self, req: Request) -> Reply:
        """``POST /v1/sms/lookup``: map known refs to carrier ids (unknown refs are omitted)."""
        if self._auth_expected is not None and not self._authorized(req):
            self.state.counters.unauthorized += 1
            return UNAUTHORIZED
        try:
            data = self._parse_json(req)
            refs = data.get("refs") if type(data) is dict else None
            if type(refs) is not list or not all(type(r) is str for r in refs):
                raise BadRequest("refs must be a list of strings")
        except BadRequest as exc:
            self.state.counters.invalid += 1
            return self._delay(_bad(str(exc)))
        found: dict[str, str] = {}
        state = self.state
        for ref in refs:
            rec = state.lookup(ref)
            if rec is not None:
                found[ref] = rec.carrier_id
        return self._delay(ok_json(_dumps({"found": found})))

    def hlr(self, req: Request) -> Reply:
        """``POST /v1/hlr``: look a number up (validity, country, network, ported, reachable)."""
        if self._auth_expected is not None and not self._authorized(req):
            self.state.counters.unauthorized += 1
            return UNAUTHORIZED
        try:
            data = self._parse_json(req)
            phone = data.get("phone") if type(data) is dict else None
            if not _valid_to(phone):
                raise BadRequest("phone must be a phone number (digits, optional leading +)")
        except BadRequest as exc:
            self.state.counters.invalid += 1
            return self._delay(_bad(str(exc)))
        if self.faults.active:
            verdict, retry_after = self.faults.check(time.time(), 0)
            if verdict:
                return self._fault_reply(verdict, retry_after)
        self.state.counters.hlr_lookups += 1
        c = self.config
        answer = hlr.lookup(
            cast(str, phone),
            self.faults.reject_prefixes,
            tuple(p.removeprefix("+") for p in c.hlr_ported_prefixes),
            tuple(p.removeprefix("+") for p in c.hlr_absent_prefixes),
        )
        return self._delay(ok_json(_dumps(answer)))

    # -- control API --------------------------------------------------------------------------

    def healthz(self, req: Request) -> Reply:
        """``GET /healthz``."""
        return _HEALTH

    def stats(self, req: Request) -> Reply:
        """``GET /_sim/stats``."""
        return ok_json(_dumps(self.stats_dict()))

    def stats_dict(self) -> dict[str, Any]:
        """The statistics document (records, counters, pending reports)."""
        out = self.state.stats()
        out["dlr_pending"] = self.emitter.pending
        return out

    def submits(self, req: Request) -> Reply:
        """``GET /_sim/submits[?offset=N&limit=M]``: NDJSON, one accepted submit per line."""
        q = parse_qs(req.query.decode("utf-8", "replace"))
        try:
            offset = int(q.get("offset", ["0"])[0])
            limit_s = q.get("limit")
            limit = int(limit_s[0]) if limit_s else None
        except ValueError:
            return _bad("offset and limit must be integers")
        return response(200, b"".join(self.iter_ndjson(offset, limit)), b"application/x-ndjson")

    def iter_ndjson(self, offset: int = 0, limit: int | None = None) -> Iterator[bytes]:
        """Yield the submit records as NDJSON lines."""
        for rec in self.state.iter_submits(offset, limit):
            yield _dumps(rec) + b"\n"

    def refcounts(self, req: Request) -> Reply:
        """``GET /_sim/refcounts``: ``{ref: accepted submits}`` (used to merge worker stats)."""
        state = self.state
        return ok_json(_dumps({ref: state.submit_count(ref) for ref in state.first_index}))

    def get_config(self, req: Request) -> Reply:
        """``GET /_sim/config``: the whole configuration."""
        return ok_json(_dumps(self.config.to_dict()))

    def set_config(self, req: Request) -> Reply:
        """``POST /_sim/config``: apply a subset of fields; returns the whole configuration."""
        try:
            data = self._parse_json(req)
            self.apply_config(data)
        except (BadRequest, ConfigError) as exc:
            return _bad(str(exc))
        return ok_json(_dumps(self.config.to_dict()))

    def apply_config(self, updates: Any) -> list[str]:
        """Apply a config update (raises :class:`ConfigError`)."""
        if type(updates) is not dict:
            raise ConfigError("config update must be a JSON object")
        changed = self.config.apply(updates)
        self._reconfigured(changed)
        return changed

    def reset(self, req: Request) -> Reply:
        """``POST /_sim/reset``: clear records/counters; ``{"config": true}`` also restores the
        configuration the simulator started with."""
        restore = False
        if req.body.strip():
            try:
                data = self._parse_json(req)
            except BadRequest as exc:
                return _bad(str(exc))
            restore = type(data) is dict and data.get("config") is True
        self.reset_all(restore)
        return ok_json(b'{"status":"reset"}')

    def reset_all(self, restore_config: bool = False) -> None:
        """Clear records, counters and pending reports; optionally restore the start config."""
        if restore_config:
            self.config.apply(self.initial_config.to_dict())
        self.state.reset()
        self.emitter.reset()
        self.faults.reset()
        self._reconfigured(None)

    def mo(self, req: Request) -> Reply:
        """``POST /_sim/mo``: emit an inbound message, split into ``parts`` posts to ``mo_url``."""
        try:
            data = self._parse_json(req)
            if type(data) is not dict:
                raise BadRequest("body must be a JSON object")
            sender, to, text = data.get("from"), data.get("to"), data.get("text")
            if type(sender) is not str or not sender:
                raise BadRequest("from must be a non-empty string")
            if type(to) is not str or not to:
                raise BadRequest("to must be a non-empty string")
            if type(text) is not str:
                raise BadRequest("text must be a string")
            parts = _parts(data.get("parts"), text)
            if parts > max(1, len(text)):
                raise BadRequest("parts exceeds the text length")
            shuffle = data.get("shuffle", False)
            if type(shuffle) is not bool:
                raise BadRequest("shuffle must be a boolean")
            url = data.get("url") or self.config.mo_url
            if url is not None and (
                type(url) is not str or not url.startswith(("http://", "https://"))
            ):
                raise BadRequest("url must be an http(s) URL")
        except BadRequest as exc:
            return _bad(str(exc))
        if not url:
            return error_response(409, "mo_url_not_set", "set mo_url first (or pass url)")
        token = self.config.mo_token or self.config.dlr_token

        async def run() -> bytes:
            result = await self.emitter.send_mo(sender, to, text, parts, url, token, shuffle)
            return json_response(200, result)

        return run()
