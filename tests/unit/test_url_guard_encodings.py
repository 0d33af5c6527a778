"""The URL guard over every spelling of an address inside our network (docs/security.md, SSRF).

Hosts are generated from loopback, private, link-local, CGNAT, metadata, unspecified and
multicast addresses, written with every Unicode decimal digit set and every dot look-alike,
as integers, hex, octal, short forms, with trailing dots, and as IPv6 (IPv4-mapped,
IPv4-compatible, NAT64, 6to4, zones). For each one:

* at submission the guard refuses it, or reads it as a DNS name (an IDNA A-label) that is not
  the address: never as an address it allows;
* at connect time the webhook client and the carrier client attempt no connection at all: the
  socket-level recorder (every ``socket.connect`` of the process) sees none, and a real
  listener on loopback, the port every URL names, accepts none.

A positive control in each test shows the same recorder and listener do see a connection the
guard allows, so the absence of one means something.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import unicodedata
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatcher.config import Settings
from dispatcher.intake.submit import webhook_url_problem
from dispatcher.webhooks.urls import Canonical, UrlRefused, address_problem, check_static
from tests.support.connects import Listener, recording_connects
from workers.connectors.wire import ConnectFailed, WireClient
from workers.webhooks.errors import WebhookConnectError, WebhookRefused
from workers.webhooks.http import (
    AddressRefusedError,
    AiohttpPoster,
    guarded_socket_factory,
    make_session,
)

TARGETS_V4 = [
    "127.0.0.1",
    "127.1.2.3",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "169.254.1.1",
    "100.64.0.1",
    "100.100.100.200",
    "0.0.0.0",
    "224.0.0.1",
]
METADATA_V4 = ["169.254.169.254", "100.100.100.200", "169.254.170.2"]
# Zero of every Unicode decimal digit set (ASCII, full-width, Arabic-Indic, Devanagari, …).
DIGIT_ZEROS = [
    z
    for z in range(0x110000)
    if unicodedata.category(chr(z)) == "Nd"
    and all(unicodedata.decimal(chr(z + i), -1) == i for i in range(10))
]
# The full stop and everything that looks like one or that IDNA maps to one.
DOTS = [
    ".",
    "\u3002",  # ideographic full stop
    "\uff0e",  # fullwidth full stop
    "\uff61",  # halfwidth ideographic full stop
    "\u2024",  # one dot leader
    "\ufe52",  # small full stop
    "\u0589",  # Armenian full stop
    "\u06d4",  # Arabic full stop
    "\u00b7",  # middle dot
    "\u30fb",  # katakana middle dot
]
FULLWIDTH = {c: chr(0xFF10 + int(c)) for c in "0123456789"} | {
    c: chr(0xFF41 + ord(c) - ord("a")) for c in "abcdefx"
}


def digits(text: str, zero: int) -> str:
    """``text`` with its ASCII digits written in the digit set starting at ``zero``."""
    return "".join(chr(zero + int(c)) if c.isdigit() else c for c in text)


def ipv4_forms(ip: str) -> list[str]:
    """ASCII spellings of an IPv4 address that resolvers or URL parsers read as it."""
    o = [int(x) for x in ip.split(".")]
    n = int(ipaddress.IPv4Address(ip))
    return [
        ip,
        ip + ".",
        str(n),
        hex(n),
        hex(n).upper().replace("0X", "0x"),
        "0x" + format(n, "08x"),
        "0" + format(n, "o"),
        ".".join(hex(x) for x in o),
        ".".join("0" + format(x, "o") for x in o),
        ".".join(f"{x:03d}" for x in o),
        f"{o[0]}.{(o[1] << 16) | (o[2] << 8) | o[3]}",
        f"{o[0]}.{o[1]}.{(o[2] << 8) | o[3]}",
        f"{hex(o[0])}.{o[1]}.0{format(o[2], 'o')}.{o[3]}",
        f"{o[0]}.{o[1]}.{o[2]}.{o[3] + 256}",  # overflowing octet
    ]


def ipv6_forms(ip: str) -> list[str]:
    """Bracketed IPv6 spellings that stand for the IPv4 address ``ip``."""
    v4 = ipaddress.IPv4Address(ip)
    hi, lo = int(v4) >> 16, int(v4) & 0xFFFF
    return [
        f"[::ffff:{ip}]",
        f"[::FFFF:{hi:x}:{lo:x}]",
        f"[0:0:0:0:0:ffff:{hi:x}:{lo:x}]",
        f"[0000:0000:0000:0000:0000:ffff:{ip}]",
        f"[::{ip}]",  # IPv4-compatible (deprecated)
        f"[64:ff9b::{ip}]",  # NAT64
        f"[2002:{hi:x}:{lo:x}::]",  # 6to4
        f"[::ffff:{ip}%25eth0]",
        "[" + "".join(FULLWIDTH.get(c, c) for c in f"::ffff:{ip}") + "]",
    ]


def encodings(ip: str) -> Iterator[str]:
    """Every host spelling of ``ip`` this module tries."""
    octets = ip.split(".")
    for zero in DIGIT_ZEROS:
        for dot in DOTS:
            yield dot.join(digits(x, zero) for x in octets)
    for form in ipv4_forms(ip):
        yield form
        yield "".join(FULLWIDTH.get(c, c) for c in form)
        yield form.replace(".", "\u3002")
    yield from ipv6_forms(ip)


NAMES = [
    "localhost",
    "LOCALHOST.",
    "api.localhost",
    "localhost.localdomain",
    "\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54",  # full-width
    "\u24db\u24de\u24d2\u24d0\u24db\u24d7\u24de\u24e2\u24e3",  # circled letters
    "LocalHost\u3002",
    "local\u00adhost",  # soft hyphen: IDNA drops it
]
V6_TARGETS = ["[::1]", "[0:0:0:0:0:0:0:1]", "[::]", "[fe80::1]", "[fd00:ec2::254]", "[fc00::1]"]


def judged(url: str, allow_private: bool = False) -> Canonical | None:
    """The canonical form the guard lets through, or ``None`` when it refuses."""
    try:
        return check_static(url, allow_private)
    except UrlRefused:
        return None


def assert_never_allowed(url: str, target: str | None) -> None:
    """Refused, or read as a DNS name that is not ``target`` (a name is resolved, and its
    addresses judged, when connecting)."""
    got = judged(url)
    if got is None:
        return
    assert got.ip is None, (url, got)
    assert address_problem(got.host) == "malformed address", (url, got)
    assert target is None or target not in got.host, (url, got)
    assert got.host.startswith("xn--") or ".xn--" in got.host, (url, got)


@pytest.mark.parametrize("target", TARGETS_V4)
def test_submission_refuses_every_spelling_of_an_inward_ipv4_address(target: str) -> None:
    seen = 0
    for host in encodings(target):
        assert_never_allowed(f"http://{host}:8080/hook", target)
        assert_never_allowed(f"https://{host}/hook", target)
        seen += 1
    assert seen > 600  # 66 digit sets x 10 dots, the numeric forms, the IPv6 forms


def test_submission_refuses_inward_ipv6_and_localhost_names() -> None:
    for host in [*V6_TARGETS, *NAMES]:
        assert judged(f"http://{host}/x") is None, host
    # With private targets allowed (tests, make run), metadata is still refused in every form.
    for ip in METADATA_V4:
        for host in encodings(ip):
            got = judged(f"http://{host}/x", allow_private=True)
            assert got is None or got.ip is None, (host, got)


def test_per_message_webhook_url_gets_the_guard_at_submission() -> None:
    allow = Settings.from_env({}).webhook_allow_private
    for host in ["\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11", "2130706433", *NAMES]:
        problem = webhook_url_problem(f"http://{host}:8080/hook", allow)
        assert problem is not None, host
        assert problem.code in ("webhook_url_forbidden", "invalid_webhook_url")
        assert problem.parameter == "webhookUrl"
    assert webhook_url_problem("https://user:pw@hooks.example.com/", allow) is not None
    assert webhook_url_problem("https://hooks.example.com:25/", allow) is not None
    assert webhook_url_problem("https://hooks.example.com/x", allow) is None


def test_public_hosts_are_kept_and_written_canonically() -> None:
    assert check_static("HTTPS://Hooks.Example.COM:8443/a?b=1#frag").url == (
        "https://hooks.example.com:8443/a?b=1"
    )
    assert check_static("https://b\u00fccher.example/x").host == "xn--bcher-kva.example"
    assert check_static("http://\uff18.\uff18.\uff18.\uff18/").url == "http://8.8.8.8/"
    assert check_static("https://[2606:4700:4700:0::1111]/").host == "2606:4700:4700::1111"


class NoDns(AbstractResolver):
    """A resolver that never answers: names in these tests must not leave the machine."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        raise OSError(f"no DNS in tests ({host})")

    async def close(self) -> None:
        return None


