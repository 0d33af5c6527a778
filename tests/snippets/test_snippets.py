"""Every generated snippet, executed against a running stack in its own language runtime.

Send → the API returns ids that exist; status → the status the API reports; look-up → the
simulator's answer; verify → true for a real webhook our webhooks lane signed and delivered,
false once its body is altered. The Go, Java and C# snippets decode every answer into types as
strict as the original API's model: they fail on the answers of the previous release (ISO
times, an integer in ``errors[].meta.value``). A language whose runtime is not installed is
skipped with the reason (``make snippets-test`` installs them from Debian's packages; Swift has
none there).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import update

from dispatcher.store import webhook_settings as admin
from dispatcher.store.schema import accounts
from snippets.generate import OUT, file_name, load_spec
from tests.support.receiver import Receiver
from tests.support.stack import ApiClient, Stack, running_stack, wait_until

pytestmark = [pytest.mark.snippets, pytest.mark.integration]
SPEC = load_spec()
REJECTED_PREFIX = "+48699"
WORK = tempfile.mkdtemp(prefix="smsd-snippets-")  # build outputs, Go's cache


@dataclass(frozen=True)
class Runtime:
    """How to run (or only compile) one language's file."""

    tools: tuple[str, ...]
    run: Callable[[str], list[list[str]]]  # file → commands; the last one's stdout is checked
    compile_only: bool = False
    files: tuple[str, ...] = ()  # libraries the snippets use, from Debian's packages


JACKSON = tuple(
    f"/usr/share/java/jackson-{part}.jar" for part in ("databind", "core", "annotations")
)
MONO_SERIALIZATION = "/usr/lib/mono/4.5/System.Runtime.Serialization.dll"
TYPED = ("go", "java", "csharp")


def _csharp(path: str) -> list[list[str]]:
    exe = os.path.join(WORK, os.path.basename(path) + ".exe")
    refs = ["-r:System.Net.Http", "-r:System.Runtime.Serialization", "-r:System.Xml"]
    build = ["mcs", "-nologo", *refs, f"-out:{exe}", path]
    return [build, ["mono", exe]] if shutil.which("mono") else [build]


RUNTIMES: dict[str, Runtime] = {
    "curl": Runtime(("bash", "curl", "openssl"), lambda f: [["bash", f]]),
    "python": Runtime(("python3",), lambda f: [["python3", f]]),
    "php": Runtime(("php",), lambda f: [["php", f]]),
    "java": Runtime(("java",), lambda f: [["java", "-cp", ":".join(JACKSON), f]], files=JACKSON),
    "csharp": Runtime(
        ("mcs",), _csharp, compile_only=not shutil.which("mono"), files=(MONO_SERIALIZATION,)
    ),
    "node": Runtime(("node",), lambda f: [["node", f]]),
    "go": Runtime(("go",), lambda f: [["go", "run", f]]),
    "ruby": Runtime(("ruby",), lambda f: [["ruby", f]]),
    "swift": Runtime(("swiftc",), lambda f: [["swiftc", "-parse", f]], compile_only=True),
}
WHY_MISSING = {
    "swift": "no Swift toolchain: Debian has no package for it (swift.org ships tarballs)",
}


def _path(snippet: str, language: str) -> str:
    (spec,) = [s for s in SPEC["snippet"] if s["name"] == snippet]
    lang = SPEC["languages"][language]
    return str(OUT / language / file_name(spec, language, lang))


