"""URL safety for every URL the system fetches: only http(s), and never an address inside our
own network unless the fetcher's policy allows it. The one place that judges a URL.

A webhook URL is chosen by a customer, so without these checks it could make our workers call
the cloud metadata service, a database admin page on the private network, or loopback services.

Judge exactly what the client connects to. HTTP clients normalise hosts before they connect
(IDNA maps full-width digits and ideographic full stops to ASCII, ``ｌｏｃａｌｈｏｓｔ`` to
``localhost``; resolvers read ``2130706433`` or ``0x7f.1`` as 127.0.0.1), so a guard that reads
the host as written is bypassed by any such spelling. :func:`canonical` therefore turns a URL
into the one form every fetcher is given: an ASCII host (IDNA A-labels, lower case), IP
literals in their standard form, no user info, no fragment. Non-ASCII hosts that are not valid
IDNA names, hosts with characters no host name has, and IPv4 addresses written in any form but
dotted decimal are refused outright. The checks then run on that canonical host:

* at submission / registration (:func:`check_url`; :func:`check_resolved` resolves the name
  without blocking the event loop);
* at connect time, by each fetcher, on the address actually connected to (DNS rebinding):
  the webhook client's resolver and socket factory (``workers/webhooks/http.py``) and the
  carrier client (``workers/connectors/wire.py``).

``allow_private`` permits loopback, private, link-local and CGNAT addresses (webhooks in tests
and local runs: setting ``webhook_allow_private``; carrier connections, which the operator
configures). Cloud metadata, unspecified, multicast and reserved addresses are refused even
then: nothing we call ever lives there.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import idna

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
# The Fetch standard's "bad ports" (https://fetch.spec.whatwg.org/#bad-port): services that
# speak something other than HTTP (mail, DNS, SSH, IRC …), which a POST must not be aimed at.
BAD_PORTS = frozenset(
    {1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101}
    | {102, 103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179}
    | {389, 427, 465, 512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587}
    | {601, 636, 989, 990, 993, 995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061}
    | {6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080}
)
# A host name label once IDNA has made it ASCII (underscores occur in real names).
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
# The WHATWG URL standard reads a host whose last label is a number as an IPv4 address (and so
# do resolvers, via inet_aton): 2130706433, 0x7f.1, 0177.0.0.1, 127.1 all mean 127.0.0.1.
_NUMBER = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")


class UrlRefused(ValueError):
    """A URL we will not call; ``code`` is stable, ``reason`` is for people."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Canonical:
    """A URL in the form fetchers are given, and its parts."""

    url: str
    scheme: str
    host: str  # ASCII, lower case; an IPv6 literal without brackets
    port: int  # explicit or the scheme's default
    ip: IPAddress | None  # the host, when it is an IP literal


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
    """Why we must not connect to ``ip`` (``None``: we may). A string that is not an IP
    address in standard form is a problem in itself."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0]) if isinstance(ip, str) else ip
    except ValueError:
        return "malformed address"
    kind = address_kind(addr)
    if kind is None or (allow_private and kind in PRIVATE_KINDS):
        return None
    return f"{kind} address"


def canonical_host(host: str) -> tuple[str, IPAddress | None]:
    """``host`` as clients connect to it (ASCII, lower case) and its IP address if it is one;
    :class:`UrlRefused` for a host no client would read the way it is written."""
    if ":" in host:  # an IPv6 literal (urlsplit drops the brackets)
        literal = host.split("%", 1)[0]  # a zone only makes sense on this machine: dropped
        try:
            v6 = ipaddress.IPv6Address(literal) if literal.isascii() else None
        except ValueError:
            v6 = None
        if v6 is None:
            raise UrlRefused("invalid_url", "the host is not a valid IPv6 address")
        return v6.compressed, v6
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError):
            raise UrlRefused(
                "invalid_url", "the host is not a valid internationalised domain name"
            ) from None
    host = host.lower()
    labels = host.split(".")
    if labels[-1] == "" and len(labels) > 1:
        labels.pop()  # one trailing dot: a fully qualified name
    if not all(_LABEL.fullmatch(label) for label in labels) or len(host) > 253:
        raise UrlRefused("invalid_url", "the host has characters no host name has")
    if _NUMBER.fullmatch(labels[-1]):
        try:
            v4 = ipaddress.IPv4Address(host)
        except ValueError:
            raise UrlRefused(
                "invalid_url",
                "the host is an IPv4 address written in a non-standard form (use dotted decimal)",
            ) from None
        return host, v4
    return host, None


def canonical(url: str, restrict_ports: bool = True) -> Canonical:
    """An absolute http(s) URL with a host, no credentials, at most 2048 characters, on a port
    that speaks HTTP (``restrict_ports``), in the form every fetcher is given."""
    if not isinstance(url, str) or not url:
        raise UrlRefused("invalid_url", "empty URL")
    if len(url) > MAX_URL_LENGTH:
        raise UrlRefused("invalid_url", f"longer than {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 or c == "\\" for c in url):
        raise UrlRefused("invalid_url", "contains whitespace, control characters or backslashes")
    try:
        parts = urlsplit(url)
        explicit_port = parts.port
    except ValueError as exc:
        raise UrlRefused("invalid_url", f"not a valid URL ({exc})") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UrlRefused("invalid_scheme", "only http and https URLs are allowed")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UrlRefused(
            "credentials_in_url",
            "credentials in the URL are not allowed (verify our signature instead)",
        )
    if not parts.hostname:
        raise UrlRefused("invalid_url", "the URL has no host")
    host, ip = canonical_host(parts.hostname)
    if explicit_port == 0 or (restrict_ports and explicit_port in BAD_PORTS):
        raise UrlRefused("forbidden_port", f"port {explicit_port} does not speak HTTP")
    port = explicit_port or (443 if scheme == "https" else 80)
    authority = f"[{host}]" if ":" in host else host
    if explicit_port is not None:
        authority += f":{explicit_port}"
    rebuilt = f"{scheme}://{authority}{parts.path}" + (f"?{parts.query}" if parts.query else "")
    return Canonical(rebuilt, scheme, host, port, ip)


def check_address(host: str, ip: IPAddress | str, allow_private: bool) -> None:
    """Raise :class:`UrlRefused` when ``host`` resolving to ``ip`` must not be called."""
    problem = address_problem(ip, allow_private)
    if problem is not None:
        raise UrlRefused("forbidden_address", f"{host} is a {problem}")


def _is_localhost(host: str) -> bool:
    name = host.rstrip(".")
    return name in ("localhost", "localhost.localdomain") or name.endswith(".localhost")


def check_static(url: str, allow_private: bool = False, restrict_ports: bool = True) -> Canonical:
    """Every check that needs no DNS: the canonical form, and the address of an IP literal or
    a ``localhost`` name. Returns the canonical URL or raises :class:`UrlRefused`."""
    target = canonical(url, restrict_ports)
    if target.ip is not None:
        check_address(target.host, target.ip, allow_private)
    elif _is_localhost(target.host):
        check_address(target.host, "127.0.0.1", allow_private)
    return target


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
    restrict_ports: bool = True,
) -> str:
    """Validate a URL at registration; returns its canonical form (store that one) or raises
    :class:`UrlRefused`.

    Literal IP hosts are always checked. With ``resolve`` the name is resolved and refused when
    *any* of its addresses is forbidden (clearer for the customer than a URL that works only
    sometimes; the fetcher, which connects only to allowed addresses, is the real guard).
    """
    target = check_static(url, allow_private, restrict_ports)
    if resolve and target.ip is None:
        for addr in resolve_addresses(target.host, target.port, getaddrinfo):
            check_address(target.host, addr, allow_private)
    return target.url


# getaddrinfo answers that say the name does not exist (others are temporary trouble).
_NO_SUCH_NAME = frozenset(
    getattr(socket, name) for name in ("EAI_NONAME", "EAI_NODATA") if hasattr(socket, name)
)


async def check_resolved(url: str, allow_private: bool = False, timeout_s: float = 2.0) -> str:
    """:func:`check_url` for a request handler: resolves without blocking the event loop.

    A name that does not exist is refused; a resolver that is slow or failing is not the
    sender's fault, so then the URL passes on its static checks (the fetcher checks the
    addresses it connects to anyway).
    """
    target = check_static(url, allow_private)
    if target.ip is not None or _is_localhost(target.host):
        return target.url
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout_s):
            infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno in _NO_SUCH_NAME:
            raise UrlRefused("unresolvable", f"{target.host} does not resolve") from exc
        return target.url
    except (OSError, TimeoutError, UnicodeError):
        return target.url
    for info in infos:
        check_address(target.host, str(info[4][0]), allow_private)
    return target.url


def safe_host(url: str) -> str:
    """Scheme, host and port of ``url`` only: what logs may show (paths can hold tokens)."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "invalid-url"
    return f"{parts.scheme}://{parts.hostname or ''}{port}"
