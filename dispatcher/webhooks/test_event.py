""" "Send a test event" for the panel: one signed POST to a customer's webhook URL, made from
the API process, and the receiver's answer as it came back.

The URL gets the same checks as every URL we fetch (:mod:`dispatcher.webhooks.urls`): the
canonical form, then the name is resolved once and the request is made to an address that
passed :func:`~dispatcher.webhooks.urls.address_problem` (pinned: a DNS answer that changes
between the check and the connect cannot lead elsewhere). The host name stays in the ``Host``
header and in TLS (SNI and the certificate check). No redirects, no proxies from the
environment, a bounded time and at most a few KiB of the answer read. Signed exactly as the
webhooks lane signs (Standard Webhooks, every current secret).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from dispatcher.ids import new_message_id
from dispatcher.times import iso_ms
from dispatcher.webhooks.payloads import dumps
from dispatcher.webhooks.sign import webhook_headers
from dispatcher.webhooks.urls import UrlRefused, address_problem, check_static

EVENT_TEST = "webhook.test"
READ_CAP_BYTES = 4096
SHOWN_CHARS = 1000


@dataclass(frozen=True)
class EventAnswer:
    """What happened: the receiver's status and body, or why there was no answer."""

    url: str
    event_id: str
    status_code: int | None = None
    body: str = ""
    latency_ms: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """A 2xx answer: the receiver took the event."""
        return self.status_code is not None and 200 <= self.status_code < 300


def sample_payload(event_id: str, account: str, now: float) -> dict[str, object]:
    """The body of a test event (a receiver can tell it from real events by ``type``)."""
    return {
        "type": EVENT_TEST,
        "id": event_id,
        "account": account,
        "sentAt": iso_ms(now),
        "text": "A test event from the smsdispatch panel. Answer 2xx to acknowledge it.",
    }


async def _addresses(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(3.0):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError, UnicodeError) as exc:
        raise UrlRefused("unresolvable", f"{host} does not resolve") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def send_test_event(
    url: str,
    secrets: Sequence[str],
    account: str,
    allow_private: bool,
    timeout_s: float,
) -> EventAnswer:
    """POST a signed test event to ``url``; never raises for the receiver's faults."""
    event_id = new_message_id()
    now = time.time()
    body = dumps(sample_payload(event_id, account, now)).encode()
    try:
        target = check_static(url, allow_private)
        if target.ip is not None:
            candidates = [str(target.ip)]
        else:
            candidates = await _addresses(target.host, target.port)
        allowed = [a for a in candidates if address_problem(a, allow_private) is None]
        if not allowed:
            problem = address_problem(candidates[0], allow_private) if candidates else "no"
            raise UrlRefused("forbidden_address", f"{target.host} resolves to a {problem}")
    except UrlRefused as exc:
        return EventAnswer(url, event_id, error=exc.reason)
    ip = allowed[0]
    host_header = target.url.split("/", 3)[2]  # the authority as written (host[:port])
    pinned_authority = (f"[{ip}]" if ":" in ip else ip) + f":{target.port}"
    pinned = target.url.replace(host_header, pinned_authority, 1)
    headers = {**webhook_headers(event_id, body, secrets, now), "Host": host_header}
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    started = time.perf_counter()
    try:
        async with (
            httpx.AsyncClient(trust_env=False, follow_redirects=False, timeout=timeout_s) as http,
            http.stream(
                "POST", pinned, content=body, headers=headers, extensions=extensions
            ) as resp,
        ):
            buf = b""
            async for chunk in resp.aiter_raw():
                buf += chunk
                if len(buf) >= READ_CAP_BYTES:
                    break
            latency = (time.perf_counter() - started) * 1000
            text = buf[:READ_CAP_BYTES].decode("utf-8", errors="replace")[:SHOWN_CHARS]
            return EventAnswer(url, event_id, resp.status_code, text, latency)
    except httpx.TimeoutException:
        return EventAnswer(url, event_id, error=f"no answer within {timeout_s:g} s")
    except httpx.HTTPError as exc:
        return EventAnswer(url, event_id, error=f"{type(exc).__name__}: {exc}"[:200])