def execute(language: str, snippet: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run (or compile) the snippet; the last command's result. Skips when the runtime is
    missing."""
    runtime = RUNTIMES[language]
    missing = [t for t in runtime.tools if shutil.which(t) is None]
    missing += [f for f in runtime.files if not os.path.exists(f)]
    if missing:
        reason = WHY_MISSING.get(language, f"{', '.join(missing)} not installed")
        pytest.skip(f"{language}: {reason} (make snippets-test installs the runtimes)")
    full = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SMSDISPATCH_", "WEBHOOK_"))},
        "GOCACHE": os.path.join(WORK, "gocache"),
        "GOPATH": os.path.join(WORK, "gopath"),
        "GOFLAGS": "-mod=mod",
        "HOME": os.environ.get("HOME", WORK),
        **env,
    }
    commands = runtime.run(_path(snippet, language))
    for cmd in commands:
        done = subprocess.run(cmd, env=full, capture_output=True, text=True, timeout=300, cwd=WORK)
        if done.returncode != 0 and cmd is not commands[-1]:  # a build step
            raise AssertionError(f"{cmd}: {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done


def run_snippet(language: str, snippet: str, env: dict[str, str]) -> str:
    """Run (or compile) the snippet; its stdout, asserting it succeeded."""
    done = execute(language, snippet, env)
    assert done.returncode == 0, f"{done.args}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def rx() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack(
        workers={"priority": 1, "bulk": 1, "webhooks": 1},
        webhook_allow_private=True,
        carrier_tps=2000,
        short_link_base="https://s.example.com",  # send_short_link (nothing clicks here)
    ) as s:
        s.sim_config(reject_prefixes=[REJECTED_PREFIX])
        yield s


@pytest.fixture(scope="module")
def hooked(stack: Stack, rx: Receiver) -> tuple[ApiClient, str]:
    """An account whose webhooks go to the receiver; its client and signing secret."""
    client = stack.account()
    engine = stack.db()
    with engine.begin() as conn:
        conn.execute(
            update(accounts)
            .where(accounts.c.id == client.account_id)
            .values(webhook_url=rx.url("/snippets"))
        )
        secret = admin.ensure_secret(conn, client.account_id)
    engine.dispose()
    assert secret
    return client, secret


def _env(client: ApiClient, **extra: str) -> dict[str, str]:
    return {
        "SMSDISPATCH_URL": client.base,
        "SMSDISPATCH_APP_KEY": client.keys["Application-Key"],
        "SMSDISPATCH_AUTHORIZATION": client.keys["Authorization"],
        **extra,
    }


LANGUAGES = list(SPEC["languages"])


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("snippet", ["send_one", "send_many", "send_short_link"])
def test_send(language: str, snippet: str, hooked: tuple[ApiClient, str]) -> None:
    client, _ = hooked
    out = run_snippet(language, snippet, _env(client))
    if RUNTIMES[language].compile_only:
        return
    answer = json.loads(out)
    (spec,) = [s for s in SPEC["snippet"] if s["name"] == snippet]
    assert answer["meta"]["status"] == 200, answer
    assert len(answer["data"]) == len(spec["body"]["phoneNumbers"])
    for message in answer["data"]:
        view = client.get(message["id"])
        assert view["phoneNumber"] in spec["body"]["phoneNumbers"]
        if spec["body"].get("shortLink"):
            (link,) = view["shortLinks"]
            assert link["shortUrl"].startswith("https://s.example.com/") and link["clicks"] == 0


@pytest.mark.parametrize("language", LANGUAGES)
def test_status(language: str, hooked: tuple[ApiClient, str]) -> None:
    client, _ = hooked
    r = client.send({"sender": "ACME", "message": "status", "phoneNumbers": ["+48111222399"]})
    message_id = r.json()["data"][0]["id"]
    wait_until(lambda: client.status(message_id) == "sent", 30, what="sent")
    out = run_snippet(language, "status", _env(client, SMSDISPATCH_MESSAGE_ID=message_id))
    if RUNTIMES[language].compile_only:
        return
    (view,) = json.loads(out)["data"]
    assert (view["id"], view["statusName"]) == (message_id, "sent")


@pytest.mark.parametrize("language", LANGUAGES)
def test_lookup(language: str, hooked: tuple[ApiClient, str]) -> None:
    client, _ = hooked
    out = run_snippet(language, "lookup_number", _env(client))
    if RUNTIMES[language].compile_only:
        return
    (found,) = json.loads(out)["data"]
    assert (found["phoneNumber"], found["valid"], found["country"]) == ("+48500100200", True, "PL")
    assert found["network"] == {"mcc": "260", "mnc": "01", "name": "Simulated PL 01"}


# The previous release's answers: what the typed snippets must refuse, as the original API's
# typed clients did (each with the one field that breaks them).
SEND_OK = {
    "data": [
        {
            "id": "0192f7a4-8b1c-7cde-8f00-1234567890ab",
            "sender": "ACME",
            "phoneNumber": "+48111222333",
            "externalId": "e1",
            "status": 1,
            "statusName": "queued",
            "statusTime": 1795694400,
            "createTime": 1795694400,
            "smsPrice": 0,
            "currency": 0,
            "numberOfParts": 1,
        }
    ],
    "errors": [],
    "meta": {"status": 200, "uniqId": "u", "sentSms": 1, "notSentSms": 0, "accountBalance": None},
}
LOOKUP_OK = {
    "data": [
        {
            "phoneNumber": "+48500100200",
            "valid": True,
            "country": "PL",
            "network": {"mcc": "260", "mnc": "01", "name": "n"},
            "ported": False,
            "reachable": True,
            "cached": False,
            "lookupTime": 1795694400,
        }
    ],
    "errors": [],
    "meta": {"status": 200, "uniqId": "u"},
}
_ISO = "2026-11-26T12:00:00.000Z"
# (snippet, well-typed answer, the field changed, its new value); Go's encoding/json reads a
# null number as zero (the C# and Java models refuse it, as System.Text.Json does), so the
# null case is checked on those two.
BROKEN = [
    ("send_one", SEND_OK, ("data", 0, "statusTime"), _ISO, TYPED),
    ("send_one", SEND_OK, ("data", 0, "createTime"), "1795694400", TYPED),
    ("send_one", SEND_OK, ("data", 0, "smsPrice"), None, ("java", "csharp")),
    ("send_one", SEND_OK, ("meta", "accountBalance"), 12.5, TYPED),
    ("status", SEND_OK, ("data", 0, "status"), "1", TYPED),
    ("lookup_number", LOOKUP_OK, ("data", 0, "valid"), "true", TYPED),
    ("lookup_number", LOOKUP_OK, ("data", 0, "lookupTime"), _ISO, TYPED),
]
CASES = [(lang, *case[:4]) for case in BROKEN for lang in case[4]]


def _with(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(doc))
    target = out
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return out


class _Canned(BaseHTTPRequestHandler):
    answer = b"{}"

    def _reply(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.answer)))
        self.end_headers()
        self.wfile.write(self.answer)

    do_GET = do_POST = _reply

    def log_message(self, *_args: Any) -> None:
        return


@pytest.fixture
def canned() -> Iterator[tuple[str, type[_Canned]]]:
    """A loopback server answering every request with ``handler.answer``."""
    handler = type("Handler", (_Canned,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("language", "snippet", "good", "path", "value"), CASES)
def test_typed_snippets_refuse_an_answer_typed_otherwise(
    language: str,
    snippet: str,
    good: dict[str, Any],
    path: tuple[Any, ...],
    value: Any,
    canned: tuple[str, type[_Canned]],
) -> None:
    url, handler = canned
    env = {"SMSDISPATCH_URL": url, "SMSDISPATCH_MESSAGE_ID": "x"}
    handler.answer = json.dumps(good).encode()
    accepted = execute(language, snippet, env)
    if RUNTIMES[language].compile_only:
        return
    assert accepted.returncode == 0, accepted.stderr  # the well-typed answer decodes
    handler.answer = json.dumps(_with(good, path, value)).encode()
    refused = execute(language, snippet, env)
    assert refused.returncode != 0, (path, value, refused.stdout)


_counter = iter(range(10**6))


@pytest.fixture
def webhook(hooked: tuple[ApiClient, str], rx: Receiver) -> dict[str, Any]:
    """A real webhook: a message the carrier rejects, its signed report as received."""
    client, secret = hooked
    n = next(_counter)
    r = client.send(
        {"sender": "ACME", "message": "hook", "phoneNumbers": [f"{REJECTED_PREFIX}{n:06d}"]}
    )
    message_id = r.json()["data"][0]["id"]

    def arrived() -> Any:
        return [q for q in rx.requests("/snippets") if json.loads(q.body)["id"] == message_id]

    (req,) = wait_until(arrived, 40, interval=0.1, what="webhook received")
    return {
        "WEBHOOK_SECRET": secret,
        "WEBHOOK_ID": req.headers["webhook-id"],
        "WEBHOOK_TIMESTAMP": req.headers["webhook-timestamp"],
        "WEBHOOK_SIGNATURE": req.headers["webhook-signature"],
        "WEBHOOK_BODY": req.body.decode(),
    }


@pytest.mark.parametrize("language", LANGUAGES)
def test_verify_webhook(language: str, webhook: dict[str, str]) -> None:
    out = run_snippet(language, "verify_webhook", webhook)
    if RUNTIMES[language].compile_only:
        return
    assert out.strip() == "true"
    tampered = {**webhook, "WEBHOOK_BODY": webhook["WEBHOOK_BODY"].replace("rejected", "delivered")}
    assert tampered["WEBHOOK_BODY"] != webhook["WEBHOOK_BODY"]
    assert run_snippet(language, "verify_webhook", tampered).strip() == "false"
    wrong_secret = {**webhook, "WEBHOOK_SECRET": "whsec_" + "QUJD" * 8}
    assert run_snippet(language, "verify_webhook", wrong_secret).strip() == "false"


def test_every_language_is_covered() -> None:
    assert set(RUNTIMES) == set(SPEC["languages"]), sys.modules[__name__].__doc__
