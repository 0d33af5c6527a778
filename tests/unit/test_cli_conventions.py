"""The CLI's conventions (issue 25 item 2): ``--version``, JSON for scripts and tables on a
terminal, exit codes, progress in both modes, shell completion, an example in every ``--help``.

Terminal cases run the real command on a pseudo-terminal; script cases on a pipe."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import io
import json
import os
import pty
import re
import shlex
import shutil
import socket
import struct
import subprocess
import sys
import termios
import threading
from importlib.metadata import version
from pathlib import Path

import pytest

from dispatcher.cli import output
from dispatcher.cli.exits import Exit
from dispatcher.cli.main import build_parser, main
from dispatcher.cli.parsers import walk
from tests.support.terminal import run_on_terminal

ROOT = str(Path(__file__).resolve().parents[2])
ANSI = re.compile(r"\x1b\[[0-9;]*m")
COLOUR = re.compile(r"\x1b\[(?:[0-9;]*;)?(?:3[0-7]|9[0-7]|38;)")
CONNECTIONS = """
[[connections]]
name = 'sim-a'
type = 'simulator'
url = 'http://127.0.0.1:9090'
tps = 50
destinations = ['+48']

[[connections]]
name = 'sim-b'
type = 'simulator'
url = 'http://127.0.0.1:9091'
tps = 20
fallback = true
"""


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SMSDISPATCH_") and k not in ("NO_COLOR", "FORCE_COLOR")
    }
    env.update({"PYTHONPATH": ROOT, "TERM": "xterm-256color", **extra})
    return env


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dispatcher.cli", *args],
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def _on_terminal(*args: str, **env: str) -> tuple[int, str]:
    return run_on_terminal([sys.executable, "-m", "dispatcher.cli", *args], _env(**env), ROOT)


@pytest.fixture
def connections(tmp_path: Path) -> str:
    path = tmp_path / "connections.toml"
    path.write_text(CONNECTIONS)
    return str(path)


def test_version() -> None:
    done = _cli("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"smsdispatch {version('smsdispatch')} (REST API v2.1, client "
        f"{version('smsdispatch-client')})"
    )


def test_json_when_piped_whatever_the_flag_position(connections: str) -> None:
    piped = _cli("connections", "list", "--config", connections)
    assert piped.returncode == 0, piped.stderr
    data = json.loads(piped.stdout)
    assert [c["name"] for c in data["connections"]] == ["sim-a", "sim-b"]
    # The exact JSON the command always printed (indent=2), whichever way JSON is asked for.
    assert piped.stdout == json.dumps(data, indent=2) + "\n"
    for flags in (["--json"], ["-o", "json"], ["--output", "json"]):
        after = _cli("connections", "list", "--config", connections, *flags)
        before = _cli(*flags, "connections", "list", "--config", connections)
        assert after.stdout == before.stdout == piped.stdout


def test_tables_on_a_terminal_and_json_there_when_asked(connections: str) -> None:
    code, shown = _on_terminal("connections", "list", "--config", connections)
    assert code == 0, shown
    text = ANSI.sub("", shown)
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    assert re.search(r"connections: sim-a\s", text) and re.search(r"connections: sim-b\s", text)
    assert re.search(r"url\s+http://127\.0\.0\.1:9090", text)
    assert re.search(r"failure_threshold\s+5", text)  # the breaker's key/value table
    assert "\x1b[1m" in shown  # keys in bold

    code, shown = _on_terminal("connections", "list", "--config", connections, "--json")
    assert code == 0
    assert json.loads(shown)["connections"][0]["name"] == "sim-a"


def test_errors_are_red_on_a_terminal_unless_no_color() -> None:
    code, shown = _on_terminal("status", "some-id", "--url", "http://127.0.0.1:9")
    assert code == Exit.INPUT  # no credentials in the environment
    assert COLOUR.search(shown), shown
    assert "error:" in ANSI.sub("", shown) and "no_credentials" in shown

    code, shown = _on_terminal("status", "some-id", NO_COLOR="1")
    assert code == Exit.INPUT
    assert not COLOUR.search(shown), repr(shown)
    assert "error:" in ANSI.sub("", shown)

    piped = _cli("status", "some-id")
    assert json.loads(piped.stderr)["error"] == "no_credentials"


def test_the_json_path_never_imports_the_progress_bar(connections: str) -> None:
    code = (
        "import sys; from dispatcher.cli.main import main; "
        f"rc = main(['connections', 'list', '--config', {connections!r}, '--json']); "
        "assert 'tqdm' not in sys.modules, 'tqdm imported'; sys.exit(rc)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def test_a_list_is_an_aligned_table_on_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        {"number": "+48500600700", "kind": "long_number", "account": "acme"},
        {"number": "4321", "kind": "short_code", "account": None},
    ]
    output.emit(argparse.Namespace(output_format="human"), rows)
    assert capsys.readouterr().out.splitlines() == [
        "number        kind         account",
        "+48500600700  long_number  acme",
        "4321          short_code   -",
    ]
    output.emit(argparse.Namespace(output_format="json"), rows, indent=2)
    assert json.loads(capsys.readouterr().out) == rows


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_exit_codes(tmp_path: Path) -> None:
    assert _cli().returncode == Exit.USAGE  # no sub-command
    assert _cli("send", "--no-such-option").returncode == Exit.USAGE
    assert _cli("worker", "--lane", "nowhere").returncode == Exit.USAGE

    keys = {"SMSDISPATCH_APP_KEY": "k", "SMSDISPATCH_AUTHORIZATION": "a"}
    url = f"http://127.0.0.1:{_closed_port()}"
    unreachable = _cli("send", "--to", "+48111222333", "--text", "hi", "--url", url, **keys)
    assert unreachable.returncode == Exit.API_UNREACHABLE, unreachable.stderr
    assert json.loads(unreachable.stderr)["error"] == "unreachable"

    assert _cli("status", "x").returncode == Exit.INPUT  # no credentials
    no_text = tmp_path / "no-text.csv"
    no_text.write_text("phone\n+48111222333\n")
    bad_csv = _cli("campaign", "upload", str(no_text), "--url", url, **keys)
    assert bad_csv.returncode == Exit.INPUT, bad_csv.stderr
    assert json.loads(bad_csv.stderr)["error"] == "invalid_csv"
    missing = _cli("campaign", "upload", str(tmp_path / "absent.csv"), "--url", url, **keys)
    assert missing.returncode == Exit.INPUT
    assert json.loads(missing.stderr)["error"] == "unreadable_file"
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text("[[connections]]\nname='a'\ntype='simulator'\nurl='ftp://x'\ntps=1\n")
    invalid = _cli("connections", "list", "--config", str(bad_config))
    assert invalid.returncode == Exit.INPUT
    assert json.loads(invalid.stderr)["error"] == "invalid_connections"

    # A refusal by the operator's database: no such account (a real SQLite log).
    db = {"DATABASE_URL": f"sqlite:///{tmp_path / 'log.db'}"}
    assert _cli("migrate", **db).returncode == Exit.OK
    refused = _cli("accounts", "limits", "nobody", **db)
    assert refused.returncode == Exit.FAILED
    assert json.loads(refused.stderr) == {"error": "no account named 'nobody'"}
    # The API's own refusals (Exit.API_REFUSED) are proven against a real API in
    # tests/integration/test_cli_client.py.


def test_a_command_keeps_its_own_output_option() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--output", metavar="FILE")  # e.g. a report written to a file
    output.add_options(parser, top=True)
    args = parser.parse_args(["--output", "usage.csv", "-o", "human"])
    assert args.output == "usage.csv" and not output.wants_json(args)
    args = parser.parse_args(["--output", "usage.csv", "--json"])
    assert args.output == "usage.csv" and output.wants_json(args)


def test_plain_progress_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    with output.progress(1000, "upload", stream=out, rate_of="rows", interval=0) as bar:
        for done in range(100, 1001, 100):
            bar.update(done, rows=done // 10, accepted=done // 10, rejected=0)
    lines = out.getvalue().splitlines()
    assert len(lines) == 11  # one per update (interval 0) and the last one
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    assert lines[0].startswith("upload:  10.0%  rows 10  accepted 10  rejected 0  ")
    assert all("rows/s" in line and "ETA" in line for line in lines)
    assert lines[-1].startswith("upload: 100.0%  rows 100  ")

    quiet = io.StringIO()  # periodic: nothing between the intervals, one line at the end
    with output.progress(1000, "upload", stream=quiet, interval=3600) as bar:
        for done in range(100, 1001, 100):
            bar.update(done, rows=done)
    assert quiet.getvalue().count("\n") == 1 and "100.0%" in quiet.getvalue()


def test_a_progress_bar_on_a_terminal() -> None:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    chunks: list[bytes] = []

    def read() -> None:
        with contextlib.suppress(OSError):
            while data := os.read(master, 65536):
                chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    with open(slave, "w", encoding="utf-8", closefd=True) as term:
        assert term.isatty()
        with output.progress(1000, "upload", stream=term, rate_of="rows") as bar:
            for done in range(100, 1001, 100):
                bar.update(done, rows=done // 10, accepted=done // 10, rejected=0)
    reader.join(timeout=10)
    os.close(master)
    shown = b"".join(chunks).decode("utf-8", errors="replace")
    assert "\r" in shown  # drawn in place, not line after line
    last = shown.rstrip().split("\r")[-1]
    assert re.match(r"upload: 100%\|[█]+\| ETA 00:00, rows 100  accepted 100  rejected 0  ", last)
    assert "rows/s" in last


def test_every_command_has_an_example_that_parses(capsys: pytest.CaptureFixture[str]) -> None:
    paths = [path for path, _ in walk(build_parser())]
    assert len(paths) > 30 and ("smsdispatch", "completion") in paths
    for path in paths:
        with pytest.raises(SystemExit) as exit_:
            main([*path[1:], "--help"])
        assert exit_.value.code == 0
        shown = capsys.readouterr().out
        assert "\nexample:\n" in shown, f"{' '.join(path)} --help has no example"
        examples = shown.split("\nexample:\n", 1)[1].strip().splitlines()
        command = " ".join(path)
        assert any(line.strip().startswith(command) or command in line for line in examples)
        for line in examples:  # each example is a valid command line for this parser
            invocation = re.search(r"smsdispatch[^)>|]*", line)
            assert invocation, line
            words = shlex.split(invocation.group(0))[1:]
            if words != ["--help"]:
                build_parser().parse_args(words)


def test_bash_completion_is_installed_and_completes() -> None:
    script = _cli("completion", "bash")
    assert script.returncode == 0, script.stderr

    def complete(line: str) -> list[str]:
        words = line.split(" ")
        probe = (
            f"source /dev/stdin <<'EOF'\n{script.stdout}\nEOF\n"
            "complete -p smsdispatch\n"
            f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)}); "
            f"COMP_CWORD={len(words) - 1}; _smsdispatch; printf '%s\\n' \"${{COMPREPLY[@]}}\""
        )
        done = subprocess.run(
            ["bash", "--norc", "--noprofile", "-c", probe], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        first, *rest = done.stdout.splitlines()
        assert first == "complete -F _smsdispatch smsdispatch"
        return rest

    assert complete("smsdispatch acc") == ["accounts"]
    assert set(complete("smsdispatch accounts ")) == {
        "create",
        "webhook",
        "rotate-key",
        "limits",
        "send-window",
        "weight",
        "links",
    }
    assert complete("smsdispatch worker --lane p") == ["priority"]
    assert complete("smsdispatch senders policy acme ") == ["registered", "open"]
    options = complete("smsdispatch send --")
    assert {"--to", "--text", "--json", "--output", "--help"} <= set(options)
    assert complete("smsdispatch -o ") == ["json", "human"]
    assert complete("smsdispatch completion ") == ["bash", "zsh"]


def test_zsh_completion_registers_with_compinit(tmp_path: Path) -> None:
    assert shutil.which("zsh"), "zsh is missing: scripts/ensure-services.sh zsh (make test does)"
    script = _cli("completion", "zsh")
    assert script.returncode == 0, script.stderr
    path = tmp_path / "smsdispatch.zsh"
    path.write_text(script.stdout)
    probe = (
        f"autoload -Uz compinit && compinit -u -d {tmp_path}/zcompdump; source {path}; "
        "print -r -- $_comps[smsdispatch]; print -r -- ${_smsdispatch_subs[smsdispatch accounts]}; "
        "print -r -- ${_smsdispatch_values[smsdispatch worker --lane]}"
    )
    done = subprocess.run(
        ["zsh", "-f", "-c", probe],
        capture_output=True,
        text=True,
        env={**_env(), "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "_smsdispatch",
        "create webhook rotate-key limits send-window weight links",
        "priority bulk dlr webhooks",
    ]
