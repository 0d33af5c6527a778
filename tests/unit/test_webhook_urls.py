"""Webhook URL safety: syntax, literal addresses, names that resolve inward, and the sender's
resolver (checked address connected to, Host kept; DNS rebinding refused)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from dispatcher.webhooks.urls import (
    UrlRefused,
    address_problem,
    canonical,
    check_resolved,
    check_url,
    safe_host,
)
from tests.support.receiver import Receiver
from workers.webhooks.errors import WebhookRefused
from workers.webhooks.http import AddressRefusedError, AiohttpPoster, SafeResolver, make_session


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("ftp://example.com/x", "invalid_scheme"),
        ("javascript:alert(1)", "invalid_scheme"),
        ("file:///etc/passwd", "invalid_scheme"),
        ("https:///nohost", "invalid_url"),
        ("https://user:pw@example.com/", "credentials_in_url"),
        ("https://example.com/a b", "invalid_url"),
        ("https://example.com:99999/", "invalid_url"),
        ("https://example.com/" + "x" * 2048, "invalid_url"),
        ("", "invalid_url"),
    ],
)
def test_syntax(url: str, code: str) -> None:
    with pytest.raises(UrlRefused) as err:
        check_url(url, resolve=False)
    assert err.value.code == code


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.9.9.9:8080/x",
        "http://10.0.0.1/",
        "http://172.16.5.4/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",  # CGNAT
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.1.1/",
        "http://0.0.0.0/",
        "http://[::1]/",
        "http://[fd00:ec2::254]/",
        "http://[fc00::1]/",
        "http://[fe80::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[2002:a9fe:a9fe::]/",  # 6to4 of the metadata address
        "http://[64:ff9b::a00:1]/",  # NAT64 of 10.0.0.1
        "http://[::]/",
        "http://224.0.0.1/",
        "http://localhost:8080/",
        "http://api.localhost/",
    ],
)
def test_inward_literal_addresses_are_refused(url: str) -> None:
    with pytest.raises(UrlRefused) as err:
        check_url(url, resolve=False)
    assert err.value.code == "forbidden_address"


@pytest.mark.parametrize("url", ["https://8.8.8.8/hook", "https://[2606:4700:4700::1111]/x"])
def test_public_literal_addresses_pass(url: str) -> None:
    assert check_url(url, resolve=False) == url


def test_allow_private_permits_our_networks_but_never_metadata() -> None:
    for url in (
        "http://127.0.0.1:8080/",
        "http://10.1.1.1/",
        "http://[::1]/",
        "http://100.64.0.9/",
    ):
        assert check_url(url, allow_private=True, resolve=False) == url
    for url in ("http://169.254.169.254/", "http://[fd00:ec2::254]/", "http://100.100.100.200/"):
        with pytest.raises(UrlRefused):
            check_url(url, allow_private=True, resolve=False)


def fake_dns(table: dict[str, list[str]]) -> Any:
    def getaddrinfo(host: str, port: int, *args: Any, **kw: Any) -> list[tuple[Any, ...]]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "not known")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in table[host]
        ]

    return getaddrinfo


def test_names_are_resolved_at_registration() -> None:
    dns = fake_dns(
        {
            "hooks.example.com": ["93.184.216.34"],
            "evil.example.com": ["127.0.0.1"],
            "mixed.example.com": ["93.184.216.34", "10.0.0.7"],
            "meta.example.com": ["169.254.169.254"],
            "v6.example.com": ["::1"],
        }
    )
    assert check_url("https://hooks.example.com/x", getaddrinfo=dns)
    for host in ("evil", "mixed", "meta", "v6"):
        with pytest.raises(UrlRefused) as err:
            check_url(f"https://{host}.example.com/x", getaddrinfo=dns)
        assert err.value.code == "forbidden_address"
    with pytest.raises(UrlRefused) as err:
        check_url("https://nowhere.example.com/x", getaddrinfo=dns)
    assert err.value.code == "unresolvable"
    assert check_url("https://evil.example.com/x", allow_private=True, getaddrinfo=dns)


def test_real_localhost_resolution_is_refused() -> None:
    with pytest.raises(UrlRefused):
        check_url("http://localhost/x")


def test_address_problem_names_the_kind() -> None:
    assert address_problem("127.0.0.1") == "loopback address"
    assert address_problem("169.254.169.254", allow_private=True) == "cloud metadata address"
    assert address_problem("100.64.3.3") == "CGNAT address"
    assert address_problem("93.184.216.34") is None


def test_safe_host_drops_path_and_query() -> None:
    assert safe_host("https://h.example.com:8443/p?token=abc") == "https://h.example.com:8443"
    assert canonical("https://H.example.com/p").host == "h.example.com"


class MapResolver(AbstractResolver):
    """A resolver answering from a table that may change between calls (DNS rebinding)."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.calls.append(host)
        seq = self.answers[host]
        addrs = seq.pop(0) if len(seq) > 1 else seq[0]
        return [
            {
                "hostname": host,
                "host": a,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for a in addrs
        ]

    async def close(self) -> None:
        return None


def test_safe_resolver_filters_and_refuses() -> None:
    async def go() -> None:
        inner = MapResolver(
            {"a.test": [["93.184.216.34", "10.0.0.1"]], "b.test": [["169.254.169.254"]]}
        )
        r = SafeResolver(False, inner)
        assert [x["host"] for x in await r.resolve("a.test", 443)] == ["93.184.216.34"]
        with pytest.raises(AddressRefusedError, match="cloud metadata"):
            await r.resolve("b.test", 443)

    asyncio.run(go())


def _post(url: str, resolver: AbstractResolver | None, allow_private: bool) -> Any:
    async def go() -> Any:
        session = await make_session(allow_private, resolver=resolver)
        try:
            poster = AiohttpPoster(session, 2.0, allow_private)
            return await poster.post(url, b"{}", {"Content-Type": "application/json"})
        finally:
            await session.close()

    return asyncio.run(go())


def test_sender_refuses_loopback_names_and_literals_without_calling() -> None:
    with Receiver() as rx:
        for url in (rx.url("/x"), f"http://localhost:{rx.port}/x", f"http://[::1]:{rx.port}/x"):
            with pytest.raises(WebhookRefused):
                _post(url, None, allow_private=False)
        assert rx.requests() == []


def test_sender_connects_to_the_checked_address_and_keeps_the_host() -> None:
    with Receiver() as rx:
        inner = MapResolver({"hooks.test": [["127.0.0.1"]]})
        answer = _post(f"http://hooks.test:{rx.port}/x", inner, allow_private=True)
        assert answer.status == 200
        assert rx.requests()[0].headers["host"] == f"hooks.test:{rx.port}"


def test_dns_rebinding_is_refused_at_send_time() -> None:
    """Public when registered, loopback when sending: the sender checks what it connects to."""
    with Receiver() as rx:
        inner = MapResolver({"rebind.test": [["127.0.0.1"]]})
        dns = fake_dns({"rebind.test": ["93.184.216.34"]})
        url = f"http://rebind.test:{rx.port}/x"
        assert check_url(url, getaddrinfo=dns) == url  # registration saw a public address
        with pytest.raises(WebhookRefused, match="loopback"):
            _post(url, inner, allow_private=False)
        assert rx.requests() == []


def _with_dns(answers: dict[str, Any], work: Any) -> Any:
    """Run ``work()`` (a coroutine function) on a loop whose getaddrinfo answers from
    ``answers`` (a list of addresses, or an exception to raise); the names asked."""
    asked: list[str] = []

    async def go() -> Any:
        loop = asyncio.get_running_loop()

        async def getaddrinfo(host: str, port: int, **_kw: Any) -> list[tuple[Any, ...]]:
            asked.append(host)
            answer = answers[host]
            if isinstance(answer, BaseException):
                raise answer
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in answer]

        loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]
        return await work()

    return asyncio.run(go()), asked


