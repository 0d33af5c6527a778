"""The layering rules of style.md, checked on the source (producer never imports consumer), and
the input boundary: hostile input reaches the rule libraries only as typed refusals."""

from __future__ import annotations

import ast
import pathlib
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.accounts import Account
from dispatcher.config import Settings
from dispatcher.errors import CATALOGUE
from dispatcher.sms import (
    EmptyMessage,
    InvalidPhoneNumber,
    TooManyParts,
    check_parts,
    count_parts,
    detect_encoding,
    normalize,
    split_parts,
)
from dispatcher.submit import RequestRefused, SendRequest, prepare

ROOT = pathlib.Path(__file__).resolve().parents[2]
# The contract, the message log, settings, logging, and pure rule libraries (never the API).
WORKER_MAY_IMPORT = (
    "dispatcher.contract",
    "dispatcher.store",
    "dispatcher.config",
    "dispatcher.logs",
    "dispatcher.ids",
    "dispatcher.webhooks",
    "dispatcher.optout",
    "dispatcher.sms",
    "dispatcher.ratelimit",
    "dispatcher.routing",  # the routing table both sides read (issue 5)
    "dispatcher.redis_clients",  # the one way to build a Redis client (Sentinel or not)
)


def imports(package: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        if "migrations" in path.parts:
            continue
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        out[str(path.relative_to(ROOT))] = names
    return out


def test_dispatcher_never_imports_workers() -> None:
    bad = {
        f: n
        for f, n in imports("dispatcher").items()
        if any(x == "workers" or x.startswith("workers.") for x in n)
    }
    assert not bad


def test_celery_only_at_the_edges() -> None:
    edges = {"dispatcher/broker.py", "workers/app.py", "workers/tasks.py"}
    users = {
        f
        for pkg in ("dispatcher", "workers")
        for f, n in imports(pkg).items()
        if any(x == "celery" or x.startswith("celery.") for x in n)
    }
    assert users <= edges, users - edges


def test_workers_import_only_the_shared_parts_of_dispatcher() -> None:
    bad = {}
    for f, names in imports("workers").items():
        wrong = {
            n for n in names if n.startswith("dispatcher") and not n.startswith(WORKER_MAY_IMPORT)
        }
        if wrong:
            bad[f] = wrong
    assert not bad


def test_sending_logic_is_plain_python() -> None:
    names = imports("workers")["workers/sending.py"]
    assert not {n for n in names if n.split(".")[0] in {"celery", "kombu", "redis", "aiohttp"}}


# -- Input boundaries: hostile input reaches the rule libraries only as clear, typed refusals ----
# (tests/unit/test_sms_*.py hold the behavioural properties of part counting, encoding detection
# and normalisation; these add arbitrary Unicode, lone surrogates and whole requests.)

_HOSTILE = settings(max_examples=200, deadline=None)
_any_unicode = st.text(st.characters(), max_size=400)  # includes lone surrogates and controls
_phoneish = st.one_of(
    st.text(st.characters(), max_size=40),
    st.text("+0123456789 ()-./٠١٢٣٤٥٦٧٨٩０１２３４５６７８９", max_size=40),
    st.builds(lambda n: "+48" + "1" * n, st.integers(0, 40)),
)
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


@_HOSTILE
@given(_phoneish, st.sampled_from([None, "PL", "US", "GB", "ZZ"]))
def test_normalize_returns_e164_or_refuses_with_a_reason(raw: str, region: str | None) -> None:
    try:
        e164 = normalize(raw, region)
    except InvalidPhoneNumber as exc:
        assert exc.reason in {"not_a_number", "invalid", "too_short", "too_long", "no_country"}
        return
    assert _E164.match(e164), (raw, e164)
    assert normalize(e164) == e164


@_HOSTILE
@given(st.text(st.characters(codec="utf-8"), max_size=400))
def test_part_counting_never_crashes_and_agrees_with_splitting(text: str) -> None:
    try:
        info = check_parts(text, 10)
    except (EmptyMessage, TooManyParts):
        assert not text or count_parts(text).parts > 10
        return
    assert 1 <= info.parts <= 10
    assert info.encoding is detect_encoding(text)
    assert len(split_parts(text)) == info.parts
    # Appending never lowers the count (a longer text is never cheaper).
    assert count_parts(text + "x").parts >= info.parts


@_HOSTILE
@given(
    sender=st.one_of(st.text(max_size=20), st.sampled_from(["ACME", "48500", "A" * 12])),
    message=_any_unicode,
    numbers=st.lists(
        st.one_of(_phoneish, st.sampled_from(["+48111222333", "+48500100200"])), max_size=15
    ),
    validity=st.one_of(st.none(), st.integers(-(2**70), 2**70)),
    schedule=st.one_of(st.none(), st.integers(-(2**70), 2**70)),
    kind=st.one_of(st.none(), st.integers(-5, 5)),
    external=st.one_of(st.none(), st.text(max_size=200)),
    url=st.one_of(st.none(), st.text(max_size=50), st.just("https://example.com/x")),
)
def test_prepare_accepts_or_refuses_naming_fields(
    sender: str,
    message: str,
    numbers: list[str],
    validity: int | None,
    schedule: int | None,
    kind: int | None,
    external: str | None,
    url: str | None,
) -> None:
    req = SendRequest(sender, message, numbers, validity, schedule, kind, None, url, external)
    account = Account(1, "a", True)
    try:
        prepared = prepare(req, account, Settings(), 1_800_000_000.0)
    except RequestRefused as exc:
        assert exc.errors and all(e.code in CATALOGUE and e.parameter for e in exc.errors)
        return
    phones = [m.phone for m in prepared.submission.messages]
    assert phones and len(set(phones)) == len(phones)
    assert all(_E164.match(p) for p in phones)
    assert all(e.code in CATALOGUE and e.source for e in prepared.recipient_errors)
    assert len(phones) + len(prepared.recipient_errors) == len(numbers)
