"""A property fuzzer over the carrier callback endpoints and the inbox apply path, on real
processes (API, dlr worker pool, scheduler) and a real database: PostgreSQL in the suite's
PostgreSQL pass (marked slow: it runs there only), where a NUL once stopped every report.

Hypothesis generates what an attacker or a clumsy carrier posts: arbitrary Unicode, NULs, lone
surrogates (escaped and raw), huge strings, deep nesting, odd numbers, wrong shapes, bytes that
are not UTF-8. Properties, for every example:

* the API never answers 5xx;
* a valid report (and, after an inbound example, a valid inbound message) posted right after
  the hostile one is applied within a third of the callback lease, that is without waiting for
  any recovery: nothing hostile holds up the pipeline;
* hostile items written straight into the inbox (as a version without the API's checks, or a
  bug, would leave them) are applied, dropped or set aside as dead letters, never left
  blocking; and the valid report after them is applied in time too.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from dispatcher.accounts.account import create_account
from dispatcher.store import callback_inbox, dead_letters
from dispatcher.store.numbers import NumberKind, add_number
from dispatcher.store.schema import carrier_callbacks, inbound_messages
from tests.support.log import queued_messages, set_status, status_of
from tests.support.stack import Stack, running_stack, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "fuzz-callback-token"
LEASE_S = 30.0
NORMAL_S = LEASE_S / 3  # applied without any lease running out: nothing held it up
OUR_NUMBER = "+48500900900"
SURROGATES = ["\ud800", "\udfff", "a\udbffb", "\udc00\ud800"]
NUL_TEXTS = ["\x00", "id\x00", "\x00" * 64, "DELIVRD\x00"]
STATS = ["DELIVRD", "UNDELIV", "EXPIRED", "REJECTD", "ACCEPTD", "delivrd", "", "NOPE"]


@pytest.fixture(scope="module")
def fuzz_stack() -> Iterator[Stack]:
    with running_stack(
        workers={"dlr": 1},
        reports=False,
        carrier_callback_token=TOKEN,
        callback_lease_s=LEASE_S,
        callback_max_failures=2,
        report_retry_s=4,  # hostile reports naming no message of ours are dropped soon
    ) as s:
        yield s


@pytest.fixture(scope="module")
def db(fuzz_stack: Stack) -> Iterator[Engine]:
    engine = fuzz_stack.db()
    account, _ = create_account(engine, "fuzz-inbound")
    with engine.begin() as conn:
        add_number(conn, OUR_NUMBER, account.id, NumberKind.LONG_NUMBER, time.time())
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def sent(db: Engine) -> Iterator[Iterator[tuple[str, str]]]:
    """Messages sent through ``default``: (id, carrier id), one for each valid report."""
    ids = queued_messages(db, 400)

    def gen() -> Iterator[tuple[str, str]]:
        for mid in ids:
            cid = f"fz-{mid}"[:64]
            set_status(db, mid, "sent", cid)
            yield mid, cid

    yield gen()


# -- what hostile callers post ----------------------------------------------------------------
texts = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8"), max_size=12).map(lambda t: t + "\x00" + t),
    st.sampled_from(NUL_TEXTS + SURROGATES),
    st.integers(4000, 200_000).map(lambda n: "\u00e9" * n),
    st.text(alphabet="\u200b\u202e\ufeff\ufffd\U0001f600\u0301 ", max_size=20),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
report_items = st.fixed_dictionaries(
    {},
    optional={
        "id": values,
        "ref": values,
        "stat": st.sampled_from(STATS) | values,
        "err": values,
        "done_at": values,
        **{"x" * 70: values},  # a field name too long
    },
)
inbound_items = st.fixed_dictionaries(
    {},
    optional={
        "id": values,
        "from": st.sampled_from(["+48600100200", "0048 600 100 200"]) | values,
        "to": st.just(OUR_NUMBER) | values,
        "text": values,
        "udh": st.fixed_dictionaries({}, optional={"ref": values, "total": values, "seq": values})
        | values,
        "received_at": values,
    },
)


def nested(depth: int) -> Any:
    out: Any = {"id": "deep"}
    for i in range(depth):
        out = [out] if i % 2 else {"a": out}
    return out


def nested_bytes(depth: int) -> bytes:
    """The body of :func:`nested` written directly (the json module recurses per level)."""
    opens = "".join("[" if i % 2 else '{"a":' for i in reversed(range(depth)))
    closes = "".join("]" if i % 2 else "}" for i in range(depth))
    return (opens + '{"id":"deep"}' + closes).encode()


bodies = st.one_of(
    st.lists(report_items | inbound_items, min_size=1, max_size=5),
    report_items,
    inbound_items,
    values,
    st.lists(st.just({"id": "x", "stat": "DELIVRD"}), min_size=1001, max_size=1001),
)


def encode(body: Any, how: str) -> bytes:
    if how == "ascii":  # escapes: \u0000, \ud800 …
        return json.dumps(body, ensure_ascii=True).encode()
    # raw: lone surrogates become bytes that are not UTF-8
    return json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")


raw_bodies = st.one_of(
    st.tuples(bodies, st.sampled_from(["ascii", "raw"])).map(lambda b: encode(*b)),
    st.integers(5, 3000).map(nested_bytes),
    st.binary(max_size=64),
    st.sampled_from([b"", b"{", b'{"id": "\\ud800x", "stat": "DELIVRD"}', b"\xff\xfe{}"]),
)


# -- helpers ----------------------------------------------------------------------------------
def post(stack: Stack, kind: str, content: bytes, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{stack.api_url}/carrier/default/{kind}",
        content=content,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json", **headers},
        timeout=30,
    )


def valid_report_applies_in_time(stack: Stack, db: Engine, mid: str, cid: str, by: str) -> None:
    item = {"id": cid, "stat": "DELIVRD"} if by == "id" else {"ref": mid, "stat": "DELIVRD"}
    started = time.monotonic()
    r = post(stack, "reports", json.dumps(item).encode())
    assert r.status_code == 200, r.text
    wait_until(lambda: status_of(db, mid) == "delivered", NORMAL_S, 0.02, "valid report applied")
    TIMES.append(time.monotonic() - started)


def valid_inbound_applies_in_time(stack: Stack, db: Engine) -> None:
    cid = f"mo-{uuid.uuid4().hex}"
    item = {"id": cid, "from": "+48600100200", "to": OUR_NUMBER, "text": "ok"}
    r = post(stack, "inbound", json.dumps(item).encode())
    assert r.status_code == 200, r.text

    def stored() -> bool:
        with db.connect() as conn:
            found = conn.execute(
                select(func.count()).where(inbound_messages.c.carrier_message_id == cid)
            ).scalar_one()
        return bool(found)

    wait_until(stored, NORMAL_S, 0.02, "valid inbound message applied")


TIMES: list[float] = []
FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


# -- the properties ---------------------------------------------------------------------------
# The bodies of the issue (a NUL in a report and in an inbound message), always tried first.
NUL_REPORT = encode([{"id": "c-\x00-1", "stat": "DELIVRD"}], "ascii")
NUL_INBOUND = encode(
    {"id": "mo-\x00", "from": "+48600100200", "to": OUR_NUMBER, "text": "a"}, "ascii"
)


@FUZZ
@given(
    body=raw_bodies,
    kind=st.sampled_from(["reports", "inbound"]),
    by=st.sampled_from(["id", "ref"]),
)
@example(body=NUL_REPORT, kind="reports", by="id")
@example(body=NUL_INBOUND, kind="inbound", by="ref")
@example(body=encode({"ref": "\ud800", "stat": "DELIVRD"}, "ascii"), kind="reports", by="id")
@example(body=encode(nested(40), "ascii"), kind="reports", by="ref")
def test_hostile_callbacks_get_4xx_and_never_hold_up_valid_ones(
    fuzz_stack: Stack, db: Engine, sent: Iterator[tuple[str, str]], body: bytes, kind: str, by: str
) -> None:
    r = post(fuzz_stack, kind, body)
    assert r.status_code < 500, (r.status_code, r.text[:300])
    assert r.status_code in (200, 400, 413), r.text[:300]
    if r.status_code == 400:
        assert r.json()["errors"], r.text  # each refusal names what was wrong
    mid, cid = next(sent)
    valid_report_applies_in_time(fuzz_stack, db, mid, cid, by)
    if kind == "inbound":
        valid_inbound_applies_in_time(fuzz_stack, db)


stored_items = st.lists(
    st.one_of(
        report_items,
        st.fixed_dictionaries({"id": st.sampled_from(NUL_TEXTS), "stat": st.just("DELIVRD")}),
        st.fixed_dictionaries({"ref": st.sampled_from(NUL_TEXTS), "stat": st.just("UNDELIV")}),
    ),
    min_size=1,
    max_size=4,
)


@FUZZ
@given(items=stored_items, kind=st.sampled_from(["report", "inbound"]))
def test_hostile_rows_in_the_inbox_are_set_aside_and_never_hold_up_valid_ones(
    fuzz_stack: Stack, db: Engine, sent: Iterator[tuple[str, str]], items: list[Any], kind: str
) -> None:
    """Straight into the inbox, past the API's checks: the apply path on its own."""
    # The inbox holds JSON text: lone surrogates cannot be stored, so they become "?".
    items = json.loads(json.dumps(items, ensure_ascii=False).encode("utf-8", "replace"))
    with db.begin() as conn:
        [row] = callback_inbox.add(conn, kind, "default", [items], time.time(), LEASE_S)
    mid, cid = next(sent)
    valid_report_applies_in_time(fuzz_stack, db, mid, cid, "id")
    if kind == "inbound":
        valid_inbound_applies_in_time(fuzz_stack, db)
    HOSTILE_ROWS.append(row)


HOSTILE_ROWS: list[int] = []


def test_after_the_fuzzing_nothing_is_stuck(fuzz_stack: Stack, db: Engine) -> None:
    """Every hostile row written to the inbox was applied, dropped or set aside (NULs on
    PostgreSQL end as dead letters); the valid reports all went through in normal time."""
    assert HOSTILE_ROWS and TIMES, "the fuzz tests ran first"

    def left() -> list[int]:
        with db.connect() as conn:
            return [
                int(i)
                for i in conn.execute(select(carrier_callbacks.c.id)).scalars()
                if int(i) in set(HOSTILE_ROWS)
            ]

    # Two tries (callback_max_failures=2), the back-off between them, the scheduler's tick.
    wait_until(lambda: left() == [], 60, 0.2, "hostile rows applied or set aside")
    with db.connect() as conn:
        letters = dead_letters.listing(conn, limit=10_000)
    assert all(d.failures == 2 and d.error for d in letters)
    assert "Traceback" not in fuzz_stack.log("api")
    assert max(TIMES) < NORMAL_S
    print(f"valid reports applied after hostile input: max {max(TIMES):.2f} s, n={len(TIMES)}")
