"""Opt-out / opt-in keyword matching: exactly a keyword, after documented normalisation."""

from __future__ import annotations

import pytest

from dispatcher.config import Settings
from dispatcher.sms.optout import KeywordAction, Keywords, normalize_keyword

KW = Keywords.default()


@pytest.mark.parametrize(
    "body",
    [
        "STOP",
        "stop",
        "Stop",
        "  stop  ",
        "\tSTOP\n",
        "STOP.",
        "stop!",
        "Stop!!!",
        "STOP...",
        "STOP…",
        "'stop'",
        '"STOP"',
        "(stop)",
        "\u200bSTOP\u200b",  # zero-width spaces
        "\u00a0STOP\u00a0",  # no-break spaces
        "ＳＴＯＰ",  # full-width
        "stopall",
        "UNSUBSCRIBE",
        "cancel",
        "End",
        "quit.",
        "NIE",
        "nie!",
        "REZYGNUJE",
        "REZYGNUJĘ",
        "rezygnuję.",
        "Rezygnuje",
    ],
)
def test_opt_out_keywords(body: str) -> None:
    match = KW.match(body)
    assert match is not None, body
    assert match.action is KeywordAction.OPT_OUT


@pytest.mark.parametrize("body", ["START", "start", " Start. ", "UNSTOP", "unstop!", "TAK", "tak"])
def test_opt_in_keywords(body: str) -> None:
    match = KW.match(body)
    assert match is not None and match.action is KeywordAction.OPT_IN


@pytest.mark.parametrize(
    "body",
    [
        "STOP IT",
        "please stop",
        "stop please",
        "Stop sending me this",
        "S.T.O.P",
        "S T O P",
        "STOPP",
        "STOP STOP",
        "STOP 🛑",
        "NIE WIEM",
        "TAKE",
        "STARTING",
        "",
        "   ",
        ".",
        "STOP" * 20,
        "Is the shop open on Sunday?",
    ],
)
def test_ordinary_messages_are_not_keywords(body: str) -> None:
    assert KW.match(body) is None


def test_match_reports_the_normalised_keyword() -> None:
    match = KW.match(" rezygnuję! ")
    assert match is not None and match.keyword == "REZYGNUJE"


def test_normalisation_maps_letters_without_decomposition() -> None:
    assert normalize_keyword("Łódź") == "LODZ"
    assert normalize_keyword("  ŻÓŁĆ!  ") == "ZOLC"


def test_configured_lists_are_normalised_too() -> None:
    kw = Keywords.from_lists(" rezygnuję , Stop ,,", "start")
    assert kw.opt_out == {"REZYGNUJE", "STOP"}
    assert kw.match("REZYGNUJE") is not None


def test_settings_lists_are_used() -> None:
    kw = Keywords.from_settings(Settings.from_env({}, optout_keywords="HALT", optin_keywords="GO"))
    assert kw.match("halt") is not None and kw.match("STOP") is None
    go = kw.match("go")
    assert go is not None and go.action is KeywordAction.OPT_IN


def test_a_word_on_both_lists_opts_out() -> None:
    kw = Keywords.from_lists("STOP", "STOP,START")
    match = kw.match("stop")
    assert match is not None and match.action is KeywordAction.OPT_OUT
