"""The layering rules of style.md, checked on the source: producer never imports consumer."""

from __future__ import annotations

import ast
import pathlib

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
