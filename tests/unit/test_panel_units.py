"""Support panel logic without a server: code masking, plain words, the search form, the
session store and the login limiter (on fakeredis)."""

from __future__ import annotations

import asyncio

import fakeredis
import pytest

from dispatcher.config import Settings
from dispatcher.panel.forms import parse_search, phone_to_e164
from dispatcher.panel.sessions import LoginLimiter, SessionStore
from dispatcher.panel.words import mask_codes, report_words
from dispatcher.store.panel_queries import Cursor

KEYWORDS = Settings().panel_mask_keywords


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Your code is 482913", "Your code is ••••••"),
        (
            "Twój kod weryfikacyjny: 1234. Nie udostępniaj go.",
            "Twój kod weryfikacyjny: ••••. Nie udostępniaj go.",
        ),
        ("PIN 12345678 for card ending 4321", "PIN •••••••• for card ending ••••"),
        ("Verification code 123456789 (too long to be a code)", None),
        ("Your code is 551 234", "Your code is ••• •••"),
        ("Your code is 551-234.", "Your code is •••-•••."),
        ("Kod: 55.12.34, ważny 5 min", "Kod: ••.••.••, ważny 5 min"),
        ("Your code: A5B1C2", "Your code: ••••••"),
        ("OTP 7K-9QX (2FA)", "OTP ••-••• (2FA)"),
        ("Your code is \uff15\uff15\uff11\uff12\uff13\uff14", "Your code is ••••••"),
        ("PIN\u00a01234\u00a05678", "PIN\u00a0••••\u00a0••••"),
        ("Verification code for +48 111 222 333", None),  # a phone number is not a code
    ],
)
def test_code_messages_have_their_digits_masked(body: str, expected: str | None) -> None:
    masked, changed = mask_codes(body, KEYWORDS)
    assert masked == (expected or body)
    assert changed is (expected is not None)


def test_other_messages_and_an_empty_setting_mask_nothing() -> None:
    assert mask_codes("Order 48291 has shipped", KEYWORDS) == ("Order 48291 has shipped", False)
    assert mask_codes("Your code is 482913", "") == ("Your code is 482913", False)


def test_reports_in_plain_words() -> None:
    assert report_words("DELIVRD", "000") == "Delivered to the handset"
    assert "unknown subscriber" in report_words("UNDELIV", "001")
    assert "carrier-specific" in report_words("UNDELIV", "777")
    assert report_words(None, None) == "No delivery report yet"


@pytest.mark.parametrize(
    "typed",
    ["0048 111 222 333", "+48111222333", "48111222333", "111 222 333", "(+48) 111-222-333"],
)
def test_phone_spellings_become_e164(typed: str) -> None:
    assert phone_to_e164(typed, "PL") == "+48111222333"


def test_international_digits_without_plus_work_without_a_region() -> None:
    assert phone_to_e164("48111222333", None) == "+48111222333"
    with pytest.raises(ValueError):
        phone_to_e164("111 222 333", None)
    with pytest.raises(ValueError):
        phone_to_e164("hello", "PL")


def test_search_form_reports_each_problem_on_its_field() -> None:
    form = parse_search(
        {
            "phone": "12ab",
            "status": "lost",
            "lane": "fast",
            "date_from": "2026-02-30",
            "direction": "sideways",
        },
        "PL",
    )
    assert set(form.errors) == {"phone", "status", "lane", "date_from", "direction"}
    reversed_dates = parse_search({"date_from": "2026-11-27", "date_to": "2026-11-26"}, None)
    assert set(reversed_dates.errors) == {"date_to"}
    inbound = parse_search({"direction": "in", "status": "sent", "sender": "ACME"}, None)
    assert set(inbound.errors) == {"status", "sender"}


def test_search_form_builds_the_filter() -> None:
    form = parse_search(
        {"phone": "0048 111 222 333", "date_from": "2026-11-26", "date_to": "2026-11-26"}, None
    )
    assert not form.errors
    assert form.filter.phones == ("+48111222333",)
    assert form.filter.date_to - form.filter.date_from == 86400  # the "to" day is included
    assert form.active
    cursor = Cursor(1795000000.25, "abc")
    assert parse_search({"after": cursor.encode()}, None).after == cursor
    assert "after" in parse_search({"after": "garbage"}, None).errors


def test_sessions_expire_and_end() -> None:
    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        store = SessionStore(redis, ttl_s=60)
        token, session = await store.create(7)
        loaded = await store.load(token)
        assert loaded == session and loaded.user_id == 7
        assert loaded.csrf_ok(session.csrf) and not loaded.csrf_ok("x") and not loaded.csrf_ok("")
        keys = [k.decode() for k in await redis.keys("*")]
        assert token not in "".join(keys)  # only its hash is stored
        assert await store.load(token + "x") is None
        await store.end(session)
        assert await store.load(token) is None

    asyncio.run(scenario())


def test_login_limiter_counts_per_user_and_per_address() -> None:
    async def scenario() -> None:
        limiter = LoginLimiter(fakeredis.FakeAsyncRedis(), per_user=3, per_ip=5, window_s=600)
        for _ in range(3):  # each attempt is counted as failed when it is allowed
            assert await limiter.attempt("ann", "10.0.0.1") == 0
        assert 0 < await limiter.attempt("ANN", "10.0.0.9") <= 600  # username, any address
        assert await limiter.attempt("bob", "10.0.0.1") == 0  # 4 of 5 for the address
        await limiter.succeeded("bob", "10.0.0.1")  # a right password gives the try back
        assert await limiter.attempt("bob", "10.0.0.1") == 0  # 4 of 5
        assert await limiter.attempt("eve", "10.0.0.1") == 0  # 5 of 5
        assert await limiter.attempt("dan", "10.0.0.1") > 0  # the address is spent
        assert await limiter.attempt("carol", "10.0.0.2") == 0
        await limiter.succeeded("ann", "10.0.0.2")
        assert await limiter.attempt("ann", "10.0.0.2") == 0

    asyncio.run(scenario())


def test_the_panel_reads_breakers_where_and_as_the_workers_write_them() -> None:
    from dispatcher.routing.breaker_state import KEY_PREFIX, STATE_NAMES
    from workers.sending import breaker

    assert breaker.KEY_PREFIX == KEY_PREFIX
    assert {s.value: s.name.lower().replace("_", "-") for s in breaker.State} == STATE_NAMES
