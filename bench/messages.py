"""Synthetic recipients and texts shared by every producer of the benchmarks."""

from __future__ import annotations

from collections.abc import Iterator

CAMPAIGN_TEXT = "Black Friday: -30% on everything until Sunday. Reply STOP to opt out."


def phone(i: int, block: int = 50) -> str:
    """A valid Polish mobile number (``+48 50x xxx xxx`` by default), distinct per ``i``."""
    return f"+48{block}{i % 10_000_000:07d}"


def personalised(count: int, same_text: bool = False, offset: int = 0) -> Iterator[tuple[str, str]]:
    """``(phone, text)`` pairs: different texts (mail merge) unless ``same_text``."""
    for i in range(offset, offset + count):
        if same_text:
            yield phone(i), CAMPAIGN_TEXT
        else:
            yield phone(i), f"Hi customer {i}, your order #{(i * 7919) % 1_000_003} ships today."
