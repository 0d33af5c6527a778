"""Signing webhooks (Standard Webhooks, with the client's verifier): two signatures while a
secret rotates, the headers of a webhook, and generated secrets."""

from __future__ import annotations

import base64

import pytest
from smsdispatch_client.webhooks import WebhookVerificationError, secret_key, verify

from dispatcher.webhooks.secrets import generate_secret, is_valid_secret
from dispatcher.webhooks.sign import signature_header, webhook_headers


def test_rotation_sends_two_signatures_and_either_secret_verifies() -> None:
    new, old = generate_secret(), generate_secret()
    body = b'{"type":"message.status"}'
    headers = webhook_headers("d-1", body, [new, old], now=1_800_000_000)
    entries = headers["webhook-signature"].split(" ")
    assert len(entries) == 2 and all(e.startswith("v1,") for e in entries)
    for secrets in ([new], [old], [old, new], [generate_secret(), new]):
        verify(body, headers, secrets, now=1_800_000_000)
    with pytest.raises(WebhookVerificationError):
        verify(body, headers, [generate_secret()], now=1_800_000_000)


def test_headers_of_a_webhook() -> None:
    secret = generate_secret()
    h = webhook_headers("d-2", b"{}", [secret], now=1_800_000_000.9)
    assert h["webhook-id"] == "d-2" and h["webhook-timestamp"] == "1800000000"
    assert h["Content-Type"] == "application/json"
    assert h["webhook-signature"] == signature_header([secret], "d-2", 1_800_000_000, b"{}")
    with pytest.raises(ValueError):
        signature_header([], "d-2", 1, b"{}")


def test_generated_secrets() -> None:
    a, b = generate_secret(), generate_secret()
    assert a != b and a.startswith("whsec_") and is_valid_secret(a)
    assert len(secret_key(a)) == 32
    assert base64.b64encode(secret_key(a)).decode() == a[6:]
    assert not is_valid_secret("whsec_short") and not is_valid_secret("nope")
    with pytest.raises(ValueError):
        secret_key("whsec_***")
