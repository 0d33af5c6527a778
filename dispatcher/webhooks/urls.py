"""Webhook URL safety: only http(s), and never an address inside our own network.

A webhook URL is chosen by a customer, so without these checks it could make our workers call
the cloud metadata service, a database admin page on the private network, or loopback services.
URLs are checked when they are registered (:func:`check_url`, resolving the name) and again by
the sender on every connection, against the address actually connected to (see
``workers/webhooks/http.py``), so a name that later re-resolves to a private address (DNS
rebinding) is refused too.

``allow_private`` (setting ``webhook_allow_private``) permits loopback, private, link-local and
CGNAT addresses, for tests and local runs. Cloud metadata, unspecified, multicast and reserved
addresses are refused even then: no webhook receiver ever lives there.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import SplitResult, urlsplit

MAX_URL_LENGTH = 2048
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Instance metadata and similar link-local services of the cloud providers.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, Oracle, DigitalOcean, OpenStack …
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.253",  # AWS VPC DNS
        "169.254.169.123",  # AWS time sync
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (legacy)
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "fd00:ec2::23",  # AWS VPC DNS over IPv6
        "fd00:ec2::123",  # AWS time sync over IPv6
    )
)
CGNAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
# Kinds that ``allow_private`` permits.
PRIVATE_KINDS = frozenset({"loopback", "private", "link-local", "CGNAT"})


class UrlRefused(ValueError):
    """A webhook URL we will not call; ``code`` is stable, ``reason`` is for people."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, Teredo, NAT64), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if any(ip in net for net in NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_kind(ip: IPAddress) -> str | None:
    """What sort of non-public address ``ip`` is (``None``: a public address)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        inner = _embedded_v4(ip)
        if inner is not None:
            return address_kind(inner) or ("private" if ip.is_private else None)
    if ip in METADATA_ADDRESSES:
        return "cloud metadata"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_multicast:
        return "multicast"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if isinstance(ip, ipaddress.IPv4Address) and ip in CGNAT:
        return "CGNAT"
    if ip.is_private:
        return "private"
    if ip.is_reserved or not ip.is_global:
        return "reserved"
    return None


def address_problem(ip: IPAddress | str, allow_private: bool = False) -> str | None:
    """Why we must not connect to ``ip`` (``None``: we may)."""
    addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    kind = address_kind(addr)
    if kind is None or (allow_private and kind in PRIVATE_KINDS):
        return None
    return f"{kind} address"


def check_syntax(url: str) -> SplitResult:
    """An absolute http(s) URL with a host, no credentials, at most 2048 characters."""
    if not isinstance(url, str) or not url:
        raise UrlRefused("invalid_url", "empty URL")
    if len(url) > MAX_URL_LENGTH:
        raise UrlRefused("invalid_url", f"longer than {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise UrlRefused("invalid_url", "contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise UrlRefused("invalid_url", f"not a valid URL ({exc})") from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise UrlRefused("invalid_scheme", "only http and https URLs are allowed")
    if not parts.hostname:
        raise UrlRefused("invalid_url", "the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused(
            "credentials_in_url",
            "credentials in the URL are not allowed (verify our signature instead)",
        )
    return parts


def literal_ip(host: str) -> IPAddress | None:
    """``host`` as an IP address when it is a literal one (brackets and zone allowed)."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def check_address(host: str, ip: IPAddress | str, allow_private: bool) -> None:
    """Raise :class:`UrlRefused` when ``host`` resolving to ``ip`` must not be called."""
    problem = address_problem(ip, allow_private)
    if problem is not None:
        raise UrlRefused("forbidden_address", f"{host} is a {problem}")


Resolver = Callable[..., list[tuple[Any, ...]]]


def resolve_addresses(
    host: str, port: int, getaddrinfo: Resolver = socket.getaddrinfo
) -> list[str]:
    """Every address ``host`` resolves to (blocking; for registration, not for the workers)."""
    try:
        infos = getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UrlRefused("unresolvable", f"{host} does not resolve") from exc
    return sorted({str(info[4][0]) for info in infos})


def check_url(
    url: str,
    allow_private: bool = False,
    resolve: bool = True,
    getaddrinfo: Resolver = socket.getaddrinfo,
) -> str:
    """Validate a webhook URL at registration; returns it unchanged or raises
    :class:`UrlRefused`.

    Literal IP hosts are always checked. With ``resolve`` the name is resolved and refused when
    *any* of its addresses is forbidden (clearer for the customer than a URL that works only
    sometimes; the sender, which connects only to allowed addresses, is the real guard).
    """
    parts = check_syntax(url)
    host = parts.hostname or ""
    ip = literal_ip(host)
    if ip is not None:
        check_address(host, ip, allow_private)
        return url
    if host.rstrip(".").lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(
        ".localhost"
    ):
        check_address(host, "127.0.0.1", allow_private)
    if resolve:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        for addr in resolve_addresses(host, port, getaddrinfo):
            check_address(host, addr, allow_private)
    return url


def safe_host(url: str) -> str:
    """Scheme, host and port of ``url`` only: what logs may show (paths can hold tokens)."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "invalid-url"
    return f"{parts.scheme}://{parts.hostname or ''}{port}"