def test_submission_resolves_names_without_blaming_the_sender_for_dns_trouble() -> None:
    answers = {
        "ok.test": ["93.184.216.34"],
        "inward.test": ["93.184.216.34", "10.0.0.5"],
        "gone.test": socket.gaierror(socket.EAI_NONAME, "not known"),
        "flaky.test": socket.gaierror(socket.EAI_AGAIN, "try again"),
    }
    for host, refused in (("ok", None), ("inward", "forbidden_address"), ("gone", "unresolvable")):
        url = f"https://{host}.test/x"
        try:
            result, _ = _with_dns(answers, lambda u=url: check_resolved(u))  # type: ignore[misc]
            assert refused is None and result == url
        except UrlRefused as exc:
            assert exc.code == refused, (host, exc.code)
    result, _ = _with_dns(answers, lambda: check_resolved("https://flaky.test/x"))
    assert result == "https://flaky.test/x"  # the sender checks again when it connects


def test_the_api_asks_dns_once_per_host_a_minute() -> None:
    from dispatcher.api.webhook_targets import WebhookTargets
    from dispatcher.config import Settings
    from dispatcher.errors import ApiError
    from dispatcher.store.db import make_engine
    from tests.support.services import fresh_database

    with fresh_database() as db_url:
        engine = make_engine(db_url)
        targets = WebhookTargets(engine, Settings.from_env({}))

        async def work() -> list[str]:
            codes = []
            for path in ("a", "b", "c"):
                for host in ("ok.test", "inward.test"):
                    try:
                        await targets.admit(1, f"https://{host}/{path}")
                        codes.append("ok")
                    except ApiError as exc:
                        codes.append(exc.code)
            return codes

        answers = {"ok.test": ["93.184.216.34"], "inward.test": ["10.0.0.5"]}
        codes, asked = _with_dns(answers, work)
        engine.dispose()
    assert codes == ["ok", "webhook_url_forbidden"] * 3
    assert sorted(asked) == ["inward.test", "ok.test"]
