"""Number look-ups for the API and the panel: validity here, the rest from a carrier.

A number that is not one we could send to (too short, no country…) is answered here as not
valid, without asking anyone. Any other is looked up over the first connection that serves it
and answers look-ups (``lookups`` in the connections file; the simulator does), the routing
table's order, both lanes, the account's own connections included; a failing connection
hands over to the next. Answers are cached in Redis for ``SMSDISPATCH_LOOKUP_CACHE_S``
(shared by every API process; a Redis that is down only means no cache).
"""

from __future__ import annotations

import contextlib
import time

import httpx
import orjson
import redis.asyncio
import structlog
from redis.exceptions import RedisError

from dispatcher.config import Settings
from dispatcher.lookup.carriers import LookupFailed, ask
from dispatcher.lookup.result import LookupResult
from dispatcher.routing import ConnectionConfig, current_table
from dispatcher.sms import InvalidPhoneNumber, normalize, region

log = structlog.get_logger(component="lookup")
CACHE_KEY = "smsd:hlr:{}:{}"  # account name, E.164
LANES = ("priority", "bulk")


class LookupNotSupported(Exception):
    """No connection that serves the number answers look-ups."""


class AllLookupsFailed(Exception):
    """Every connection that could answer failed; ``failures`` says how, one per connection."""

    def __init__(self, failures: list[LookupFailed]) -> None:
        super().__init__("; ".join(str(f) for f in failures))
        self.failures = failures


def _not_valid(raw: str, reason: str, now: float) -> LookupResult:
    cleaned = "".join(ch for ch in raw.strip() if ch.isdigit() or ch == "+")[:20] or raw[:20]
    country = None
    with contextlib.suppress(InvalidPhoneNumber):
        country = region("+" + cleaned.lstrip("+"))
    return LookupResult(
        phone=cleaned, valid=False, country=country, looked_up_at=now, invalid_reason=reason
    )


class NumberLookup:
    """Built at start-up; one per process (it holds an HTTP client)."""

    def __init__(
        self,
        settings: Settings,
        cache: redis.asyncio.Redis | None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.settings = settings
        self.cache = cache if settings.lookup_cache_s > 0 else None
        self.http = http or httpx.AsyncClient(timeout=settings.lookup_timeout_s)

    def connections(self, phone: str, account: str | None) -> list[ConnectionConfig]:
        """Connections that serve ``phone`` for the account, in routing order (both lanes);
        ``[]`` when no connection serves it at all."""
        table = current_table(self.settings)
        out: list[ConnectionConfig] = []
        for lane in LANES:
            for tier in table.tiers(phone, lane, account):
                out.extend(c for c in tier if c not in out)
        return out

    async def lookup(self, raw: str, account: str | None) -> tuple[LookupResult, bool]:
        """The look-up of ``raw`` and whether it came from the cache.

        Raises :class:`~dispatcher.sms.InvalidPhoneNumber` (reason ``not_a_number``) for input
        that is no phone number at all, :class:`LookupNotSupported` and
        :class:`AllLookupsFailed`."""
        now = time.time()
        try:
            phone = normalize(raw, self.settings.default_region or None)
        except InvalidPhoneNumber as exc:
            if exc.reason == "not_a_number":
                raise
            return _not_valid(raw, exc.reason, now), False
        key = CACHE_KEY.format(account or "", phone)
        cached = await self._cached(key)
        if cached is not None:
            return cached, True
        serving = self.connections(phone, account)
        able = [c for c in serving if c.lookups]
        if not able:
            which = "no carrier connection serves" if not serving else "no connection serving"
            raise LookupNotSupported(
                f"{which} {phone}" + ("" if not serving else " answers number look-ups")
            )
        failures: list[LookupFailed] = []
        for conn in able:
            try:
                result = await ask(self.http, conn, phone, now)
            except LookupFailed as failure:
                log.warning("lookup.failed", connection=conn.name, reason=failure.reason)
                failures.append(failure)
                continue
            await self._store(key, result)
            return result, False
        raise AllLookupsFailed(failures)

    async def _cached(self, key: str) -> LookupResult | None:
        if self.cache is None:
            return None
        try:
            raw = await self.cache.get(key)
        except RedisError as exc:
            log.warning("lookup.cache_unavailable", error=type(exc).__name__)
            return None
        if raw is None:
            return None
        try:
            return LookupResult.from_cache(orjson.loads(raw))
        except (orjson.JSONDecodeError, TypeError):  # written by another version: ask again
            return None

    async def _store(self, key: str, result: LookupResult) -> None:
        if self.cache is None:
            return
        try:
            await self.cache.set(
                key,
                orjson.dumps(result.to_cache()),
                px=max(1, round(self.settings.lookup_cache_s * 1000)),
            )
        except RedisError as exc:
            log.warning("lookup.cache_unavailable", error=type(exc).__name__)

    async def close(self) -> None:
        """Close the HTTP client."""
        await self.http.aclose()
