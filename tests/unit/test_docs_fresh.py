"""Generated documents stay in step with the code."""

from __future__ import annotations

import pathlib

from dispatcher.errors import CATALOGUE, render_catalogue

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_error_catalogue_is_current() -> None:
    current = (ROOT / "docs" / "errors.md").read_text()
    assert current == render_catalogue(), (
        "run: python -c 'from dispatcher.errors import "
        'render_catalogue; open("docs/errors.md","w").write(render_catalogue())\''
    )


def test_every_code_used_in_the_source_is_catalogued() -> None:
    import re

    used: set[str] = set()
    for path in (ROOT / "dispatcher").rglob("*.py"):
        used.update(re.findall(r'ApiError\(\s*"([a-z_]+)"', path.read_text()))
    assert used and used <= set(CATALOGUE), used - set(CATALOGUE)
