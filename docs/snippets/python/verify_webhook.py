"""Verify a webhook signature (Standard Webhooks; Python 3, standard library only).

The Python client (`smsdispatch_client.verify_webhook`) does the same (and explains why)."""

import base64
import hashlib
import hmac
import os
import time


def verify(secret: str, msg_id: str, timestamp: str, body: bytes, signatures: str) -> bool:
    """True when one `v1,<base64>` entry of `signatures` signs `{id}.{timestamp}.{body}`."""
    if abs(time.time() - int(timestamp)) > 300:
        return False  # too old (or from the future): a replay
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        hmac.compare_digest(s.partition(",")[2], expected)
        for s in signatures.split()
        if s.startswith("v1,")
    )


print(
    str(
        verify(
            os.environ.get("WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            os.environ["WEBHOOK_ID"],
            os.environ["WEBHOOK_TIMESTAMP"],
            os.environ["WEBHOOK_BODY"].encode(),
            os.environ["WEBHOOK_SIGNATURE"],
        )
    ).lower()
)
