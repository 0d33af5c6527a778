"""Identifiers minted before anything is stored or enqueued."""

from __future__ import annotations

import os
import secrets
import time
import uuid


def new_message_id() -> str:
    """A time-ordered UUIDv7 string: unique, sortable, and index-friendly."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version 7
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a (12 bits)
    value |= 0b10 << 62  # RFC 4122 variant
    value |= rand & ((1 << 62) - 1)  # rand_b
    return str(uuid.UUID(int=value))


def new_token(nbytes: int = 32) -> str:
    """A URL-safe random secret (API keys, webhook secrets)."""
    return secrets.token_urlsafe(nbytes)
