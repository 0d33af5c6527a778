"""Identifiers minted before anything is stored or enqueued."""

from __future__ import annotations

import os
import secrets
import string
import time
import uuid

# Letters and digits only: a published PHP client of the original API sends the
# Application-Key header only when the key is made of them, and no client has to escape them.
KEY_ALPHABET = string.ascii_letters + string.digits


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


def uuid7_time(value: str) -> float | None:
    """Unix seconds encoded in a UUIDv7 (our message and batch ids), else ``None``."""
    try:
        u = uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return None
    if u.version != 7:
        return None
    return (u.int >> 80) / 1000.0


def alphanumeric_token(length: int) -> str:
    """A random secret of ``length`` letters and digits (API keys): 5.95 bits per character,
    each character drawn uniformly by the operating system's CSPRNG."""
    return "".join(KEY_ALPHABET[secrets.randbelow(len(KEY_ALPHABET))] for _ in range(length))
