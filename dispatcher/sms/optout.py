"""Opt-out and opt-in keywords: which inbound bodies mean "stop" or "start again".

A body is a keyword only when, after normalisation, it *is* the keyword: one word, nothing
else. Normalisation (the same for the configured lists and for inbound bodies):

1. Unicode NFKC (full-width letters, compatibility forms);
2. letters without a decomposition are mapped (``Ł`` → ``L``, ``Ø`` → ``O``, ``Đ`` → ``D``,
   ``ß`` → ``SS``), then accents are dropped (``REZYGNUJĘ`` → ``REZYGNUJE``, ``É`` → ``E``);
3. whitespace, punctuation (Unicode ``P*``) and invisible format characters (zero-width
   space, BOM) are trimmed from both ends (``" Stop. "``, ``"STOP!!"``, ``"'stop'"``);
4. upper case.

Anything with something left between letters is not a keyword: ``STOP IT``, ``please stop``,
``S.T.O.P`` and ``STOP 🛑`` are ordinary messages. Symbols (emoji) are not trimmed, on purpose:
an opt-out must be unambiguous. A word on both lists counts as an opt-out.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from dispatcher.config import Settings

# Longer bodies are never keywords; checking them costs nothing.
MAX_KEYWORD_BODY = 64
KEYWORD_COLUMN_MAX = 16  # inbound_messages.keyword / suppressions.keyword

_UNDECOMPOSABLE = str.maketrans(
    {"Ł": "L", "ł": "l", "Ø": "O", "ø": "o", "Đ": "D", "đ": "d", "ß": "ss", "Æ": "AE", "æ": "ae"}
)


class KeywordAction(StrEnum):
    """What a keyword does to the sender's place on the account's suppression list."""

    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"


@dataclass(frozen=True, slots=True)
class KeywordMatch:
    """An inbound body that is a keyword: the action and the normalised keyword."""

    action: KeywordAction
    keyword: str


def _trimmable(ch: str) -> bool:
    category = unicodedata.category(ch)
    return ch.isspace() or category.startswith("P") or category == "Cf"


def normalize_keyword(text: str) -> str:
    """The comparable form of a body or a configured keyword (see the module docstring)."""
    s = unicodedata.normalize("NFKC", text).translate(_UNDECOMPOSABLE)
    s = "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))
    start, end = 0, len(s)
    while start < end and _trimmable(s[start]):
        start += 1
    while end > start and _trimmable(s[end - 1]):
        end -= 1
    return s[start:end].upper()


def parse_keyword_list(value: str | Iterable[str]) -> frozenset[str]:
    """A comma-separated setting (or any iterable) as a set of normalised keywords."""
    items = value.split(",") if isinstance(value, str) else value
    return frozenset(k for k in (normalize_keyword(i) for i in items) if k)


@dataclass(frozen=True)
class Keywords:
    """The opt-out and opt-in keyword sets, normalised."""

    opt_out: frozenset[str]
    opt_in: frozenset[str]

    @classmethod
    def from_lists(cls, opt_out: str | Iterable[str], opt_in: str | Iterable[str]) -> Keywords:
        """Build from comma-separated strings or iterables of words."""
        return cls(parse_keyword_list(opt_out), parse_keyword_list(opt_in))

    @classmethod
    def from_settings(cls, settings: Settings) -> Keywords:
        """``SMSDISPATCH_OPTOUT_KEYWORDS`` and ``SMSDISPATCH_OPTIN_KEYWORDS``."""
        return cls.from_lists(settings.optout_keywords, settings.optin_keywords)

    @classmethod
    def default(cls) -> Keywords:
        """The built-in lists (the settings' defaults, without reading the environment)."""
        return cls.from_lists(Settings.optout_keywords, Settings.optin_keywords)

    def action_of(self, keyword: str | None) -> KeywordAction | None:
        """What a (stored, normalised) keyword does now; ``None`` if it is not on a list."""
        if not keyword:
            return None
        if keyword in self.opt_out:
            return KeywordAction.OPT_OUT
        if keyword in self.opt_in:
            return KeywordAction.OPT_IN
        return None

    def match(self, body: str) -> KeywordMatch | None:
        """The keyword ``body`` is, or ``None`` for an ordinary message."""
        if len(body) > MAX_KEYWORD_BODY:
            return None
        word = normalize_keyword(body)
        action = self.action_of(word)
        return KeywordMatch(action, word[:KEYWORD_COLUMN_MAX]) if action else None
