"""Forwarded headers are applied from configured proxies only (dispatcher/api/proxies.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dispatcher.api.proxies import TrustedProxies, parse_networks
from dispatcher.config import Settings


def seen(trusted: str, peer: str, **headers: str) -> tuple[str, str]:
    """The client address and scheme the app sees."""
    got: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        got.update(scope)

    scope = {
        "type": "http",
        "scheme": "http",
        "client": (peer, 5000),
        "headers": [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in headers.items()],
    }
    asyncio.run(TrustedProxies(app, trusted)(scope, None, None))
    return got["client"][0], got["scheme"]


def test_headers_from_anyone_but_a_trusted_proxy_are_ignored() -> None:
    spoof = {"X_Forwarded_For": "203.0.113.9", "X_Forwarded_Proto": "https"}
    assert seen("", "127.0.0.1", **spoof) == ("127.0.0.1", "http")  # loopback is not trusted
    assert seen("10.0.0.0/8", "192.0.2.1", **spoof) == ("192.0.2.1", "http")


def test_a_trusted_proxy_gives_the_client_and_scheme() -> None:
    assert seen(
        "10.0.0.5", "10.0.0.5", X_Forwarded_For="203.0.113.9", X_Forwarded_Proto="https"
    ) == (
        "203.0.113.9",
        "https",
    )
    # The right-most address that is not a proxy: what the client wrote to the left is ignored.
    chain = "198.51.100.1, 203.0.113.9, 10.0.0.7"
    assert seen("10.0.0.0/24", "10.0.0.5", X_Forwarded_For=chain)[0] == "203.0.113.9"
    assert seen("10.0.0.0/24", "10.0.0.5", X_Forwarded_For="junk, 10.0.0.7")[0] == "10.0.0.7"
    assert seen("10.0.0.5", "10.0.0.5", X_Forwarded_Proto="gopher") == ("10.0.0.5", "http")


def test_bad_settings_stop_the_start() -> None:
    with pytest.raises(ValueError, match="not an address"):
        parse_networks("10.0.0.1, proxy.local")
    with pytest.raises(ValueError, match="SMSDISPATCH_TRUSTED_PROXIES"):
        Settings.from_env({"SMSDISPATCH_PANEL_TRUST_FORWARDED_PROTO": "1"})
