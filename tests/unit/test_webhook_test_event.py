"""The panel's "send a test event" refuses what every fetcher refuses, before connecting."""

from __future__ import annotations

import asyncio

import pytest

from dispatcher.webhooks.test_event import EVENT_TEST, sample_payload, send_test_event


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://169.254.169.254/latest/meta-data", "cloud metadata"),
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://localhost/hook", "loopback"),
        ("http://10.0.0.8/hook", "private"),
        ("ftp://example.com/hook", "http and https"),
        ("http://user:pw@example.com/hook", "credentials"),
    ],
)
def test_forbidden_targets_get_no_request(url: str, why: str) -> None:
    answer = asyncio.run(send_test_event(url, ["whsec_x"], "shop", False, 2.0))
    assert answer.status_code is None and not answer.ok
    assert answer.error is not None and why in answer.error


def test_the_payload_says_it_is_a_test() -> None:
    body = sample_payload("evt-1", "shop", 1_795_000_000.0)
    assert body["type"] == EVENT_TEST == "webhook.test"
    assert body["id"] == "evt-1" and body["account"] == "shop"
    assert str(body["sentAt"]).startswith("2026-")


def test_a_name_that_resolves_inside_our_network_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dispatcher.webhooks import test_event

    async def resolves_to(host: str, port: int) -> list[str]:
        assert (host, port) == ("hooks.example.com", 443)
        return ["10.1.2.3", "169.254.169.254"]

    monkeypatch.setattr(test_event, "_addresses", resolves_to)
    answer = asyncio.run(
        send_test_event("https://hooks.example.com/sms", ["whsec_x"], "shop", False, 2.0)
    )
    assert answer.status_code is None
    assert answer.error == "hooks.example.com resolves to a private address"
