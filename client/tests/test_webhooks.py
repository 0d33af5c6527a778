"""Webhook verification (Standard Webhooks): the known vector, tampering, missing headers,
wrong secrets, the timestamp tolerance, and secrets being rotated."""

from __future__ import annotations

import base64
import os

import pytest
from smsdispatch_client import SmsError, verify_webhook
from smsdispatch_client.webhooks import WebhookVerificationError, secret_key, signature, verify

# The test vector of the Standard Webhooks reference libraries.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def spec_headers(**overrides: str) -> dict[str, str]:
    h = {"webhook-id": SPEC_ID, "webhook-timestamp": str(SPEC_TS), "webhook-signature": ""}
    h["webhook-signature"] = SPEC_SIGNATURE
    h.update(overrides)
    return h


def test_known_vector_of_the_spec() -> None:
    assert signature(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE
    # without the prefix too
    assert signature(SPEC_SECRET[6:], SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE
    verify(SPEC_BODY, spec_headers(), [SPEC_SECRET], now=SPEC_TS)


def test_header_names_are_case_insensitive() -> None:
    headers = {k.title(): v for k, v in spec_headers().items()}
    verify(SPEC_BODY, headers, [SPEC_SECRET], now=SPEC_TS + 10)


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (SPEC_BODY + b" ", spec_headers()),
        (b'{"test": 2432232315}', spec_headers()),
        (SPEC_BODY, spec_headers(**{"webhook-id": "msg_other"})),
        (SPEC_BODY, spec_headers(**{"webhook-timestamp": str(SPEC_TS + 1)})),
        (SPEC_BODY, spec_headers(**{"webhook-signature": "v1,Zm9v"})),
        (SPEC_BODY, spec_headers(**{"webhook-signature": "v2," + SPEC_SIGNATURE[3:]})),
        (SPEC_BODY, spec_headers(**{"webhook-signature": "v1,not base64!"})),
        (SPEC_BODY, spec_headers(**{"webhook-timestamp": "16142653e3"})),
    ],
)
def test_tampering_is_refused(body: bytes, headers: dict[str, str]) -> None:
    with pytest.raises(WebhookVerificationError):
        verify(body, headers, [SPEC_SECRET], now=SPEC_TS)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_headers_are_refused(missing: str) -> None:
    headers = spec_headers()
    del headers[missing]
    with pytest.raises(WebhookVerificationError, match=missing):
        verify(SPEC_BODY, headers, [SPEC_SECRET], now=SPEC_TS)


def test_wrong_secret_is_refused() -> None:
    with pytest.raises(WebhookVerificationError):
        verify(SPEC_BODY, spec_headers(), [new_secret()], now=SPEC_TS)
    with pytest.raises(WebhookVerificationError):
        verify(SPEC_BODY, spec_headers(), [], now=SPEC_TS)


def test_timestamp_tolerance_is_five_minutes_both_ways() -> None:
    verify(SPEC_BODY, spec_headers(), [SPEC_SECRET], now=SPEC_TS + 300)
    verify(SPEC_BODY, spec_headers(), [SPEC_SECRET], now=SPEC_TS - 300)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(SPEC_BODY, spec_headers(), [SPEC_SECRET], now=SPEC_TS + 301)
    with pytest.raises(WebhookVerificationError, match="future"):
        verify(SPEC_BODY, spec_headers(), [SPEC_SECRET], now=SPEC_TS - 301)
    verify(SPEC_BODY, spec_headers(), [SPEC_SECRET], tolerance_s=3600, now=SPEC_TS + 3000)


def test_either_of_two_rotating_secrets_verifies() -> None:
    new, old = new_secret(), new_secret()
    body = b'{"type":"message.status"}'
    both = (
        f"{signature(new, 'd-1', 1_800_000_000, body)} {signature(old, 'd-1', 1_800_000_000, body)}"
    )
    headers = {"webhook-id": "d-1", "webhook-timestamp": "1800000000", "webhook-signature": both}
    for secrets in ([new], [old], [old, new], [new_secret(), new]):
        verify_webhook(body, headers, secrets, now=1_800_000_000)
    with pytest.raises(SmsError) as caught:
        verify_webhook(body, headers, [new_secret()], now=1_800_000_000)
    assert caught.value.code == "invalid_webhook"


def test_secret_keys() -> None:
    secret = new_secret()
    assert base64.b64encode(secret_key(secret)).decode() == secret[6:]
    assert secret_key(secret[6:]) == secret_key(secret)
    for bad in ("whsec_***", "whsec_"):
        with pytest.raises(ValueError):
            secret_key(bad)