def _post_all(urls: list[str], allow_private: bool) -> list[type[BaseException] | int]:
    async def go() -> list[type[BaseException] | int]:
        session = await make_session(allow_private, resolver=NoDns())
        poster = AiohttpPoster(session, 2.0, allow_private)
        out: list[type[BaseException] | int] = []
        try:
            for url in urls:
                try:
                    out.append((await poster.post(url, b"{}", {})).status)
                except (WebhookRefused, WebhookConnectError) as exc:
                    out.append(type(exc))
        finally:
            await session.close()
        return out

    return asyncio.run(go())


def test_the_webhook_client_connects_to_no_spelling_of_loopback() -> None:
    """A real listener on 127.0.0.1 (and ::1): every URL names its port; none may arrive."""
    with Listener() as lst, recording_connects() as connects:
        urls = [f"http://{h}:{lst.port}/x" for t in TARGETS_V4 for h in encodings(t)]
        urls += [f"http://{h}:{lst.port}/x" for h in [*V6_TARGETS, *NAMES]]
        results = _post_all(urls, allow_private=False)
        assert connects == [] and lst.accepted == 0
        assert all(r in (WebhookRefused, WebhookConnectError) for r in results)
        # Control: the same recorder and listener see a connection the guard allows.
        assert _post_all([f"http://127.0.0.1:{lst.port}/x"], allow_private=True) == [200]
        assert connects == [("127.0.0.1", lst.port)] and lst.accepted == 1


