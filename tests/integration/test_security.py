"""Security over real processes: key rotation with an overlap, per-account request rate
limits (429 + Retry-After), per-account daily send caps, and logs free of secrets.

One stack (API, scheduler, priority/bulk/dlr/webhooks workers, simulator with delivery reports)
serves every test; the log check runs last and reads what the whole module made the processes
write (keys used, an OTP sent with a known code, a signed webhook).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
import redis
from sqlalchemy import update

from dispatcher.accounts.account import set_limits
from dispatcher.accounts.quotas import CAP_KEY_PREFIX, seconds_to_midnight
from dispatcher.store.schema import accounts
from tests.integration.test_webhooks import hooked_account
from tests.support.receiver import Receiver
from tests.support.stack import ROOT, ApiClient, Stack, running_stack, wait_until

pytestmark = pytest.mark.integration

CALLBACK_TOKEN = "cb-token-4f1e0c9a7d2b"
SEEN_SECRETS: list[str] = []  # every key/secret the module used: none may reach a log


@pytest.fixture(scope="module")
def rx() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture(scope="module")
def sstack() -> Iterator[Stack]:
    with running_stack(
        workers={"priority": 1, "bulk": 1, "dlr": 1, "webhooks": 1},
        carrier_callback_token=CALLBACK_TOKEN,
        webhook_allow_private=True,
        auth_cache_ttl_s=1.0,
    ) as s:
        yield s


def client_for(stack: Stack, **limits: float | int | None) -> ApiClient:
    client = stack.account()
    SEEN_SECRETS.extend(client.keys.values())
    if limits:
        engine = stack.db()
        set_limits(engine, client.account_id, limits.get("rate"), limits.get("cap"))  # type: ignore[arg-type]
        engine.dispose()
    return client


def cli(stack: Stack, *argv: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "dispatcher.cli", *argv],
        env=stack.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return dict(json.loads(out.stdout))


def statuses(base: str, keys: dict[str, str]) -> int:
    """Any authenticated read: 404 (nothing sent yet) proves the pair was accepted."""
    return httpx.get(base + "/v2.1/sms/statuses", headers=keys, timeout=30).status_code


@pytest.mark.slow  # waits out a 20 s overlap: runs once, in the PostgreSQL pass
def test_rotate_key_old_and_new_work_during_overlap_old_refused_after(sstack: Stack) -> None:
    client = client_for(sstack)
    name = f"acct-rot-{time.monotonic_ns()}"
    engine = sstack.db()
    with engine.begin() as conn:
        conn.execute(update(accounts).where(accounts.c.id == client.account_id).values(name=name))
    engine.dispose()
    old = client.keys
    assert statuses(sstack.api_url, old) == 404  # cached by the API from here on

    overlap = 20.0  # the CLI alone may take several seconds on a loaded machine
    rotated_at = time.time()
    out = cli(sstack, "accounts", "rotate-key", name, "--overlap", f"{overlap:g}s")
    cli_done = time.time()  # the old pair expires between rotated_at and this, plus overlap
    new = {
        "Application-Key": str(out["Application-Key"]),
        "Authorization": str(out["Authorization"]),
    }
    SEEN_SECRETS.extend(new.values())
    assert new != old
    assert statuses(sstack.api_url, new) == 404
    # During the overlap (the API's cache, 1 s here, has reloaded the old pair's expiry).
    time.sleep(1.2)
    assert time.time() < rotated_at + overlap - 1, "machine too slow for the overlap window"
    assert statuses(sstack.api_url, old) == 404
    # After it: the old pair is refused although its cache entry is fresh; the new one works.
    wait_until(lambda: time.time() > cli_done + overlap + 0.1, overlap + 5, what="overlap end")
    r = httpx.get(sstack.api_url + "/v2.1/sms/statuses", headers=old, timeout=30)
    assert r.status_code == 401, r.text
    assert r.json()["errors"][0]["code"] == "unauthorized"
    assert statuses(sstack.api_url, new) == 404
    # Mixing halves of the two pairs is refused too.
    mixed = {"Application-Key": new["Application-Key"], "Authorization": old["Authorization"]}
    assert statuses(sstack.api_url, mixed) == 401


def test_request_rate_limit_answers_429_with_retry_after(sstack: Stack) -> None:
    limited = client_for(sstack, rate=0.5)  # burst 1, then one request every 2 s
    other = client_for(sstack)
    started = time.monotonic()
    codes = []
    retry_after = []
    for _ in range(8):
        r = limited.http.get("/v2.1/sms/statuses")
        codes.append(r.status_code)
        if r.status_code == 429:
            assert r.json()["errors"][0]["code"] == "rate_limited"
            retry_after.append(int(r.headers["Retry-After"]))
    elapsed = time.monotonic() - started
    granted = sum(c != 429 for c in codes)
    assert 429 in codes, codes
    assert granted <= 1 + elapsed * 0.5 + 1, (codes, elapsed)
    assert all(1 <= s <= 2 for s in retry_after), retry_after
    # The limit is per account: another account is not throttled by this one.
    assert all(other.http.get("/v2.1/sms/statuses").status_code == 404 for _ in range(5))
    # Waiting out Retry-After lets the limited account in again.
    time.sleep(max(retry_after) + 0.1)
    assert limited.http.get("/v2.1/sms/statuses").status_code == 404


def test_daily_cap_partial_then_429_survives_redis_losing_the_counter(sstack: Stack) -> None:
    client = client_for(sstack, cap=3)
    body = {
        "sender": "ACME",
        "message": "cap test",
        "phoneNumbers": ["+48111000001", "+48111000002"],
    }
    r = client.send(body, **{"Idempotency-Key": "cap-1"})
    assert r.status_code == 200 and r.json()["meta"]["sentSms"] == 2, r.text
    # A replay of the same request is not counted again.
    r = client.send(body, **{"Idempotency-Key": "cap-1"})
    assert r.status_code == 200 and r.json()["meta"]["duplicate"] is True, r.text
    three = ["+48111000003", "+48111000004", "+48111000005"]
    r = client.send({"sender": "ACME", "message": "cap test", "phoneNumbers": three})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert [m["phoneNumber"] for m in doc["data"]] == ["+48111000003"]
    refused = [(e["code"], e["meta"]["value"]) for e in doc["errors"]]
    assert refused == [
        ("daily_cap_exceeded", "+48111000004"),
        ("daily_cap_exceeded", "+48111000005"),
    ]

    def over() -> httpx.Response:
        return client.send({"sender": "ACME", "message": "x", "phoneNumbers": ["+48111000009"]})

    r = over()
    assert r.status_code == 429, r.text
    assert r.json()["errors"][0]["code"] == "daily_cap_exceeded"
    retry = int(r.headers["Retry-After"])
    assert abs(retry - seconds_to_midnight(time.time())) <= 60
    # Redis loses the counter (restart without persistence): it is re-seeded from the log.
    rc = redis.Redis.from_url(sstack.env["REDIS_URL"])
    deleted = sum(rc.delete(k) for k in rc.scan_iter(f"{CAP_KEY_PREFIX}{client.account_id}:*"))
    rc.close()
    assert deleted == 1
    assert over().status_code == 429
    # Another account is not capped by this one.
    assert client_for(sstack).send(body).status_code == 200


def test_logs_hold_no_bodies_otp_codes_keys_or_webhook_secrets(sstack: Stack, rx: Receiver) -> None:
    client, secret = hooked_account(sstack, webhook_url=rx.url("/dlr"))
    SEEN_SECRETS.extend(client.keys.values())
    code = "739184"
    body = f"Your ACME verification code is {code}. Valid 5 minutes."
    r = client.send(
        {"sender": "ACME", "message": body, "phoneNumbers": ["+48111222444"], "priority": True}
    )
    assert r.status_code == 200, r.text
    mid = r.json()["data"][0]["id"]
    wait_until(lambda: client.status(mid) == "delivered", 60, what="OTP delivered")
    hook = rx.wait_for(1, "/dlr", timeout=60)[0]
    assert mid in hook.body.decode()
    time.sleep(1.0)  # let every process flush its last lines
    logs = sstack.logs()
    # The processes did log this message's life (else an empty log would pass).
    for name, task in (
        ("worker-priority", "send_chunk"),
        ("worker-dlr", "apply_reports"),
        ("worker-webhooks", "deliver_webhooks"),
    ):
        assert f"smsdispatch.{task}[" in sstack.log(name), f"{name} did not log its task"
    assert code not in logs
    assert body not in logs and "verification code" not in logs
    assert "cap test" not in logs
    assert secret not in logs and secret.split("_")[-1][:16] not in logs
    assert CALLBACK_TOKEN not in logs
    leaked = [s for s in SEEN_SECRETS if s in logs]
    assert not leaked, f"{len(leaked)} API keys found in the logs"
    assert SEEN_SECRETS
