"""Short links without processes: which URLs are shortened, codes, part counting, client
classes, settings (issue 21)."""

from __future__ import annotations

import itertools
import string
import time

import pytest

from dispatcher.accounts.account import Account
from dispatcher.config import Settings
from dispatcher.intake.submit import RequestRefused, SendRequest, prepare
from dispatcher.links.clients import BOT, DESKTOP, MOBILE, OTHER, classify
from dispatcher.links.shorten import Shortener
from dispatcher.links.urls import find_urls, location
from dispatcher.sms import check_parts
from dispatcher.sms.encoding import GSM7_BASIC_CHARS

BASE = "https://s.example.com"
ACCOUNT = Account(1, "acme", False)


@pytest.mark.parametrize(
    ("text", "urls"),
    [
        ("Go to https://example.com/a?b=1.", ["https://example.com/a?b=1"]),
        (
            "(see https://en.wikipedia.org/wiki/SMS_(disambiguation))",
            ["https://en.wikipedia.org/wiki/SMS_(disambiguation)"],
        ),
        ("(see http://example.com/x)", ["http://example.com/x"]),
        (
            "two: http://a.example/1, https://b.example/2!",
            ["http://a.example/1", "https://b.example/2"],
        ),
        ('"https://example.com/q"', ["https://example.com/q"]),
        ("HTTPS://EXAMPLE.COM/Up", ["HTTPS://EXAMPLE.COM/Up"]),
        ("https://zażółć.example/ścieżka", ["https://zażółć.example/ścieżka"]),
        ("javascript:alert(1)", []),
        ("data:text/html,<script>alert(1)</script>", []),
        ("data:text/html,http://x.example", []),
        ("javascript:location='http://x.example'", []),
        ("www.example.com", []),
        ("ftp://example.com/file", []),
        ("http://user:pw@example.com/", []),
        ("http://bank.example@evil.example/", []),
        ("http://ex%ample.com", []),
        ("http://[::1", []),
        ("https://x.example:99999/", []),
        ("http://", []),
        ("xhttp://example.com", []),
    ],
)
def test_which_urls_are_shortened(text: str, urls: list[str]) -> None:
    assert [f.url for f in find_urls(text)] == urls
    for f in find_urls(text):
        assert text[f.start : f.end] == f.url


def test_every_code_is_distinct_random_and_gsm7() -> None:
    s = Shortener(BASE, 8)
    texts = s.per_recipient("a https://a.example/1 b https://b.example/2", 500)
    codes = [link.code for t in texts for link in t.links]
    assert len(codes) == 1000 and len(set(codes)) == 1000
    assert all(len(c) == 8 and set(c) <= set(string.ascii_letters + string.digits) for c in codes)
    assert all(set(t.text) <= GSM7_BASIC_CHARS for t in texts)
    # Not sequential: codes of consecutive recipients share no long prefix.
    assert sum(a[:4] == b[:4] for a, b in itertools.pairwise(codes)) < 5


def test_a_repeated_draw_is_redrawn_within_a_submission() -> None:
    draws = iter(["AAAAAAAA", "AAAAAAAA", "BBBBBBBB", "CCCCCCCC"])
    s = Shortener(BASE, 8, codes=lambda _n: next(draws))
    texts = s.per_recipient("see https://a.example/1", 3)
    assert [t.links[0].code for t in texts] == ["AAAAAAAA", "BBBBBBBB", "CCCCCCCC"]


def test_the_template_measures_as_the_sent_text() -> None:
    s = Shortener(BASE + "/", 8)
    text = "Sale https://shop.example.com/" + "x" * 200 + " now"
    (sent,) = s.per_recipient(text, 1)
    assert len(s.template(text)) == len(sent.text) == len("Sale " + BASE + "/12345678 now")
    assert sent.text.startswith("Sale https://s.example.com/")


def _settings(**kw: object) -> Settings:
    return Settings.from_env({}, **kw)