def test_the_socket_factory_refuses_what_the_resolver_missed() -> None:
    factory = guarded_socket_factory(allow_private=False)
    with pytest.raises(AddressRefusedError, match="loopback"):
        factory((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80)))
    with pytest.raises(AddressRefusedError, match="cloud metadata"):
        guarded_socket_factory(True)(
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::ffff:169.254.169.254", 80, 0, 0))
        )
    sock = factory((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 80)))
    sock.close()


def _wire(url: str, allow_private: bool, dns: dict[str, list[str]] | None = None) -> Any:
    async def go() -> Any:
        loop = asyncio.get_running_loop()

        async def getaddrinfo(host: str, port: int, **_kw: Any) -> list[tuple[Any, ...]]:
            if dns is None or host not in dns:
                raise socket.gaierror(socket.EAI_NONAME, "no DNS in tests")
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in dns[host]]

        loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]
        client = WireClient(url, allow_private=allow_private)
        try:
            return (await client.post("/x", b"{}", 2.0)).status
        finally:
            await client.close()

    return asyncio.run(go())


def test_the_carrier_client_connects_to_no_spelling_of_metadata_or_to_what_names_hide() -> None:
    """Carrier connections may be on the operator's networks (loopback allowed), never on a
    metadata address, however written or resolved."""
    with Listener() as lst, recording_connects() as connects:
        for ip in METADATA_V4:
            for host in encodings(ip):
                try:
                    _wire(f"http://{host}:{lst.port}", allow_private=True)
                except (ValueError, ConnectFailed):
                    continue
        for host in encodings("127.0.0.1"):  # a client that must not reach loopback
            try:
                _wire(f"http://{host}:{lst.port}", allow_private=False)
            except (ValueError, ConnectFailed):
                continue
        with pytest.raises(ConnectFailed, match="cloud metadata"):
            _wire(f"http://meta.test:{lst.port}", True, {"meta.test": ["169.254.169.254"]})
        with pytest.raises(ConnectFailed, match="loopback"):
            _wire(f"http://rebind.test:{lst.port}", False, {"rebind.test": ["127.0.0.1"]})
        assert connects == [] and lst.accepted == 0
        # Control: an allowed name resolving to loopback is connected to, by its address.
        allowed = {"carrier.test": ["127.0.0.1"]}
        assert _wire(f"http://carrier.test:{lst.port}", True, allowed) == 200
        assert connects == [("127.0.0.1", lst.port)] and lst.accepted == 1


IPV4_NETS = [ipaddress.ip_network(n) for n in ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12")]
IPV4_NETS += [ipaddress.ip_network(n) for n in ("192.168.0.0/16", "169.254.0.0/16")]
IPV4_NETS += [ipaddress.ip_network(n) for n in ("100.64.0.0/10", "0.0.0.0/8", "224.0.0.0/4")]


@st.composite
def inward_hosts(draw: st.DrawFn) -> tuple[str, str]:
    """An inward IPv4 address and a spelling of it mixing digit sets, dots and forms."""
    net = draw(st.sampled_from(IPV4_NETS))
    ip = str(net[draw(st.integers(0, net.num_addresses - 1))])
    form = draw(st.sampled_from(["dotted", "numeric", "v6"]))
    if form == "numeric":
        host = draw(st.sampled_from(ipv4_forms(ip)))
        host = "".join(FULLWIDTH.get(c, c) if draw(st.booleans()) else c for c in host)
    elif form == "v6":
        host = draw(st.sampled_from(ipv6_forms(ip)))
    else:
        parts = [digits(o, draw(st.sampled_from(DIGIT_ZEROS))) for o in ip.split(".")]
        dots = [draw(st.sampled_from(DOTS)) for _ in range(3)]
        host = parts[0] + "".join(d + p for d, p in zip(dots, parts[1:], strict=True))
        if draw(st.booleans()):
            host += draw(st.sampled_from(DOTS))
    return ip, host


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(inward_hosts())
def test_property_no_spelling_of_an_inward_address_is_allowed_or_connected(
    drawn: tuple[str, str],
) -> None:
    ip, host = drawn
    assert_never_allowed(f"http://{host}:8080/x", ip)
    with recording_connects() as connects:
        [result] = _post_all([f"http://{host}:8080/x"], allow_private=False)
    assert result in (WebhookRefused, WebhookConnectError)
    assert connects == []
