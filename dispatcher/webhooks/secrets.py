"""Webhook signing secrets: ``whsec_`` followed by the base64 of 32 random bytes."""

from __future__ import annotations

import base64
import os

from smsdispatch_client.webhooks import SECRET_PREFIX, secret_key

SECRET_BYTES = 32


def generate_secret(nbytes: int = SECRET_BYTES) -> str:
    """A new random secret in the Standard Webhooks form (``whsec_<base64 key>``)."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(nbytes)).decode("ascii")


def is_valid_secret(secret: str) -> bool:
    """Whether ``secret`` is a ``whsec_`` secret with a key of at least 24 bytes."""
    if not secret.startswith(SECRET_PREFIX):
        return False
    try:
        return len(secret_key(secret)) >= 24
    except ValueError:
        return False
