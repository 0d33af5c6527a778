"""The webhook HTTP client: aiohttp with address checks at every step (the only module of the
webhooks lane that imports aiohttp; its errors stop here).

:meth:`AiohttpPoster.post` hands aiohttp only the canonical form of a URL
(:func:`dispatcher.webhooks.urls.check_static`: ASCII host, literal addresses checked), so
aiohttp connects to exactly the host that was judged. DNS rebinding: the connector asks
:class:`SafeResolver` for the addresses and connects only to those it returns, all of which
passed :func:`dispatcher.webhooks.urls.address_problem`; the host name is kept for the ``Host``
header and TLS (SNI and certificate check). Last, :func:`guarded_socket_factory` checks the
address of every socket aiohttp opens, whatever path led there. Redirects are not followed,
proxies from the environment are ignored, each request is bounded by ``webhook_timeout_s``, and
at most a few KiB of the answer are read.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Mapping

import aiohttp
from aiohappyeyeballs import AddrInfoType
from aiohttp.abc import AbstractResolver, ResolveResult

from dispatcher.webhooks.urls import UrlRefused, address_problem, check_static
from workers.webhooks.classify import MAX_BODY_CHARS, HttpAnswer
from workers.webhooks.errors import WebhookConnectError, WebhookRefused, WebhookTimeout

READ_CAP_BYTES = 4096


class AddressRefusedError(OSError):
    """Raised inside the resolver; aiohttp wraps it, :meth:`AiohttpPoster.post` unwraps it."""


class SafeResolver(AbstractResolver):
    """Resolves with aiohttp's default resolver and drops every forbidden address."""

    def __init__(self, allow_private: bool, inner: AbstractResolver | None = None) -> None:
        self.allow_private = allow_private
        self._inner = inner if inner is not None else aiohttp.DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The allowed addresses of ``host``; :class:`AddressRefusedError` when none is."""
        infos = await self._inner.resolve(host, port, family)
        allowed = []
        problems = set()
        for info in infos:
            problem = address_problem(info["host"], self.allow_private)
            if problem is None:
                allowed.append(info)
            else:
                problems.add(problem)
        if not allowed:
            raise AddressRefusedError(f"{host} resolves to a {', '.join(sorted(problems))}")
        return allowed

    async def close(self) -> None:
        """Release the inner resolver."""
        await self._inner.close()


def guarded_socket_factory(allow_private: bool) -> Callable[[AddrInfoType], socket.socket]:
    """A socket factory for aiohttp that refuses to open a socket towards a forbidden address
    (the last check before ``connect``, whichever way the address was found)."""

    def factory(addr_info: AddrInfoType) -> socket.socket:
        family, kind, proto, _name, sockaddr = addr_info
        problem = address_problem(str(sockaddr[0]), allow_private)
        if problem is not None:
            raise AddressRefusedError(f"{sockaddr[0]} is a {problem}")
        return socket.socket(family, kind, proto)

    return factory


def make_connector(
    allow_private: bool, max_in_flight: int = 64, resolver: AbstractResolver | None = None
) -> aiohttp.TCPConnector:
    """The guarded connector (``resolver``: the name lookup under the check, for tests)."""
    return aiohttp.TCPConnector(
        limit=max_in_flight,
        ttl_dns_cache=60,
        resolver=SafeResolver(allow_private, resolver),
        socket_factory=guarded_socket_factory(allow_private),
        enable_cleanup_closed=True,
    )


async def make_session(
    allow_private: bool, max_in_flight: int = 64, resolver: AbstractResolver | None = None
) -> aiohttp.ClientSession:
    """The per-process session of the webhooks lane (call inside the process's loop)."""
    return aiohttp.ClientSession(
        connector=make_connector(allow_private, max_in_flight, resolver),
        skip_auto_headers=("User-Agent",),
        trust_env=False,
    )


async def _read_capped(resp: aiohttp.ClientResponse) -> str:
    buf = b""
    while len(buf) < READ_CAP_BYTES:
        chunk = await resp.content.read(READ_CAP_BYTES - len(buf))
        if not chunk:
            break
        buf += chunk
    # What a receiver answers is kept as text the log can hold (PostgreSQL refuses NUL).
    return buf.decode("utf-8", errors="replace").replace("\x00", "\ufffd")[:MAX_BODY_CHARS]


def _refused_cause(exc: BaseException) -> AddressRefusedError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, AddressRefusedError):
            return seen
        if isinstance(seen, aiohttp.ClientConnectorError) and isinstance(
            seen.os_error, AddressRefusedError
        ):
            return seen.os_error
        seen = seen.__cause__
    return None


class AiohttpPoster:
    """POSTs signed webhook bodies; answers become :class:`HttpAnswer`, failures our errors."""

    def __init__(self, session: aiohttp.ClientSession, timeout_s: float, allow_private: bool):
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.allow_private = allow_private

    def _target(self, url: str) -> str:
        """The canonical URL to connect to (stored URLs may predate canonical storage)."""
        try:
            return check_static(url, self.allow_private).url
        except UrlRefused as exc:
            raise WebhookRefused(exc.reason) from exc

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        """One POST, no redirects; raises a :class:`~workers.webhooks.errors.WebhookError`."""
        target = self._target(url)
        started = time.perf_counter()
        try:
            async with self.session.post(
                target,
                data=body,
                headers=dict(headers),
                allow_redirects=False,
                timeout=self.timeout,
            ) as resp:
                text = await _read_capped(resp)
                latency = (time.perf_counter() - started) * 1000
                return HttpAnswer(resp.status, resp.headers.get("Retry-After"), text, latency)
        except TimeoutError as exc:
            raise WebhookTimeout(f"no answer within {self.timeout.total:g} s") from exc
        except aiohttp.InvalidURL as exc:
            raise WebhookRefused(f"invalid URL ({type(exc).__name__})") from exc
        except (aiohttp.ClientError, OSError) as exc:
            refused = _refused_cause(exc)
            if refused is not None:
                raise WebhookRefused(str(refused)) from exc
            raise WebhookConnectError(f"{type(exc).__name__}: {exc}"[:200]) from exc
