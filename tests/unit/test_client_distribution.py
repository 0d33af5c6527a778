"""``pip install ./client`` into an empty venv brings the client and httpx's tree, nothing of the
server; there, with pytest added, the client's own tests pass.

No index is used: the wheels come from the wheelhouse that ``make install`` downloads
(``.venv/wheelhouse``: httpx and its dependencies, pytest, setuptools to build the client).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
WHEELHOUSE = ROOT / ".venv" / "wheelhouse"
SERVER_MODULES = {"dispatcher", "workers", "devstack", "simulator", "celeryconfig"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pip(venv: Path, *args: str) -> None:
    """The test venv's packages are installed by this interpreter's pip (``--python``), so the
    venv itself starts with nothing at all, not even pip."""
    cmd = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install"]
    cmd += ["-q", "--disable-pip-version-check", "--no-index", "--find-links", str(WHEELHOUSE)]
    out = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def closure(dists: dict[str, metadata.Distribution], name: str) -> set[str]:
    """``name`` and everything it requires in that environment (markers evaluated, no extras)."""
    seen: set[str] = set()
    todo = [canonical(name)]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for spec in dists[current].requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonical(req.name))
    return seen


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert WHEELHOUSE.is_dir(), "run `make install`: it downloads the wheels this test installs"
    tmp = tmp_path_factory.mktemp("client-dist")
    # A copy, so that the build leaves nothing in the work tree.
    source = tmp / "client"
    shutil.copytree(
        ROOT / "client",
        source,
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache"),
    )
    env = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    pip(env, str(source))
    return env


def installed(venv: Path) -> tuple[Path, dict[str, metadata.Distribution]]:
    (site,) = venv.glob("lib/python*/site-packages")
    dists = {canonical(d.metadata["Name"]): d for d in metadata.distributions(path=[str(site)])}
    return site, dists


def test_only_httpx_and_its_dependencies_are_installed(venv: Path) -> None:
    _, dists = installed(venv)
    client = dists["smsdispatch-client"]
    assert [canonical(Requirement(r).name) for r in client.requires or []] == ["httpx"]
    assert set(dists) == closure(dists, "smsdispatch-client"), "nothing but the client's tree"
    assert "httpx" in dists and len(dists) < 12, sorted(dists)


def test_no_server_module_is_installed(venv: Path) -> None:
    site, dists = installed(venv)
    top_level = {
        p.name.removesuffix(".py")
        for p in site.iterdir()
        if not p.name.endswith((".dist-info", ".pth")) and p.name != "__pycache__"
    }
    assert not top_level & SERVER_MODULES, top_level
    files = [str(f) for f in dists["smsdispatch-client"].files or []]
    assert {f.split("/")[0] for f in files} == {
        "smsdispatch_client",
        f"smsdispatch_client-{dists['smsdispatch-client'].version}.dist-info",
    }
    assert "smsdispatch_client/py.typed" in files


def test_the_clients_tests_pass_with_httpx_and_pytest_only(venv: Path, tmp_path: Path) -> None:
    pip(venv, "pytest")
    tests = tmp_path / "client"
    shutil.copytree(ROOT / "client" / "tests", tests / "tests")
    shutil.copy(ROOT / "client" / "pyproject.toml", tests)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=tests,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert re.search(r"\d+ passed", out.stdout) and "skipped" not in out.stdout, out.stdout
