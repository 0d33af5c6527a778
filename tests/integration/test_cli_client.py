"""``smsdispatch send``, ``status`` and ``campaign upload`` against a real stack."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from dispatcher.cli.exits import Exit
from tests.support.stack import ROOT, ApiClient, Stack, running_stack, wait_until
from tests.support.terminal import run_on_terminal

pytestmark = [pytest.mark.integration, pytest.mark.any_db]
ROWS = 50_000


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    # No bulk pool: the upload is about acceptance; 50,000 sends would only load the machine.
    with running_stack(workers={"priority": 1}, scheduler=False) as s:
        yield s


@pytest.fixture(scope="module")
def account(stack: Stack) -> ApiClient:
    return stack.account()


def _env(stack: Stack, account: ApiClient) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSDISPATCH_")}
    env.update(
        {
            "PYTHONPATH": ROOT,
            "SMSDISPATCH_URL": stack.api_url,
            "SMSDISPATCH_APP_KEY": account.keys["Application-Key"],
            "SMSDISPATCH_AUTHORIZATION": account.keys["Authorization"],
        }
    )
    return env


def _cli(stack: Stack, account: ApiClient, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dispatcher.cli", *args],
        env=_env(stack, account),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )


def _count(stack: Stack, account: ApiClient) -> int:
    engine = stack.db()
    with engine.connect() as conn:
        n = conn.execute(
            text("SELECT count(*) FROM messages WHERE account_id = :a"), {"a": account.account_id}
        ).scalar_one()
    engine.dispose()
    return int(n)


def test_send_and_status(stack: Stack, account: ApiClient) -> None:
    sent = _cli(stack, account, "send", "--to", "+48111222333", "--text", "Hello", "--priority")
    assert sent.returncode == 0, sent.stderr
    ids = json.loads(sent.stdout)["ids"]
    assert len(ids) == 1 and json.loads(sent.stdout)["lane"] == "priority"

    def status() -> str | None:
        out = _cli(stack, account, "status", ids[0])
        assert out.returncode == 0, out.stderr
        s = json.loads(out.stdout)["status"]
        return s if s in ("sent", "delivered") else None

    wait_until(status, 30, interval=0.3, what="sent")
    bad = _cli(stack, account, "send", "--to", "+48111222333", "--text", "x", "--sender", "?" * 20)
    assert bad.returncode == 5  # Exit.API_REFUSED
    assert json.loads(bad.stderr) == {
        "error": "invalid_sender",
        "status": 400,
        "message": json.loads(bad.stderr)["message"],
        "parameter": "sender",
    }


@pytest.mark.slow  # ~1 min on a loaded 2-core machine: runs once, in the PostgreSQL pass
def test_campaign_upload_of_50000_rows_with_bad_rows(
    stack: Stack, account: ApiClient, tmp_path: pytest.TempPathFactory
) -> None:
    path = os.path.join(str(tmp_path), "spring.csv")
    bad: dict[int, str] = {}  # line number → expected code
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "phone"])
        for i in range(ROWS):
            line = i + 2
            phone = f"+4860{i:07d}"
            if i % 5000 == 17:
                phone, bad[line] = "+48 12", "invalid_phone_number"
            elif i % 5000 == 29:
                phone, bad[line] = "", "missing_phone"
            elif i % 5000 == 41:
                phone, bad[line] = f"+4860{i - 1:07d}", "duplicate_phone_number"
            w.writerow([f"Ann {i}", phone])
    before = _count(stack, account)
    upload = ("campaign", "upload", path, "--name", "spring", "--text", "Spring sale: -20%")
    out = _cli(stack, account, *upload)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert summary["rows"] == ROWS
    assert summary["requests"] == 5, "batches of 10,000 numbers"
    assert summary["rejected"] == len(bad)
    assert summary["accepted"] == ROWS - len(bad)
    assert "rows/s" in out.stderr and "ETA" in out.stderr
    with open(summary["rejectedFile"], encoding="utf-8") as fh:
        rejected = {int(r["row"]): r for r in csv.DictReader(fh)}
    assert {n: r["code"] for n, r in rejected.items()} == bad
    assert rejected[19]["phone"] == "+48 12"
    assert _count(stack, account) - before == ROWS - len(bad)
    print(f"\n50,000-row upload: {summary['seconds']} s ({ROWS / summary['seconds']:,.0f} rows/s)")

    again = _cli(stack, account, *upload)  # a re-run (after a crash, say) sends nothing twice
    assert again.returncode == 0, again.stderr[-3000:]
    replay = json.loads(again.stdout)
    assert replay["replayedRequests"] == replay["requests"] == 5
    assert _count(stack, account) - before == ROWS - len(bad)


def test_campaign_upload_with_a_message_column(
    stack: Stack, account: ApiClient, tmp_path: pytest.TempPathFactory
) -> None:
    path = os.path.join(str(tmp_path), "personal.csv")
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["phoneNumber", "message"])
        for i in range(40):
            w.writerow([f"+4870{i:07d}", f"Hi #{i % 10}, your order shipped"])
        w.writerow(["+4870999", ""])  # no text
        w.writerow(["+48 1", "Hi"])
    before = _count(stack, account)
    rejected_path = os.path.join(str(tmp_path), "out.csv")
    out = _cli(stack, account, "campaign", "upload", path, "--rejected", rejected_path)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert (summary["rows"], summary["accepted"], summary["rejected"]) == (42, 40, 2)
    assert summary["requests"] == 11, "one request per distinct text (10) and the bad number"
    with open(rejected_path, encoding="utf-8") as fh:
        codes = {int(r["row"]): r["code"] for r in csv.DictReader(fh)}
    assert codes == {42: "empty_message", 43: "invalid_phone_number"}
    assert _count(stack, account) - before == 40


def test_upload_progress_is_a_bar_on_a_terminal_and_lines_in_a_log(
    stack: Stack, account: ApiClient, tmp_path: pytest.TempPathFactory
) -> None:
    path = os.path.join(str(tmp_path), "progress.csv")
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["phone"])
        for i in range(3000):
            w.writerow([f"+4880{i:07d}"])
    upload = ["campaign", "upload", path, "--text", "Hi", "--batch", "500"]

    argv = [sys.executable, "-m", "dispatcher.cli", *upload, "--name", "on-a-terminal"]
    code, shown = run_on_terminal(argv, {**_env(stack, account), "TERM": "xterm"}, ROOT, 300)
    assert code == 0, shown[-3000:]
    assert re.search(r"upload: 100%\|█+\| ETA 00:00, rows 3,000  accepted 3,000  rejected 0", shown)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", shown)
    assert re.search(r"accepted\s+3000\r?\n", plain)  # the summary as key/value rows, not JSON
    assert '"accepted"' not in plain

    piped = _cli(stack, account, *upload, "--name", "in-a-log")
    assert piped.returncode == 0, piped.stderr[-3000:]
    assert "\r" not in piped.stderr and "\x1b" not in piped.stderr
    last = piped.stderr.strip().splitlines()[-1]
    assert last.startswith("upload: 100.0%  rows 3,000  accepted 3,000  rejected 0  ")
    assert json.loads(piped.stdout)["accepted"] == 3000


def test_exit_codes_against_the_api(stack: Stack, account: ApiClient) -> None:
    refused = _cli(stack, account, "status", "not-a-message-id")
    assert refused.returncode == Exit.API_REFUSED, refused.stderr
    assert json.loads(refused.stderr)["status"] in (400, 404)
    env = {**_env(stack, account), "SMSDISPATCH_AUTHORIZATION": "wrong"}
    wrong_keys = subprocess.run(
        [sys.executable, "-m", "dispatcher.cli", "send", "--to", "+48111222333", "--text", "x"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert wrong_keys.returncode == Exit.API_REFUSED, wrong_keys.stderr
    assert json.loads(wrong_keys.stderr)["status"] in (401, 403)


def test_campaign_pause_resume_cancel_and_message_cancel(stack: Stack, account: ApiClient) -> None:
    """No bulk pool runs here: the campaign's messages stay queued while they are controlled."""
    sent = _cli(stack, account, "send", "--to", "+48111000001,+48111000002,+48111000003",
                "--text", "Sale", "--campaign", "cli/spring")  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    first, *_ = json.loads(sent.stdout)["ids"]
    paused = _cli(stack, account, "campaign", "pause", "cli/spring")
    assert paused.returncode == 0, paused.stderr
    out = json.loads(paused.stdout)
    assert out["state"] == "paused" and out["changed"] == 3 and out["messages"] == {"paused": 3}
    resumed = _cli(stack, account, "campaign", "resume", "cli/spring", "-o", "human")
    assert resumed.returncode == 0 and "running" in resumed.stdout, resumed.stderr
    one = _cli(stack, account, "message", "cancel", first)
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout) == {"id": first, "statusName": "cancelled"}
    again = _cli(stack, account, "message", "cancel", first)
    assert again.returncode == Exit.API_REFUSED
    assert json.loads(again.stderr)["error"] == "message_not_cancellable"
    cancelled = _cli(stack, account, "campaign", "cancel", "cli/spring")
    assert cancelled.returncode == 0, cancelled.stderr
    out = json.loads(cancelled.stdout)
    assert out["state"] == "cancelled" and out["changed"] == 2
    assert out["messages"] == {"cancelled": 3}
    refused = _cli(stack, account, "campaign", "resume", "cli/spring")
    assert refused.returncode == Exit.API_REFUSED
    assert json.loads(refused.stderr) == {
        "error": "campaign_cancelled",
        "status": 409,
        "message": json.loads(refused.stderr)["message"],
        "parameter": "campaign",
    }
    unknown = _cli(stack, account, "campaign", "pause", "no such campaign/")
    assert unknown.returncode == Exit.API_REFUSED
    assert json.loads(unknown.stderr)["error"] == "campaign_not_found"
