"""Billing through real API processes: no overdraft under concurrency, answers typed as the
original's model, the operator's CLI, and a refund through the real pipeline (docs/prices.md)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import sys
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from dispatcher.store.balances import reconcile
from tests.integration.test_v21_clients import SmsApiResponse
from tests.support.stack import ROOT, Stack, running_stack, wait_until

pytestmark = pytest.mark.integration

PROCESSES = 8
PARTS = 120  # the balance pays for exactly this many parts
PLN = 985


def cli(stack: Stack, *args: str) -> tuple[int, Any]:
    """``smsdispatch …`` against the stack's database; (exit code, parsed JSON output)."""
    done = subprocess.run(
        [sys.executable, "-m", "dispatcher.cli", *args],
        env={**stack.env, "SMSDISPATCH_LOG_LEVEL": "WARNING"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout if done.returncode == 0 else done.stderr
    for candidate in (out, out.strip().splitlines()[-1] if out.strip() else ""):
        try:
            return done.returncode, json.loads(candidate)
        except json.JSONDecodeError:
            continue
    return done.returncode, out


def consistent(stack: Stack) -> None:
    engine = stack.db()
    with engine.connect() as conn:
        assert reconcile(conn) == []
    engine.dispose()
    code, out = cli(stack, "balance", "reconcile")
    assert code == 0 and out["consistent"], out


async def _flood(api: str, keys: dict[str, str], requests: int) -> list[httpx.Response]:
    """``requests`` sends, 1-3 recipients each, 48 at a time over fresh connections (so the
    kernel spreads them over every API process)."""
    sem = asyncio.Semaphore(48)

    async def one(i: int) -> httpx.Response:
        numbers = [f"+48500{i:04d}{k:02d}" for k in range(1 + i % 3)]
        async with sem, httpx.AsyncClient(base_url=api, headers=keys, timeout=60) as c:
            return await c.post(
                "/v2.1/sms", json={"sender": "ACME", "message": "hi", "phoneNumbers": numbers}
            )

    return list(await asyncio.gather(*(one(i) for i in range(requests))))


def test_eight_api_processes_spend_exactly_the_balance_and_no_more() -> None:
    with running_stack(
        workers={}, scheduler=False, api_workers=PROCESSES, billing=True, prices_reload_s=0.2
    ) as stack:
        client = stack.account("payer")
        assert cli(stack, "prices", "set", "PL", "0.01", "--currency", "PLN")[0] == 0
        code, shown = cli(
            stack, "balance", "top-up", "payer", f"{PARTS / 100:.2f}", "--currency", "PLN"
        )
        assert code == 0 and shown["balance"] == f"{PARTS / 100:.2f}", shown

        def started() -> int:
            return stack.log("api").count('"api.started"')

        wait_until(lambda: started() >= PROCESSES, 60, what="every api process")
        answers = asyncio.run(_flood(stack.api_url, client.keys, 2 * PARTS))

        accepted = 0
        statuses = set()
        for r in answers:
            statuses.add(r.status_code)
            body = SmsApiResponse.model_validate_json(r.content)  # the vendor's strict model
            assert body.meta is not None
            assert r.status_code in (200, 402), r.text
            for d in body.data or []:
                assert (d.smsPrice, d.currency, d.numberOfParts) == (1, PLN, 1)
            for e in body.errors or []:
                assert e.code == "insufficient_balance", r.text
            accepted += len(body.data or [])
            balance = body.meta.accountBalance
            assert balance is not None and float(balance) >= 0, balance
        assert statuses == {200, 402}
        assert accepted == PARTS
        engine = stack.db()
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT count(*), sum(price) FROM messages")).one()
            assert tuple(stored) == (PARTS, PARTS)
            balance = conn.execute(text("SELECT balance FROM balances")).scalar_one()
            assert balance == 0
        engine.dispose()
        consistent(stack)
        # Nothing left: the next request is refused as a whole with 402, each recipient named.
        r = client.send({"sender": "ACME", "message": "hi", "phoneNumbers": ["+48500999999"]})
        assert r.status_code == 402, r.text
        body = r.json()
        assert body["meta"]["accountBalance"] == "0.00"
        assert [e["code"] for e in body["errors"]] == ["insufficient_balance"]
        assert body["errors"][0]["meta"]["value"] == "+48500999999"


def test_answers_carry_prices_and_the_balance_and_refunds_come_back() -> None:
    with running_stack(
        billing=True, prices_reload_s=0.2, workers={"bulk": 1}, sending_stale_s=3
    ) as stack:
        client = stack.account("shop", priority=False)
        for args in (
            ("prices", "set", "PL", "0.07", "--currency", "PLN"),
            ("prices", "set", "+4850", "0.05", "--currency", "PLN", "--account", "shop"),
            ("balance", "top-up", "shop", "10.00", "--currency", "PLN"),
        ):
            code, out = cli(stack, *args)
            assert code == 0, out
        # Clear errors from the operator's commands, naming the field.
        for args, says in (
            (("prices", "set", "PL", "0.005", "--currency", "PLN"), "price: "),
            (("prices", "set", "US", "0.05", "--currency", "PLN"), "destination 'US'"),
            (("prices", "set", "PL", "0.05", "--currency", "XYZ"), "unknown currency"),
            (("balance", "top-up", "shop", "-1", "--currency", "PLN"), "amount: "),
            (("balance", "top-up", "shop", "1", "--currency", "EUR"), "balance is in PLN"),
            (("balance", "adjust", "shop", "1", "--currency", "PLN"), "note"),
            (
                ("prices", "set", "PL", "0.05", "--currency", "PLN", "--account", "nobody"),
                "no account",
            ),
        ):
            code, out = cli(stack, *args)
            assert code == 1 and says in out["error"], (args, out)

        long_text = "y" * 200  # two parts
        r = client.send(
            {
                "sender": "ACME",
                "message": long_text,
                "phoneNumbers": ["+48500100200", "+48600100200", "+4930123456"],
            }
        )
        assert r.status_code == 200, r.text
        body = SmsApiResponse.model_validate_json(r.content)
        assert body.meta is not None and body.meta.accountBalance == "9.76"  # 10 - 2×0.05 - 2×0.07
        assert {(d.phoneNumber, d.smsPrice, d.currency) for d in body.data or []} == {
            ("+48500100200", 10, PLN),
            ("+48600100200", 14, PLN),
        }
        assert [(e.code, e.meta.value if e.meta else None) for e in body.errors or []] == [
            ("no_price", "+4930123456")
        ]
        scraped = httpx.get(stack.api_url + "/metrics").text
        assert 'smsdispatch_recipients_unpaid_total{reason="no_price"} 1.0' in scraped
        first = r.json()["data"][0]
        view = client.get(first["id"])
        assert (view["smsPrice"], view["currency"]) == (first["smsPrice"], PLN)
        listing = client.http.get("/v2.1/sms")
        assert listing.json()["meta"]["accountBalance"] == "9.76"
        SmsApiResponse.model_validate_json(listing.content)

        # The carrier refuses everything outright: no carrier took them, so they are refunded.
        stack.sim_config(reject_prefixes=["+48500100201"])
        r = client.send({"sender": "ACME", "message": "hi", "phoneNumbers": ["+48500100201"]})
        assert r.status_code == 200 and r.json()["meta"]["accountBalance"] == "9.71"
        mid = r.json()["data"][0]["id"]
        wait_until(lambda: client.status(mid) == "rejected", 60, what="rejected by the carrier")
        wait_until(
            lambda: client.http.get("/v2.1/sms").json()["meta"]["accountBalance"] == "9.76",
            60,
            what="the refund",
        )
        code, rows = cli(stack, "balance", "ledger", "shop")
        assert code == 0
        kinds = [row["kind"] for row in rows]
        assert kinds == ["refund", "charge", "charge", "topup"], rows
        consistent(stack)
        code, csv_text = cli(stack, "usage", "--account", "shop")
        assert code == 0
        rows = list(csv.DictReader(io.StringIO(csv_text)))
        assert {(r["account"], r["country"], r["currency"]) for r in rows} == {
            ("shop", "PL", "PLN")
        }
        assert sum(int(r["messages"]) for r in rows) == 3
        assert sum(int(r["parts"]) for r in rows) == 5
        assert sum(Decimal(r["amount"]) for r in rows) == Decimal("0.29")
        assert sum(Decimal(r["refunded"]) for r in rows) == Decimal("0.05")
