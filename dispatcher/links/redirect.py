"""The redirect service: ``GET {base}/{code}`` answers ``302`` to the URL the code stands for.

A plain ASGI app on uvicorn (no web framework: the path is one code, and per-request routing and
validation would cost more than the answer itself; docs/short-links.md has the measurement),
served by ``smsdispatch links`` as its own process, so clicks from a campaign never slow the
sending API. Link rows never change, so they are cached per process; unknown codes are
remembered briefly, so guessing codes costs the log little. Answers:

- ``302`` to the stored URL, and the click recorded (:mod:`dispatcher.links.clicks`);
  ``HEAD`` gets the same answer, recorded as a preview;
- ``410`` for a link past its lifetime, ``404`` for any other path: short plain pages;
- never a redirect to anything but a URL stored for that code (no open redirect).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import urlsplit

import structlog
from prometheus_client import Counter
from sqlalchemy import Engine

from dispatcher.api.metrics import render as render_metrics
from dispatcher.config import Settings
from dispatcher.links.clicks import ClickRecorder
from dispatcher.links.clients import classify
from dispatcher.links.urls import location
from dispatcher.store.db import StoreUnavailable, ping, reading
from dispatcher.store.links import Click, LinkTarget, find_links

log = structlog.get_logger(component="links")

REDIRECTS = Counter(
    "smsdispatch_link_requests",
    "Requests to the redirect service, by outcome (redirect, preview, expired, unknown).",
    ["outcome"],
)
_UNKNOWN = REDIRECTS.labels("unknown")
_EXPIRED = REDIRECTS.labels("expired")
_PREVIEW = REDIRECTS.labels("preview")
_REDIRECT = REDIRECTS.labels("redirect")
_CODE = re.compile(r"[A-Za-z0-9]{6,16}")
_MISS_TTL_S = 2.0
_PAGE = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>{title}</title>"
    "<meta name=robots content=noindex><body style='font-family:sans-serif;margin:3em'>"
    "<h1>{title}</h1><p>{text}</p></body></html>"
)
_NOT_FOUND = _PAGE.format(
    title="Link not found", text="This short link does not exist. Check that it was copied whole."
).encode()
_GONE = _PAGE.format(
    title="Link expired", text="This short link has expired and no longer leads anywhere."
).encode()
_COMMON = [
    (b"cache-control", b"private, no-store"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-robots-tag", b"noindex"),
    (b"x-content-type-options", b"nosniff"),
]
_PAGE_HEADERS = [*_COMMON, (b"content-type", b"text/html; charset=utf-8")]


class LinkCache:
    """Code → link, bounded (least recently used out), and codes known not to exist, briefly."""

    def __init__(self, size: int = 200_000) -> None:
        self.size = size
        self._hits: OrderedDict[str, LinkTarget] = OrderedDict()
        self._misses: OrderedDict[str, float] = OrderedDict()

    def get(self, code: str, now: float) -> LinkTarget | bool | None:
        """The cached link, ``None`` when known not to exist, ``False`` when not cached."""
        hit = self._hits.get(code)
        if hit is not None:
            return hit
        until = self._misses.get(code)
        if until is not None:
            if until > now:
                return None
            del self._misses[code]
        return False

    def put(self, code: str, link: LinkTarget | None, now: float) -> None:
        """Remember what the log said about ``code``."""
        if link is None:
            self._misses[code] = now + _MISS_TTL_S
            if len(self._misses) > self.size:
                self._misses.popitem(last=False)
            return
        self._hits[code] = link
        if len(self._hits) > self.size:
            self._hits.popitem(last=False)


class LinkLoader:
    """Looks codes up in the log in groups: every code asked for while a look-up runs joins
    the next one, so under load one query (in one thread hop) answers dozens of clicks,
    as the API's group commit does for sends. Idle, a click costs one query as before."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._waiting: dict[str, list[asyncio.Future[LinkTarget | None]]] = {}
        self._running = False

    async def get(self, code: str) -> LinkTarget | None:
        """The link of ``code`` (``None``: no such link); raises
        :class:`~dispatcher.store.db.StoreUnavailable`."""
        fut: asyncio.Future[LinkTarget | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(code, []).append(fut)
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, {}
                try:
                    found = await asyncio.to_thread(self._find, list(batch))
                except StoreUnavailable as exc:
                    for futs in batch.values():
                        for f in futs:
                            if not f.done():
                                f.set_exception(exc)
                    continue
                for code, futs in batch.items():
                    for f in futs:
                        if not f.done():
                            f.set_result(found.get(code))
        finally:
            self._running = False

    def _find(self, codes: list[str]) -> dict[str, LinkTarget]:
        with reading(self.engine) as conn:
            return find_links(conn, codes)


class RedirectApp:
    """The ASGI app (see the module docstring)."""

    def __init__(self, settings: Settings, engine: Engine, recorder: ClickRecorder) -> None:
        self.engine = engine
        self.recorder = recorder
        self.salt = settings.link_ip_salt.encode()
        prefix = (
            urlsplit(settings.short_link_base).path.rstrip("/") if settings.short_link_base else ""
        )
        self.prefix = prefix + "/"
        self.cache = LinkCache()
        self.loader = LinkLoader(engine)
        self._locations: dict[str, bytes] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """ASGI entry point."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method = scope["method"]
        path: str = scope["path"]
        if method not in ("GET", "HEAD"):
            await _answer(send, 405, b"", [(b"allow", b"GET, HEAD")], method)
            return
        if path == "/healthz":
            await _answer(send, 200, b"ok\n", [(b"content-type", b"text/plain")], method)
            return
        if path == "/readyz":  # ready: the log answers (codes not cached need it)
            ready = await asyncio.to_thread(self._log_answers)
            status, text = (200, b"ok\n") if ready else (503, b"the message log is unreachable\n")
            await _answer(send, status, text, [(b"content-type", b"text/plain")], method)
            return
        if path == "/metrics":  # every process's values with --workers > 1, as the API's
            body, content_type = render_metrics()
            await _answer(send, 200, body, [(b"content-type", content_type.encode())], method)
            return
        code = path[len(self.prefix) :] if path.startswith(self.prefix) else ""
        if not _CODE.fullmatch(code):
            _UNKNOWN.inc()
            await _answer(send, 404, _NOT_FOUND, _PAGE_HEADERS, method)
            return
        now = time.time()
        link = self.cache.get(code, now)
        if link is False:
            try:
                link = await self.loader.get(code)
            except StoreUnavailable:
                await _answer(send, 503, b"", [(b"retry-after", b"5")], method)
                return
            self.cache.put(code, link, now)
        if not isinstance(link, LinkTarget):
            _UNKNOWN.inc()
            await _answer(send, 404, _NOT_FOUND, _PAGE_HEADERS, method)
            return
        if link.expires_at <= now:
            _EXPIRED.inc()
            await _answer(send, 410, _GONE, _PAGE_HEADERS, method)
            return
        headers = _headers(scope)
        client, bot = classify(
            method,
            headers.get(b"user-agent", b"").decode("latin-1"),
            (headers.get(b"sec-purpose", b"") + headers.get(b"purpose", b"")).decode("latin-1"),
        )
        (_PREVIEW if bot else _REDIRECT).inc()
        self.recorder.add(
            Click(
                link.code,
                link.message_id,
                link.account_id,
                now,
                client,
                bot,
                self._ip(scope),
                link.url,
            )
        )
        target = self._locations.get(code)
        if target is None:
            target = location(link.url).encode("latin-1")
            if len(self._locations) < self.cache.size:
                self._locations[code] = target
        await _answer(send, 302, b"", [*_COMMON, (b"location", target)], method)

    def _log_answers(self) -> bool:
        try:
            ping(self.engine)
        except StoreUnavailable:
            return False
        return True

    def _ip(self, scope: dict[str, Any]) -> str | None:
        if not self.salt or not scope.get("client"):
            return None
        return hashlib.blake2b(
            str(scope["client"][0]).encode(), key=self.salt[:64], digest_size=16
        ).hexdigest()

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.recorder.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.to_thread(self.recorder.stop)
                self.engine.dispose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _headers(scope: dict[str, Any]) -> dict[bytes, bytes]:
    return {k.lower(): v for k, v in scope.get("headers") or ()}


async def _answer(
    send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]], method: str
) -> None:
    out = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})


def create_app() -> Any:
    """The redirect service for uvicorn's factory mode, behind the trusted-proxy middleware."""
    from dispatcher.api.proxies import TrustedProxies
    from dispatcher.ops.logs import configure
    from dispatcher.store.db import make_engine

    settings = Settings.from_env()
    configure(settings.log_level, settings.log_format)
    engine = make_engine(settings.database_url, pool_size=4)
    app = RedirectApp(settings, engine, ClickRecorder(engine))
    return TrustedProxies(app, settings.trusted_proxies) if settings.trusted_proxies else app
