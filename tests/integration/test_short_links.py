"""Short links over real processes (issue 21): the API shortens, the redirect service
(``smsdispatch links``) answers over real HTTP, clicks reach the log and a signed
``message.click`` webhook reaches a receiver through the webhooks lane."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from smsdispatch_client.webhooks import verify
from sqlalchemy import select, update

from dispatcher.ids import alphanumeric_token
from dispatcher.sms import check_parts
from dispatcher.store import webhook_settings as admin
from dispatcher.store.links import settle_codes
from dispatcher.store.records import NewMessage, ShortLink
from dispatcher.store.schema import accounts, link_clicks, messages, short_links, webhook_deliveries
from tests.support.receiver import Receiver
from tests.support.services import free_port
from tests.support.stack import ApiClient, Stack, running_stack, wait_until

pytestmark = pytest.mark.integration

PHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)
PREVIEW_UA = "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"
LONG_A = "https://shop.example.com/spring-sale/collections/women/dresses?utm_source=sms&utm_campaign=spring2026&ref=abcdef"
LONG_B = "https://help.example.org/articles/how-to-return-an-item-you-bought-online-in-our-shop"


@pytest.fixture(scope="module")
def rx() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture(scope="module")
def lstack() -> Iterator[Stack]:
    port = free_port()
    with running_stack(
        workers={"priority": 1, "bulk": 1, "webhooks": 1},
        webhook_allow_private=True,
        webhook_timeout_s=2,
        short_link_base=f"http://127.0.0.1:{port}/l",
        links_port=port,
    ) as s:
        s.spawn("links", [sys.executable, "-m", "dispatcher.cli", "links"])
        s.env["LINKS_URL"] = f"http://127.0.0.1:{port}"
        wait_until(lambda: _ok(f"http://127.0.0.1:{port}/readyz"), 30, what="links ready")
        yield s


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def hooked(stack: Stack, rx: Receiver, path: str, **values: Any) -> tuple[ApiClient, str]:
    client = stack.account()
    engine = stack.db()
    with engine.begin() as conn:
        conn.execute(
            update(accounts)
            .where(accounts.c.id == client.account_id)
            .values(webhook_url=rx.url(path), **values)
        )
        secret = admin.ensure_secret(conn, client.account_id)
    engine.dispose()
    assert secret is not None
    return client, secret


def send(client: ApiClient, text: str, phones: list[str], **extra: Any) -> list[dict[str, Any]]:
    r = client.send({"sender": "ACME", "message": text, "phoneNumbers": phones, **extra})
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


def rows(stack: Stack, table: Any, **where: Any) -> list[dict[str, Any]]:
    engine = stack.db()
    with engine.connect() as conn:
        q = select(table)
        for k, v in where.items():
            q = q.where(table.c[k] == v)
        out = [dict(r._mapping) for r in conn.execute(q)]
    engine.dispose()
    return out


def click(url: str, ua: str = PHONE_UA, method: str = "GET") -> httpx.Response:
    return httpx.request(method, url, headers={"User-Agent": ua}, timeout=10)


def test_two_urls_to_three_recipients_get_six_codes_and_parts_count_the_short_text(
    lstack: Stack, rx: Receiver
) -> None:
    client, _ = hooked(lstack, rx, "/six")
    text = f"Spring sale, up to 50% off: {LONG_A} Returns: {LONG_B}. Reply STOP to opt out."
    assert check_parts(text, 10).parts == 2  # as written: two parts
    data = send(client, text, ["+48500100001", "+48500100002", "+48500100003"], shortLink=True)
    assert [m["numberOfParts"] for m in data] == [1, 1, 1]  # as sent: one
    codes = [link["shortUrl"].rsplit("/", 1)[1] for m in data for link in m["shortLinks"]]
    assert len(codes) == 6 and len(set(codes)) == 6
    assert all(len(c) == 8 and c.isalnum() for c in codes)
    for m in data:
        assert [link["url"] for link in m["shortLinks"]] == [LONG_A, LONG_B]
        (row,) = rows(lstack, messages, id=m["id"])
        assert row["original_body"] == text
        assert row["parts"] == 1 and check_parts(row["body"], 10).parts == 1
        for link in m["shortLinks"]:
            assert link["shortUrl"] in row["body"] and link["url"] not in row["body"]
        stored = rows(lstack, short_links, message_id=m["id"])
        assert sorted(s["url"] for s in stored) == sorted([LONG_A, LONG_B])
    # The carrier got the shortened text (the simulator records its length only).
    (sent,) = wait_until(
        lambda: [s for s in lstack.sim_submits() if s.get("to") == "+48500100001"], 30
    )
    (first,) = rows(lstack, messages, id=data[0]["id"])
    assert (sent["text_len"], sent["parts"]) == (len(first["body"]), 1) and len(text) > 160


def test_a_click_redirects_records_one_click_and_one_signed_webhook(
    lstack: Stack, rx: Receiver
) -> None:
    client, secret = hooked(lstack, rx, "/click")
    (m,) = send(client, f"Your order: {LONG_B}", ["+48500100011"], shortLink=True)
    short = m["shortLinks"][0]["shortUrl"]
    r = click(short)
    assert r.status_code == 302 and r.headers["location"] == LONG_B
    assert r.headers["cache-control"] == "private, no-store"
    assert r.headers["referrer-policy"] == "no-referrer"
    clicks = wait_until(lambda: rows(lstack, link_clicks, message_id=m["id"]), 20, what="click")
    assert [(c["client"], c["bot"], c["ip_hash"]) for c in clicks] == [("mobile", False, None)]
    hooks = wait_until(
        lambda: [q for q in rx.requests("/click") if b"message.click" in q.body], 40, what="hook"
    )
    (req,) = hooks
    verify(req.body, req.headers, [secret])
    payload = json.loads(req.body)
    assert payload["type"] == "message.click" and payload["id"] == m["id"]
    assert (payload["url"], payload["client"], payload["phoneNumber"]) == (
        LONG_B,
        "mobile",
        "+48500100011",
    )
    # A second click is counted, but the first-click webhook is not sent again.
    assert click(short).status_code == 302
    wait_until(lambda: len(rows(lstack, link_clicks, message_id=m["id"])) == 2, 20)
    deliveries = rows(lstack, webhook_deliveries, message_id=m["id"], event="message.click")
    assert len(deliveries) == 1
    # The API shows the clicks and the click-through rate.
    view = client.get(m["id"])
    assert view["clicks"] == 2 and view["clickThroughRate"] == 1.0
    assert view["shortLinks"][0]["clicks"] == 2 and view["shortLinks"][0]["previews"] == 0


def test_all_clicks_setting_sends_a_webhook_per_click(lstack: Stack, rx: Receiver) -> None:
    client, _ = hooked(lstack, rx, "/all", click_webhooks="all")
    (m,) = send(client, f"See {LONG_A}", ["+48500100021"], shortLink=True)
    short = m["shortLinks"][0]["shortUrl"]
    for _ in range(3):
        assert click(short).status_code == 302
    wait_until(
        lambda: (
            len(rows(lstack, webhook_deliveries, message_id=m["id"], event="message.click")) == 3
        ),
        20,
        what="three click webhooks",
    )


def test_a_preview_fetch_is_flagged_and_fires_no_webhook(lstack: Stack, rx: Receiver) -> None:
    client, _ = hooked(lstack, rx, "/preview")
    (m,) = send(client, f"See {LONG_A}", ["+48500100031"], shortLink=True)
    short = m["shortLinks"][0]["shortUrl"]
    assert click(short, PREVIEW_UA).status_code == 302  # previews still see the target
    assert click(short, PHONE_UA, "HEAD").status_code == 302
    assert click(short, PHONE_UA, "GET").status_code == 302
    found = wait_until(lambda: len(rows(lstack, link_clicks, message_id=m["id"])) == 3, 20)
    assert found
    recorded = rows(lstack, link_clicks, message_id=m["id"])
    assert sorted((c["client"], c["bot"]) for c in recorded) == [
        ("bot", True),
        ("bot", True),
        ("mobile", False),
    ]
    # The webhook row is created in the transaction that records the clicks: one, for the
    # phone's click only.
    (d,) = rows(lstack, webhook_deliveries, message_id=m["id"], event="message.click")
    assert json.loads(d["payload"])["client"] == "mobile"
    view = client.get(m["id"])
    assert view["clicks"] == 1 and view["shortLinks"][0]["previews"] == 2


def test_only_previews_send_no_webhook(lstack: Stack, rx: Receiver) -> None:
    client, _ = hooked(lstack, rx, "/only-preview")
    (m,) = send(client, f"See {LONG_A}", ["+48500100041"], shortLink=True)
    short = m["shortLinks"][0]["shortUrl"]
    assert click(short, PREVIEW_UA).status_code == 302
    wait_until(lambda: rows(lstack, link_clicks, message_id=m["id"]), 20, what="preview")
    assert rows(lstack, webhook_deliveries, message_id=m["id"], event="message.click") == []


def test_expired_and_unknown_codes(lstack: Stack, rx: Receiver) -> None:
    base = lstack.env["SMSDISPATCH_SHORT_LINK_BASE"]
    client, _ = hooked(lstack, rx, "/exp", link_lifetime_s=120.0)
    (m,) = send(client, f"See {LONG_A}", ["+48500100051"], shortLink=True)
    (link,) = rows(lstack, short_links, message_id=m["id"])
    assert link["expires_at"] - link["created_at"] == pytest.approx(120.0)  # the account's
    engine = lstack.db()
    with engine.begin() as conn:
        conn.execute(
            update(short_links)
            .where(short_links.c.code == link["code"])
            .values(expires_at=time.time() - 1)
        )
    engine.dispose()
    r = click(f"{base}/{link['code']}")
    assert r.status_code == 410 and "location" not in r.headers
    assert "expired" in r.text
    r = click(f"{base}/{alphanumeric_token(8)}")
    assert r.status_code == 404 and "location" not in r.headers
    assert rows(lstack, link_clicks, code=link["code"]) == []


@pytest.mark.parametrize(
    "path",
    [
        "//evil.example",
        "/l//evil.example",
        "/l/https://evil.example",
        "/l/%2F%2Fevil.example",
        "/l/abcdefgh?url=https://evil.example",
        "/l/../evil",
        "/l/abc\\evil.example",
        "/https:/evil.example",
    ],
)
def test_no_open_redirect(lstack: Stack, path: str) -> None:
    links = lstack.env["LINKS_URL"]
    with httpx.Client(timeout=10) as http:
        r = http.send(http.build_request("GET", links + "/"), follow_redirects=False)
        assert r.status_code == 404
        raw = httpx.Request("GET", links + "/")
        raw.url = raw.url.copy_with(raw_path=path.encode())
        r = http.send(raw, follow_redirects=False)
    assert r.status_code == 404 and "location" not in r.headers


def test_javascript_data_and_malformed_urls_are_never_shortened(
    lstack: Stack, rx: Receiver
) -> None:
    client, _ = hooked(lstack, rx, "/js")
    text = (
        "a javascript:alert(1) b data:text/html,http://x.example c http://ex%ample.com "
        "d http://[::1 e http://:80/x f http://user@evil.example g http://a..b "
        "h https://x.example:99999/"
    )
    (m,) = send(client, text, ["+48500100061"], shortLink=True)
    assert "shortLinks" not in m
    (row,) = rows(lstack, messages, id=m["id"])
    assert row["body"] == text and row["original_body"] is None
    assert rows(lstack, short_links, message_id=m["id"]) == []


def test_short_link_without_a_base_is_refused(lstack: Stack) -> None:
    # The stack has a base; the refusal is checked against the settings in the unit tests
    # (tests/unit/test_short_links.py). Here: shortLink false keeps the text as written.
    client = lstack.account()
    (m,) = send(client, f"See {LONG_A}", ["+48500100071"], shortLink=False)
    assert "shortLinks" not in m
    (row,) = rows(lstack, messages, id=m["id"])
    assert row["body"] == f"See {LONG_A}"


def test_colliding_codes_are_replaced_before_the_insert(lstack: Stack) -> None:
    base = lstack.env["SMSDISPATCH_SHORT_LINK_BASE"]
    taken = rows(lstack, short_links)[0]["code"]
    body = f"a {base}/{taken} b {base}/{taken}"
    m = NewMessage(
        id="x", account_id=1, submission_id="s", external_id="e", phone="+48500100081",
        sender="ACME", body=body, parts=1, encoding="gsm7", flash=False, lane="bulk",
        status="queued", created_at=0.0, valid_until=1.0,
        links=(ShortLink(taken, 0, LONG_A), ShortLink(taken, 1, LONG_B)),
    )  # fmt: skip
    engine = lstack.db()
    with engine.connect() as conn:
        assert settle_codes(conn, [m]) == 2
    engine.dispose()
    new = [link.code for link in m.links]
    assert taken not in new and len(set(new)) == 2
    assert m.body == f"a {base}/{new[0]} b {base}/{new[1]}"


def test_the_links_service_serves_its_metrics(lstack: Stack) -> None:
    r = httpx.get(lstack.env["LINKS_URL"] + "/metrics", timeout=10)
    assert r.status_code == 200
    assert 'smsdispatch_link_requests_total{outcome="redirect"}' in r.text
    assert "smsdispatch_link_clicks_written_total" in r.text


def test_without_the_log_it_is_not_ready_and_answers_503(lstack: Stack) -> None:
    port = free_port()
    env = {
        **lstack.env,
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/nothing-listens-here",
        "SMSDISPATCH_LINKS_PORT": str(port),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "dispatcher.cli", "links"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _ok(base + "/healthz"), 30, what="links alive")
        assert httpx.get(base + "/readyz", timeout=10).status_code == 503
        r = httpx.get(f"{base}/l/{alphanumeric_token(8)}", timeout=10)  # the base ends in /l
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert "location" not in r.headers
    finally:
        proc.terminate()
        proc.wait(20)


def test_a_stopped_links_process_writes_the_clicks_it_holds(
    lstack: Stack, rx: Receiver, tmp_path: Any
) -> None:
    client, _ = hooked(lstack, rx, "/stop")
    data = send(client, f"See {LONG_A}", [f"+4850010090{i}" for i in range(5)], shortLink=True)
    port = free_port()
    env = {
        **lstack.env,
        "SMSDISPATCH_LINKS_PORT": str(port),
        "SMSDISPATCH_SHORT_LINK_BASE": f"http://127.0.0.1:{port}",
    }
    log = tmp_path / "links.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dispatcher.cli", "links"], env=env, stdout=out, stderr=out
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _ok(base + "/readyz"), 30, what="second links process ready")
        codes = [m["shortLinks"][0]["shortUrl"].rsplit("/", 1)[1] for m in data]
        with httpx.Client(timeout=10, headers={"User-Agent": PHONE_UA}) as http:
            for _ in range(20):
                for code in codes:
                    assert http.get(f"{base}/{code}").status_code == 302
    finally:
        proc.terminate()  # at once: some of the 100 clicks are still in memory
        proc.wait(30)  # uvicorn re-raises SIGTERM after its graceful shutdown: -15
    assert "Application shutdown complete" in log.read_text()
    written = sum(len(rows(lstack, link_clicks, message_id=m["id"])) for m in data)
    assert written == 100


def test_campaign_upload_and_send_with_short_link(lstack: Stack, tmp_path: Any) -> None:
    client = lstack.account()
    path = tmp_path / "spring.csv"
    path.write_text(
        "phoneNumber,name\n+48500100951,Ala\n+48500100952,Ola\n+48500100953,Ela\n",
        encoding="utf-8",
    )
    env = {
        **{k: v for k, v in lstack.env.items() if not k.startswith("SMSDISPATCH_")},
        "SMSDISPATCH_URL": lstack.api_url,
        "SMSDISPATCH_APP_KEY": client.keys["Application-Key"],
        "SMSDISPATCH_AUTHORIZATION": client.keys["Authorization"],
    }
    cli = [sys.executable, "-m", "dispatcher.cli"]
    up = subprocess.run(
        [*cli, "campaign", "upload", str(path), "--text", f"Hi {{name}}: {LONG_A}", "--short-link"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout)["accepted"] == 3
    one = subprocess.run(
        [*cli, "send", "--to", "+48500100954", "--text", f"See {LONG_B}", "--short-link"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert one.returncode == 0, one.stderr
    mine = rows(lstack, messages, account_id=client.account_id)
    assert len(mine) == 4 and all(m["original_body"] for m in mine)
    links = rows(lstack, short_links, account_id=client.account_id)
    assert len({link["code"] for link in links}) == 4
    assert sorted(link["url"] for link in links) == sorted([LONG_A] * 3 + [LONG_B])
