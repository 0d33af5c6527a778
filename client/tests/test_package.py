"""What the distribution promises: httpx and the standard library only, typed, and versioned
with the API it speaks."""

from __future__ import annotations

import ast
import sys
from importlib import resources
from pathlib import Path

import httpx
import smsdispatch_client
from fakeapi import OK, Script, sync_client
from smsdispatch_client import API_VERSION, __version__

PACKAGE = Path(smsdispatch_client.__file__).parent


def test_imports_only_httpx_and_the_standard_library() -> None:
    found: set[str] = set()
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    outside = found - set(sys.stdlib_module_names) - {"__future__", "smsdispatch_client"}
    assert outside == {"httpx"}


def test_is_typed() -> None:
    assert resources.files("smsdispatch_client").joinpath("py.typed").is_file()


def test_the_version_names_the_api_version_it_speaks() -> None:
    major, minor, patch = __version__.split(".")
    assert f"{major}.{minor}" == API_VERSION and patch.isdigit()
    script = Script(*[httpx.Response(200, json=OK)] * 3)
    with sync_client(script) as sms:
        sms.send_sms("+48111222333", "hi", sender="ACME")
        sms.get_status("m1")
        sms.list_messages()
    assert {r.url.path.split("/")[1] for r in script.requests} == {f"v{API_VERSION}"}
