"""The layering rules of style.md, checked on the source (producer never imports consumer), and
the input boundary: hostile input reaches the rule libraries only as typed refusals."""

from __future__ import annotations

import ast
import pathlib
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.accounts.account import Account
from dispatcher.config import Settings
from dispatcher.errors import CATALOGUE
from dispatcher.intake.submit import RequestRefused, SendRequest, prepare
from dispatcher.sms import (
    EmptyMessage,
    InvalidPhoneNumber,
    TooManyParts,
    check_parts,
    count_parts,
    detect_encoding,
    normalize,
    split_parts,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]

# The rules, one line each (docs/architecture.md draws them):
# 1. The producer never imports the consumer: nothing in dispatcher/ imports workers.
# 2. Workers never import the producer's processes: no dispatcher.{PRODUCER_ONLY} from workers/.
# 3. Production never imports development tools: devstack/ is imported only by `smsdispatch run`.
# 4. Celery is imported only at the workers' edge: their app and their tasks.
# 5. The contract stands alone: dispatcher/contract/ imports only itself and dispatcher.ids.
# 6. The rule libraries are pure: dispatcher/{sms,ratelimit}/ import only themselves and config.
# 7. The sender is plain Python: workers/sending/sender.py imports no broker or network library.
# 8. SQL is the store's: outside dispatcher/store/, sqlalchemy gives only the type names
#    Connection and Engine, no module imports the tables (dispatcher.store.schema), and
#    connections are opened only through dispatcher.store.db (transaction, reading, run).
PRODUCER_ONLY = ("api", "panel", "cli", "intake", "accounts", "scheduler", "lookup", "ops.exporter")
DEVSTACK_DOOR = "dispatcher/cli/main.py"  # the `run` command, imported when it runs
CELERY_EDGES = {"workers/app.py", "workers/tasks.py"}
RULE_LIBRARIES = ("sms", "ratelimit")
STORE = "dispatcher/store/"
SQLALCHEMY_TYPES = {"Connection", "Engine"}


def imports(package: str) -> dict[str, set[str]]:
    """Absolute imports of every module under ``package``, by file (migrations left out)."""
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


def under(name: str, package: str) -> bool:
    """Whether the module ``name`` is ``package`` or inside it."""
    return name == package or name.startswith(package + ".")


def test_1_dispatcher_never_imports_workers() -> None:
    bad = {f: n for f, n in imports("dispatcher").items() if any(under(x, "workers") for x in n)}
    assert not bad


def test_2_workers_never_import_the_producers_processes() -> None:
    forbidden = tuple(f"dispatcher.{p}" for p in PRODUCER_ONLY)
    bad = {}
    for f, names in imports("workers").items():
        wrong = {n for n in names if any(under(n, p) for p in forbidden)}
        if wrong:
            bad[f] = wrong
    assert not bad


def test_3_production_never_imports_development_tools() -> None:
    users = {
        f
        for pkg in ("dispatcher", "workers")
        for f, n in imports(pkg).items()
        if any(under(x, "devstack") for x in n)
    }
    assert users <= {DEVSTACK_DOOR}, users - {DEVSTACK_DOOR}


def test_4_celery_only_at_the_edges() -> None:
    users = {
        f
        for pkg in ("dispatcher", "workers")
        for f, n in imports(pkg).items()
        if any(under(x, "celery") for x in n)
    }
    assert users <= CELERY_EDGES, users - CELERY_EDGES


def test_5_the_contract_stands_alone() -> None:
    bad = {
        f: {x for x in n if under(x, "dispatcher") or under(x, "workers")}
        - {"dispatcher.contract", "dispatcher.ids"}
        for f, n in imports("dispatcher/contract").items()
    }
    assert not {f: n for f, n in bad.items() if n}


def test_6_rule_libraries_are_pure() -> None:
    bad = {}
    for lib in RULE_LIBRARIES:
        own = f"dispatcher.{lib}"
        for f, names in imports(f"dispatcher/{lib}").items():
            wrong = {
                n
                for n in names
                if (under(n, "dispatcher") or under(n, "workers"))
                and not (under(n, own) or n == "dispatcher.config")
            }
            if wrong:
                bad[f] = wrong
    assert not bad


def test_7_sending_logic_is_plain_python() -> None:
    names = imports("workers")["workers/sending/sender.py"]
    assert not {n for n in names if n.split(".")[0] in {"celery", "kombu", "redis", "aiohttp"}}


