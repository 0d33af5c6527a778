"""Verify a webhook from smsdispatch (Standard Webhooks signatures), with the standard library.

Usage in a receiver::

    from smsdispatch_client import WebhookVerificationError, verify_webhook

    try:
        verify_webhook(request_body_bytes, request_headers, ["whsec_…"])
    except WebhookVerificationError:
        return 400  # not from us, altered, or too old: ignore it

The signed content is ``{webhook-id}.{webhook-timestamp}.{body}`` (the raw body bytes, before any
JSON parsing), signed with HMAC-SHA256 under the key that the secret's base64 part encodes; the
``webhook-signature`` header holds one or more space-separated ``v1,<base64 signature>``
entries (two while a secret is being rotated). The server signs with :func:`signature` from
this module, so the signer and the verifier cannot drift apart.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping

from smsdispatch_client.errors import SmsError

__all__ = ["SECRET_PREFIX", "WebhookVerificationError", "secret_key", "signature", "verify"]

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_S = 300


class WebhookVerificationError(SmsError):
    """The webhook is not authentic, was altered, or its timestamp is outside the tolerance."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid_webhook", message)


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (the prefix is optional)."""
    raw = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("webhook secret is not valid base64") from exc
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of ``body`` sent as ``msg_id`` at unix ``timestamp``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        for k, v in headers.items():
            if k.lower() == name:
                value = v
                break
    if not value:
        raise WebhookVerificationError(f"missing header {name}")
    return value


def _candidates(header: str) -> list[bytes]:
    out = []
    for entry in header.split():
        version, _, sig = entry.partition(",")
        if version != "v1" or not sig:
            continue
        try:
            out.append(base64.b64decode(sig, validate=True))
        except (binascii.Error, ValueError):
            continue
    return out


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secrets: list[str],
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> None:
    """Check a webhook's signature and timestamp; raise :class:`WebhookVerificationError`.

    ``body`` is the raw request body; ``headers`` the request headers (any letter case);
    ``secrets`` every secret currently valid for you (during a rotation, both). A timestamp more
    than ``tolerance_s`` away from ``now`` (default: the clock) is refused, so a captured request
    cannot be replayed later.
    """
    if isinstance(secrets, str):  # a single secret passed by mistake: still do the right thing
        secrets = [secrets]
    if not secrets:
        raise WebhookVerificationError("no secret to verify with")
    msg_id = _header(headers, "webhook-id")
    raw_ts = _header(headers, "webhook-timestamp").strip()
    sig_header = _header(headers, "webhook-signature")
    if not raw_ts.isdigit():
        raise WebhookVerificationError("invalid webhook-timestamp")
    ts = int(raw_ts)
    current = time.time() if now is None else now
    if ts < current - tolerance_s:
        raise WebhookVerificationError("webhook-timestamp too old")
    if ts > current + tolerance_s:
        raise WebhookVerificationError("webhook-timestamp too far in the future")
    given = _candidates(sig_header)
    for secret in secrets:
        try:
            expected = base64.b64decode(signature(secret, msg_id, ts, body)[3:])
        except ValueError as exc:
            raise WebhookVerificationError("a configured secret is malformed") from exc
        if any(hmac.compare_digest(expected, g) for g in given):
            return
    raise WebhookVerificationError("no matching signature")