def test_parts_are_counted_after_shortening() -> None:
    long_url = "https://shop.example.com/" + "p" * 180
    req = SendRequest("ACME", f"Hi {long_url}", ["+48500100200", "+48500100201"], short_link=True)
    prepared = prepare(req, ACCOUNT, _settings(short_link_base=BASE), time.time())
    for m in prepared.submission.messages:
        assert m.parts == 1 == check_parts(m.body, 10).parts
        assert m.original_body == f"Hi {long_url}" and len(m.links) == 1
    # Too long as written but not once shortened: accepted. Without shortLink: two parts.
    plain = prepare(
        SendRequest("ACME", f"Hi {long_url}", ["+48500100200"]),
        ACCOUNT,
        _settings(short_link_base=BASE),
        time.time(),
    )
    assert plain.submission.messages[0].parts == 2
    huge = "x" * 1400 + " https://shop.example.com/" + "p" * 400
    ok = prepare(
        SendRequest("ACME", huge, ["+48500100200"], short_link=True),
        ACCOUNT,
        _settings(short_link_base=BASE, max_parts=10),
        time.time(),
    )
    assert ok.submission.messages[0].parts == 10
    with pytest.raises(RequestRefused) as refused:
        prepare(SendRequest("ACME", huge, ["+48500100200"]), ACCOUNT, _settings(), time.time())
    assert refused.value.errors[0].code == "message_too_long"


def test_link_lifetime_is_the_accounts_or_the_default() -> None:
    now = time.time()
    req = SendRequest("ACME", "see https://a.example/", ["+48500100200"], short_link=True)
    default = prepare(req, ACCOUNT, _settings(short_link_base=BASE), now).submission.messages[0]
    assert default.links_expire_at == pytest.approx(now + 30 * 86400)
    week = Account(1, "acme", False, link_lifetime_s=7 * 86400.0)
    own = prepare(req, week, _settings(short_link_base=BASE), now).submission.messages[0]
    assert own.links_expire_at == pytest.approx(now + 7 * 86400)


def test_short_link_without_a_base_is_refused_naming_the_field() -> None:
    req = SendRequest("ACME", "see https://a.example/", ["+48500100200"], short_link=True)
    with pytest.raises(RequestRefused) as refused:
        prepare(req, ACCOUNT, _settings(), time.time())
    (error,) = refused.value.errors
    assert (error.code, error.parameter) == ("short_link_unsupported", "shortLink")


@pytest.mark.parametrize(
    "base",
    [
        "s.example.com",
        "ftp://s.example.com",
        "https://s.example.com/?x=1",
        "https://",
        "https://s.example.com:0x1/",
    ],
)
def test_a_bad_base_stops_the_process_at_start(base: str) -> None:
    with pytest.raises(ValueError, match="SMSDISPATCH_SHORT_LINK_BASE"):
        Settings.from_env({"SMSDISPATCH_SHORT_LINK_BASE": base})


def test_code_length_is_bounded() -> None:
    with pytest.raises(ValueError, match="CODE_LENGTH"):
        Settings.from_env({"SMSDISPATCH_SHORT_LINK_CODE_LENGTH": "4"})


@pytest.mark.parametrize(
    ("method", "agent", "purpose", "expected"),
    [
        (
            "GET",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148",
            "",
            (MOBILE, False),
        ),
        (
            "GET",
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) Chrome/126.0 Mobile Safari/537.36",
            "",
            (MOBILE, False),
        ),
        ("GET", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0", "", (DESKTOP, False)),
        (
            "GET",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) Safari/605.1.15",
            "",
            (DESKTOP, False),
        ),
        ("GET", "SomeBrowser/1.0", "", (OTHER, False)),
        ("HEAD", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)", "", (BOT, True)),
        ("GET", "Mozilla/5.0 (Windows NT 10.0)", "prefetch", (BOT, True)),
        (
            "GET",
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "",
            (BOT, True),
        ),
        ("GET", "WhatsApp/2.23.20.0 A", "", (BOT, True)),
        ("GET", "TelegramBot (like TwitterBot)", "", (BOT, True)),
        ("GET", "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", "", (BOT, True)),
        (
            "GET",
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "",
            (BOT, True),
        ),
        (
            "GET",
            "Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15 (KHTML, like Gecko) Twitterbot/1.0",
            "",
            (BOT, True),
        ),
        ("GET", "curl/8.5.0", "", (BOT, True)),
        ("GET", "", "", (BOT, True)),
    ],
)
def test_client_classes(method: str, agent: str, purpose: str, expected: tuple[str, bool]) -> None:
    assert classify(method, agent, purpose) == expected


def test_location_is_ascii() -> None:
    assert location("https://example.com/a?b=1#c") == "https://example.com/a?b=1#c"
    assert location("https://zażółć.example/ścieżka?q=ą") == (
        "https://xn--za-6ja4f8n1l.example/%C5%9Bcie%C5%BCka?q=%C4%85"
    )