def _sql_outside_the_store(path: pathlib.Path) -> list[str]:
    """What in ``path`` builds SQL, sees a driver's error or opens a connection itself."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if under(a.name, "sqlalchemy")]
            found += [a.name for a in node.names if under(a.name, "dispatcher.store.schema")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "sqlalchemy":
                found += [
                    f"sqlalchemy.{a.name}" for a in node.names if a.name not in SQLALCHEMY_TYPES
                ]
            elif under(node.module, "sqlalchemy") or under(node.module, "dispatcher.store.schema"):
                found.append(node.module)
            elif node.module == "dispatcher.store":
                found += [f"dispatcher.store.{a.name}" for a in node.names if a.name == "schema"]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in {"begin", "connect", "exec_driver_sql"}
            and ast.unparse(node.func.value).split(".")[-1].endswith("engine")
        ):
            found.append(f"line {node.lineno}: {ast.unparse(node.func)}()")
    return found


def test_8_sql_is_the_stores() -> None:
    bad = {}
    for pkg in ("dispatcher", "workers"):
        for path in (ROOT / pkg).rglob("*.py"):
            rel = str(path.relative_to(ROOT))
            if rel.startswith(STORE):
                continue
            found = _sql_outside_the_store(path)
            if found:
                bad[rel] = found
    assert not bad


def test_8_sees_what_it_forbids(tmp_path: pathlib.Path) -> None:
    # The store itself does every forbidden thing; and so does a module written to.
    assert _sql_outside_the_store(ROOT / STORE / "db.py")
    assert _sql_outside_the_store(ROOT / STORE / "accounts.py")
    bad = tmp_path / "bad.py"
    for line in (
        "from sqlalchemy import select",
        "from sqlalchemy.exc import OperationalError",
        "import sqlalchemy",
        "from dispatcher.store.schema import accounts",
        "from dispatcher.store import schema",
        "with self.engine.begin() as conn: pass",
        "with ctx.engine.connect() as conn: pass",
    ):
        bad.write_text(line + "\n")
        assert _sql_outside_the_store(bad), line
    bad.write_text("from sqlalchemy import Connection, Engine\nwith transaction(engine): pass\n")
    assert not _sql_outside_the_store(bad)


def test_the_rules_see_the_imports_they_forbid() -> None:
    # Guards against a rule that passes because it reads nothing: the scanner finds the imports
    # that the rules above are about wherever they are allowed.
    assert "workers" in {x.split(".")[0] for n in imports("workers").values() for x in n}
    assert "celery" in {x.split(".")[0] for x in imports("workers")["workers/app.py"]}
    assert any(under(x, "devstack") for x in imports("dispatcher")[DEVSTACK_DOOR])
    assert any(under(x, "dispatcher.ops.logs") for n in imports("workers").values() for x in n)


# -- Input boundaries: hostile input reaches the rule libraries only as clear, typed refusals ----
# (tests/unit/test_sms_*.py hold the behavioural properties of part counting, encoding detection
# and normalisation; these add arbitrary Unicode, lone surrogates and whole requests.)

_HOSTILE = settings(max_examples=200, deadline=None)
_any_unicode = st.text(st.characters(), max_size=400)  # includes lone surrogates and controls
_phoneish = st.one_of(
    st.text(st.characters(), max_size=40),
    st.text("+0123456789 ()-./٠١٢٣٤٥٦٧٨٩０１２３４５６７８９", max_size=40),
    st.builds(lambda n: "+48" + "1" * n, st.integers(0, 40)),
)
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


@_HOSTILE
@given(_phoneish, st.sampled_from([None, "PL", "US", "GB", "ZZ"]))
def test_normalize_returns_e164_or_refuses_with_a_reason(raw: str, region: str | None) -> None:
    try:
        e164 = normalize(raw, region)
    except InvalidPhoneNumber as exc:
        assert exc.reason in {"not_a_number", "invalid", "too_short", "too_long", "no_country"}
        return
    assert _E164.match(e164), (raw, e164)
    assert normalize(e164) == e164


@_HOSTILE
@given(st.text(st.characters(codec="utf-8"), max_size=400))
def test_part_counting_never_crashes_and_agrees_with_splitting(text: str) -> None:
    try:
        info = check_parts(text, 10)
    except (EmptyMessage, TooManyParts):
        assert not text or count_parts(text).parts > 10
        return
    assert 1 <= info.parts <= 10
    assert info.encoding is detect_encoding(text)
    assert len(split_parts(text)) == info.parts
    # Appending never lowers the count (a longer text is never cheaper).
    assert count_parts(text + "x").parts >= info.parts


@_HOSTILE
@given(
    sender=st.one_of(st.text(max_size=20), st.sampled_from(["ACME", "48500", "A" * 12])),
    message=_any_unicode,
    numbers=st.lists(
        st.one_of(_phoneish, st.sampled_from(["+48111222333", "+48500100200"])), max_size=15
    ),
    validity=st.one_of(st.none(), st.integers(-(2**70), 2**70)),
    schedule=st.one_of(st.none(), st.integers(-(2**70), 2**70)),
    kind=st.one_of(st.none(), st.integers(-5, 5)),
    external=st.one_of(st.none(), st.text(max_size=200)),
    url=st.one_of(st.none(), st.text(max_size=50), st.just("https://example.com/x")),
)
def test_prepare_accepts_or_refuses_naming_fields(
    sender: str,
    message: str,
    numbers: list[str],
    validity: int | None,
    schedule: int | None,
    kind: int | None,
    external: str | None,
    url: str | None,
) -> None:
    req = SendRequest(sender, message, numbers, validity, schedule, kind, None, url, external)
    account = Account(1, "a", True)
    try:
        prepared = prepare(req, account, Settings(), 1_800_000_000.0)
    except RequestRefused as exc:
        assert exc.errors and all(e.code in CATALOGUE and e.parameter for e in exc.errors)
        return
    phones = [m.phone for m in prepared.submission.messages]
    assert phones and len(set(phones)) == len(phones)
    assert all(_E164.match(p) for p in phones)
    assert all(e.code in CATALOGUE and e.source for e in prepared.recipient_errors)
    assert len(phones) + len(prepared.recipient_errors) == len(numbers)


def test_a_module_over_400_lines_says_at_its_top_why_it_is_one() -> None:
    # Modules are small and named for one thing (docs/architecture.md); a long one is either
    # split by responsibility or states the reason in its docstring.
    silent = []
    for pkg in ("dispatcher", "workers"):
        for path in (ROOT / pkg).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            text = path.read_text()
            if text.count("\n") > 400:
                doc = ast.get_docstring(ast.parse(text)) or ""
                if "Longer than 400 lines on purpose:" not in doc:
                    silent.append(str(path.relative_to(ROOT)))
    assert not silent
