"""Rewriting a message text with short links, one code per URL per recipient.

Codes are drawn from the operating system's CSPRNG over letters and digits (every one a GSM-7
character, so a short link never forces the Unicode encoding): with the default 8 characters,
62**8 ≈ 2.2e14 codes, so even 100 million live links leave a guess a 1 in 2 million chance.
They are unique within a submission here and checked against the stored ones when the
submission is written (:func:`dispatcher.store.links.settle_codes`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dispatcher.ids import alphanumeric_token
from dispatcher.links.urls import Found, find_urls
from dispatcher.store.records import ShortLink


@dataclass(frozen=True, slots=True)
class Shortened:
    """A recipient's text with short links, and the links in it."""

    text: str
    links: tuple[ShortLink, ...]


def normalize_base(base: str) -> str:
    """The configured base without a trailing slash (``https://s.example.com``)."""
    return base.rstrip("/")


def short_url(base: str, code: str) -> str:
    """The short link for ``code`` on ``base``."""
    return f"{normalize_base(base)}/{code}"


class Shortener:
    """Rewrites texts for one base and code length (``codes`` draws a code: tests replace it)."""

    def __init__(
        self, base: str, code_length: int, codes: Callable[[int], str] = alphanumeric_token
    ) -> None:
        self.base = normalize_base(base)
        self.code_length = code_length
        self._codes = codes

    def new_code(self) -> str:
        """A fresh random code."""
        return self._codes(self.code_length)

    def template(self, text: str) -> str:
        """``text`` as every recipient's shortened text will measure (for part counting)."""
        found = find_urls(text)
        return self._rewrite(text, found, ["x" * self.code_length] * len(found))[0]

    def per_recipient(self, text: str, recipients: int) -> list[Shortened]:
        """``recipients`` rewritten texts, every code distinct (``[]`` when no URL is found)."""
        found = find_urls(text)
        if not found:
            return []
        seen: set[str] = set()
        out: list[Shortened] = []
        for _ in range(recipients):
            codes: list[str] = []
            for _url in found:
                code = self.new_code()
                while code in seen:
                    code = self.new_code()
                seen.add(code)
                codes.append(code)
            rewritten, links = self._rewrite(text, found, codes)
            out.append(Shortened(rewritten, links))
        return out

    def _rewrite(
        self, text: str, found: list[Found], codes: list[str]
    ) -> tuple[str, tuple[ShortLink, ...]]:
        pieces: list[str] = []
        links: list[ShortLink] = []
        at = 0
        for i, (f, code) in enumerate(zip(found, codes, strict=False)):
            pieces.append(text[at : f.start])
            pieces.append(f"{self.base}/{code}")
            links.append(ShortLink(code, i, f.url))
            at = f.end
        pieces.append(text[at:])
        return "".join(pieces), tuple(links)
