"""Which parts of a message text are URLs we shorten.

Only ``http://`` and ``https://`` URLs with a valid host are shortened; anything else
(``javascript:``, ``data:``, a scheme-less ``www.``, a malformed host) is left as written, so
the redirect service can only ever send a reader to an address that was a well-formed web URL
in a text its account sent. Trailing punctuation that ends a sentence (``.``, ``,``, ``!``,
``?``, ``:``, ``;``, quotes, and a closing bracket with no opening one in the URL) is not part
of the URL, as readers and phones understand it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

from dispatcher.webhooks.urls import UrlRefused, canonical, canonical_host

# A candidate: the scheme, then anything up to whitespace or a character that cannot be in a
# URL written in a text (quotes and angle brackets delimit URLs in prose).
_CANDIDATE = re.compile(r"(?<![A-Za-z0-9+.-])https?://[^\s<>\"'`]+", re.IGNORECASE)
_TRAILING = ".,!?:;'\"*"


@dataclass(frozen=True, slots=True)
class Found:
    """A URL in a text: ``text[start:end] == url``."""

    start: int
    end: int
    url: str


def _trim(url: str) -> str:
    while url:
        last = url[-1]
        if (
            last in _TRAILING
            or (last == ")" and url.count("(") < url.count(")"))
            or (last == "]" and url.count("[") < url.count("]"))
        ):
            url = url[:-1]
        else:
            break
    return url


def is_shortenable(url: str) -> bool:
    """Whether ``url`` is an absolute http(s) URL with a valid host, no credentials (a
    ``bank.example@evil.example`` disguise) and no whitespace or control characters: the
    checks every webhook URL gets (:func:`dispatcher.webhooks.urls.canonical`), on any port."""
    try:
        canonical(url, restrict_ports=False)
    except UrlRefused:
        return False
    return True


def find_urls(text: str) -> list[Found]:
    """The shortenable URLs of ``text``, in order."""
    found: list[Found] = []
    for match in _CANDIDATE.finditer(text):
        before = text[: match.start()]
        word = "" if not before or before[-1].isspace() else before.rsplit(None, 1)[-1]
        if ":" in word:
            continue  # inside another scheme's text (``data:text/html,http://…``): left alone
        url = _trim(match.group(0))
        if is_shortenable(url):
            found.append(Found(match.start(), match.start() + len(url), url))
    return found


_SAFE = "!#$%&'()*+,/:;=?@[]~-._"


def location(url: str) -> str:
    """``url`` as an HTTP ``Location`` header value: the host in its ASCII (IDNA) form, any
    other non-ASCII character percent-encoded (UTF-8), everything else as written."""
    if url.isascii():
        return url
    parts = urlsplit(url)
    host, _ip = canonical_host(parts.hostname or "")
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    rest = urlunsplit(("", "", parts.path, parts.query, parts.fragment))
    return f"{parts.scheme}://{netloc}{quote(rest, safe=_SAFE)}"
