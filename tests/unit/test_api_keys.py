"""API keys every client of the original API can send (issue 16): letters and digits only, an
``Authorization`` 128 characters long, and the pairs issued before still authenticating.

The property runs the real commands (``smsdispatch accounts create`` and ``rotate-key``) with
the operating system's random source replaced by Hypothesis's draws, so every value the CSPRNG
could return (the boundaries 0 and 61 included) is a case the property covers.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import secrets
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, insert

from dispatcher.accounts.account import (
    APPLICATION_KEY_LENGTH,
    AUTHORIZATION_LENGTH,
    Authenticator,
    create_account,
    key_hash,
    rotate_key,
)
from dispatcher.cli.main import main
from dispatcher.ids import KEY_ALPHABET, alphanumeric_token
from dispatcher.store.db import make_engine
from dispatcher.store.migrate import upgrade
from dispatcher.store.schema import api_keys

ALNUM = re.compile(r"^[A-Za-z0-9]+$")


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """A migrated SQLite log; the CLI finds it through ``DATABASE_URL``."""
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="smsd-keys-"))
        url = f"sqlite:///{os.path.join(tmp, 'log.db')}"
        upgrade(url)
        stack.enter_context(mock.patch.dict(os.environ, {"DATABASE_URL": url}))
        yield url


@pytest.fixture(scope="module")
def engine(database: str) -> Iterator[Engine]:
    e = make_engine(database)
    yield e
    e.dispose()


def _cli(*argv: str) -> dict[str, Any]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(list(argv)) == 0
    return dict(json.loads(out.getvalue()))


def _assert_sendable(pair: dict[str, Any]) -> None:
    app_key, authorization = pair["Application-Key"], pair["Authorization"]
    assert ALNUM.match(app_key) and len(app_key) == APPLICATION_KEY_LENGTH, app_key
    assert ALNUM.match(authorization) and len(authorization) == AUTHORIZATION_LENGTH


PAIR = APPLICATION_KEY_LENGTH + AUTHORIZATION_LENGTH
ISSUED: set[str] = set()  # application keys already in the module's database (unique column)


@settings(max_examples=40, deadline=None)
@given(draws=st.lists(st.integers(0, len(KEY_ALPHABET) - 1), min_size=2 * PAIR, max_size=2 * PAIR))
def test_every_key_the_commands_can_issue_is_letters_and_digits(
    draws: list[int], database: str, engine: Engine
) -> None:
    keys = ["".join(KEY_ALPHABET[i] for i in draws[k : k + PAIR]) for k in (0, PAIR)]
    expected = [(k[:APPLICATION_KEY_LENGTH], k[APPLICATION_KEY_LENGTH:]) for k in keys]
    assume(expected[0][0] != expected[1][0] and not ISSUED & {expected[0][0], expected[1][0]})
    source = iter(draws)

    def randbelow(n: int) -> int:
        assert n == len(KEY_ALPHABET)
        return next(source)

    name = f"keys-{uuid.uuid4().hex[:12]}"
    with mock.patch.object(secrets, "randbelow", randbelow):
        created = _cli("accounts", "create", name)
        rotated = _cli("accounts", "rotate-key", name, "--overlap", "1h")
    ISSUED.update(pair[0] for pair in expected)
    auth = Authenticator(engine, ttl_s=0)
    for pair, want in zip((created, rotated), expected, strict=True):
        assert (pair["Application-Key"], pair["Authorization"]) == want
        _assert_sendable(pair)
        account = auth.authenticate(pair["Application-Key"], pair["Authorization"])
        assert account is not None and account.name == name


def test_keys_use_the_whole_alphabet_uniformly_enough() -> None:
    """The real random source: every character appears (no alphabet slice is lost)."""
    seen = "".join(alphanumeric_token(AUTHORIZATION_LENGTH) for _ in range(40))
    assert ALNUM.match(seen)
    assert set(seen) == set(KEY_ALPHABET)


def test_keys_issued_before_still_authenticate_and_rotate(engine: Engine) -> None:
    """A pair in the old format (URL-safe base64: ``-`` and ``_``) keeps working, and rotating
    away from it gives a new alphanumeric pair while the old one lasts out its overlap."""
    account, _ = create_account(engine, f"legacy-{uuid.uuid4().hex[:8]}")
    old_app, old_auth = "Ab-_" + secrets.token_urlsafe(24), "Cd_-" + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(
            insert(api_keys).values(
                account_id=account.id,
                app_key_hash=key_hash(old_app),
                secret_hash=key_hash(old_auth),
                created_at=time.time(),
            )
        )
    auth = Authenticator(engine, ttl_s=0)
    assert auth.authenticate(old_app, old_auth) == account
    new = rotate_key(engine, account.id, overlap_s=3600)
    _assert_sendable({"Application-Key": new.application_key, "Authorization": new.authorization})
    assert auth.authenticate(old_app, old_auth) == account
    assert auth.authenticate(new.application_key, new.authorization) == account
    rotate_key(engine, account.id, overlap_s=0)
    assert auth.authenticate(old_app, old_auth) is None
