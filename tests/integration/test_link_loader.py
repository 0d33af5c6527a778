"""The redirect service's look-ups and click writes on a real database: codes asked for at
once are answered by few queries, unknown codes are None, and a batch of clicks writes its
rows and exactly one first-click webhook per message (issue 21)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from sqlalchemy import Engine, event, select, update
from sqlalchemy import exc as sa_exc

from dispatcher.accounts.account import create_account
from dispatcher.ids import alphanumeric_token, new_message_id
from dispatcher.links.clicks import ClickRecorder
from dispatcher.links.redirect import LinkLoader
from dispatcher.store.links import Click, write_clicks
from dispatcher.store.schema import accounts, link_clicks, messages, short_links, webhook_deliveries

pytestmark = pytest.mark.integration


def _seed(engine: Engine, n: int) -> tuple[int, list[tuple[str, str]]]:
    account, _ = create_account(engine, f"a-{time.monotonic_ns()}", sender_policy="open")
    now = time.time()
    pairs = [(alphanumeric_token(8), new_message_id()) for _ in range(n)]
    with engine.begin() as conn:
        conn.execute(
            update(accounts)
            .where(accounts.c.id == account.id)
            .values(webhook_url="https://hooks.example.com/sms")
        )
        conn.execute(
            messages.insert(),
            [
                {
                    "id": mid, "account_id": account.id, "submission_id": "s",
                    "external_id": f"e{i}", "phone": f"+48500{i:06d}", "sender": "ACME",
                    "body": f"b https://s.example.com/{code}", "parts": 1, "encoding": "gsm7",
                    "flash": False, "lane": "bulk", "status": "sent", "created_at": now,
                    "status_at": now, "valid_until": now + 60, "attempts": 1,
                    "original_body": "b https://shop.example.com/x",
                }
                for i, (code, mid) in enumerate(pairs)
            ],
        )  # fmt: skip
        conn.execute(
            short_links.insert(),
            [
                {
                    "code": code, "message_id": mid, "account_id": account.id, "position": 0,
                    "url": f"https://shop.example.com/x?{i}", "created_at": now,
                    "expires_at": now + 3600,
                }
                for i, (code, mid) in enumerate(pairs)
            ],
        )  # fmt: skip
    return account.id, pairs


def test_codes_asked_for_together_share_queries(engine: Engine) -> None:
    _account, pairs = _seed(engine, 60)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", count)
    loader = LinkLoader(engine)
    unknown = alphanumeric_token(8)

    async def ask() -> list[Any]:
        return await asyncio.gather(*(loader.get(c) for c, _ in pairs), loader.get(unknown))

    found = asyncio.run(ask())
    event.remove(engine, "before_cursor_execute", count)
    for (code, mid), link in zip(pairs, found[:-1], strict=True):
        assert link is not None and (link.code, link.message_id) == (code, mid)
    assert found[-1] is None
    lookups = [s for s in statements if "FROM short_links" in s]
    assert 1 <= len(lookups) <= 2, lookups  # 61 codes: one group, two at most


def test_a_batch_of_clicks_writes_every_click_and_one_first_click_webhook(
    engine: Engine,
) -> None:
    account_id, pairs = _seed(engine, 3)
    now = time.time()
    (c0, m0), (c1, m1), (c2, m2) = pairs
    clicks = [
        Click(c0, m0, account_id, now, "mobile", False, None, "https://shop.example.com/x?0"),
        Click(c0, m0, account_id, now + 1, "mobile", False, None, "https://shop.example.com/x?0"),
        Click(c1, m1, account_id, now, "bot", True, None, "https://shop.example.com/x?1"),
        Click(c2, m2, account_id, now, "desktop", False, "ab" * 16, "https://shop.example.com/x?2"),
    ]
    with engine.begin() as conn:
        written = write_clicks(conn, clicks, now)
    assert written.webhooks == 2  # m0 once, m2; the preview of m1 none
    assert written.firsts == {m0, m2}
    with engine.begin() as conn:  # a later batch: m0's first click was already reported
        again = write_clicks(conn, clicks[:1], now)
    assert again.webhooks == 0 and again.firsts == {m0}  # refused by the unique key
    with engine.begin() as conn:  # known to this writer: no look-up, no insert, no new first
        assert write_clicks(conn, clicks[:1], now, known_firsts={m0}).firsts == set()
    with engine.connect() as conn:
        stored = conn.execute(select(link_clicks.c.message_id, link_clicks.c.bot)).all()
        hooks = conn.execute(
            select(webhook_deliveries.c.message_id, webhook_deliveries.c.status_key).where(
                webhook_deliveries.c.event == "message.click"
            )
        ).all()
    assert len(stored) == 6 and sum(1 for r in stored if r.bot) == 1
    assert sorted(hooks) == sorted([(m0, "first"), (m2, "first")])


def test_known_first_clicks_do_not_hold_back_an_all_clicks_account(engine: Engine) -> None:
    account_id, [(code, mid)] = _seed(engine, 1)
    with engine.begin() as conn:
        conn.execute(
            update(accounts).where(accounts.c.id == account_id).values(click_webhooks="all")
        )
    now = time.time()
    click = Click(code, mid, account_id, now, "mobile", False, None, "https://shop.example.com/x")
    for _ in range(2):
        with engine.begin() as conn:
            written = write_clicks(conn, [click], now, known_firsts={mid})
        assert written.webhooks == 1 and written.firsts == set()


def test_the_recorder_remembers_a_first_click_only_once_it_is_committed(
    engine: Engine,
) -> None:
    account_id, [(code, mid)] = _seed(engine, 1)
    recorder = ClickRecorder(engine)
    click = Click(code, mid, account_id, time.time(), "mobile", False, None, "https://x.example/")

    def refuse(_conn: Any) -> None:
        raise sa_exc.OperationalError("COMMIT", None, Exception("connection lost"))

    event.listen(engine, "commit", refuse)
    recorder.add(click)
    assert recorder.flush() == 0  # the commit failed: the click waits, nothing is remembered
    event.remove(engine, "commit", refuse)
    assert mid not in recorder._firsts
    assert recorder.flush() == 1
    assert mid in recorder._firsts
    recorder.add(click)  # a repeat: recorded, and no look-up of the message
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(str(a[2])))
    assert recorder.flush() == 1
    assert not [s for s in statements if "FROM messages" in s], statements
    with engine.connect() as conn:
        clicks = conn.execute(select(link_clicks.c.message_id)).all()
        hooks = conn.execute(
            select(webhook_deliveries.c.message_id).where(
                webhook_deliveries.c.event == "message.click"
            )
        ).all()
    assert len(clicks) == 2 and len(hooks) == 1


def _two_writers(engine: Engine, clicks: list[Click], now: float) -> tuple[list[Any], list[int]]:
    """Both orders of ``clicks`` written at once, each in its own transaction."""
    start = threading.Barrier(2)
    errors: list[BaseException] = []
    created: list[int] = []

    def write(batch: list[Click]) -> None:
        try:
            with engine.begin() as conn:
                start.wait(10)
                created.append(write_clicks(conn, batch, now).webhooks)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(o,)) for o in (clicks, clicks[::-1])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors, created


def test_two_writers_of_the_same_first_clicks_never_deadlock(engine: Engine) -> None:
    """Two links processes record first clicks of the same messages, in opposite orders, at
    the same moment: both commit (no deadlock on the unique key) and each message gets one
    ``message.click`` webhook."""
    for _ in range(3):
        account_id, pairs = _seed(engine, 300)
        now = time.time()
        clicks = [
            Click(c, m, account_id, now, "mobile", False, None, "https://shop.example.com/x")
            for c, m in pairs
        ]
        errors, created = _two_writers(engine, clicks, now)
        assert errors == []
        assert sum(created) == len(pairs)  # every first click once, whoever wrote it
        with engine.connect() as conn:
            hooks = conn.execute(
                select(webhook_deliveries.c.message_id).where(
                    webhook_deliveries.c.event == "message.click",
                    webhook_deliveries.c.message_id.in_([m for _, m in pairs]),
                )
            ).all()
        assert sorted(r[0] for r in hooks) == sorted(m for _, m in pairs)
