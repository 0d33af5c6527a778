"""Standard Webhooks signing and our verification helper (known vector, tampering, tolerance,
rotation), and the helper's promise to need nothing but the standard library."""

from __future__ import annotations

import ast
import base64
import pathlib
import shutil
import subprocess
import sys

import pytest

from dispatcher.webhooks.secrets import generate_secret, is_valid_secret
from dispatcher.webhooks.sign import signature_header, webhook_headers
from dispatcher.webhooks.verify import WebhookVerificationError, secret_key, signature, verify

ROOT = pathlib.Path(__file__).resolve().parents[2]

# The test vector of the Standard Webhooks reference libraries.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


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
        verify(SPEC_BODY, spec_headers(), [generate_secret()], now=SPEC_TS)
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


def test_verify_module_needs_only_the_standard_library(tmp_path: pathlib.Path) -> None:
    src = ROOT / "dispatcher" / "webhooks" / "verify.py"
    tree = ast.parse(src.read_text())
    modules = {
        n.module.split(".")[0] if isinstance(n, ast.ImportFrom) and n.module else a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in n.names
    }
    assert modules <= set(sys.stdlib_module_names) | {"__future__"}, modules
    # and it works copied alone into an empty directory, without site-packages
    shutil.copy(src, tmp_path / "smsd_verify.py")
    code = (
        "import smsd_verify as v\n"
        f"v.verify({SPEC_BODY!r}, {spec_headers()!r}, [{SPEC_SECRET!r}], now={SPEC_TS})\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-E", "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True
    )
    assert out.stdout.strip() == "ok", out.stderr
