"""Forwarded headers count only when the TCP peer is one of the configured proxies.

Behind a reverse proxy the client's address and scheme arrive in ``X-Forwarded-For`` and
``X-Forwarded-Proto``; from anyone else those headers are whatever the client wrote. So they
are applied (the request's client address and scheme rewritten) only for requests whose peer
is in ``SMSDISPATCH_TRUSTED_PROXIES`` (addresses or networks, comma-separated), and ignored
otherwise, loopback included: uvicorn's own handling, which trusts loopback by default, is off
(:mod:`dispatcher.api.serve`). The panel's per-address login limit and its ``Secure`` cookies
depend on this.

The client is the right-most address in ``X-Forwarded-For`` that is not itself a trusted proxy
(each proxy appends the peer it saw; addresses to the left of it were written by the client).
"""

from __future__ import annotations

import ipaddress
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(raw: str) -> tuple[Network, ...]:
    """``"10.0.0.5, 10.1.0.0/16"`` → networks; ``ValueError`` naming a bad entry."""
    out: list[Network] = []
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        try:
            out.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"SMSDISPATCH_TRUSTED_PROXIES: {entry!r} is not an address") from None
    return tuple(out)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


class TrustedProxies:
    """ASGI middleware applying forwarded headers from trusted proxies only."""

    def __init__(self, app: Any, trusted: str) -> None:
        self.app = app
        self.networks = parse_networks(trusted)

    def trusted(self, host: str | None) -> bool:
        """Whether ``host`` (an address) is one of the configured proxies."""
        ip = _ip(host or "")
        return ip is not None and any(ip in net for net in self.networks)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """ASGI entry point."""
        client = scope.get("client")
        if (
            self.networks
            and scope["type"] in ("http", "websocket")
            and client
            and self.trusted(client[0])
        ):
            headers = dict(scope.get("headers") or [])
            forwarded = headers.get(b"x-forwarded-for", b"").decode("latin-1")
            hops = [h.strip() for h in forwarded.split(",") if h.strip()]
            for hop in reversed(hops):
                if _ip(hop) is None:
                    break  # garbage: keep the last address we could trust
                client = (str(_ip(hop)), 0)
                if not self.trusted(hop):
                    break
            proto = headers.get(b"x-forwarded-proto", b"").decode("latin-1")
            scheme = proto.split(",")[-1].strip().lower()
            scope = dict(scope, client=client)
            if scheme in ("http", "https"):
                scope["scheme"] = (
                    scheme if scope["type"] == "http" else scheme.replace("http", "ws")
                )
        await self.app(scope, receive, send)
