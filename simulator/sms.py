"""SMS text helpers: segment counting (GSM-7 / UCS-2) and splitting into parts."""

from __future__ import annotations

# GSM 03.38 default alphabet and its extension table (extension characters take two septets).
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXT = frozenset("^{}\\[~]|€\f")


def parts_for(text: str) -> int:
    """Return the number of SMS segments ``text`` needs (160/153 GSM-7, 70/67 UCS-2)."""
    septets = 0
    for ch in text:
        if ch in _GSM_BASIC:
            septets += 1
        elif ch in _GSM_EXT:
            septets += 2
        else:
            units = sum(2 if ord(c) > 0xFFFF else 1 for c in text)
            return 1 if units <= 70 else -(-units // 67)
    return 1 if septets <= 160 else -(-septets // 153)


def split_text(text: str, parts: int) -> list[str]:
    """Split ``text`` into ``parts`` consecutive chunks of near-equal length."""
    if parts < 1:
        raise ValueError("parts must be >= 1")
    size, extra = divmod(len(text), parts)
    out: list[str] = []
    pos = 0
    for i in range(parts):
        n = size + (1 if i < extra else 0)
        out.append(text[pos : pos + n])
        pos += n
    return out
