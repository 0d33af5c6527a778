"""Snippet tests run only when asked for (``-m snippets``, as ``make snippets-test`` does):
they need language runtimes that ``make test`` does not install."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the snippet tests unless the marker expression names them."""
    if "snippets" in (config.option.markexpr or ""):
        return
    here = [i for i in items if i.get_closest_marker("snippets")]
    if here:
        config.hook.pytest_deselected(items=here)
        items[:] = [i for i in items if not i.get_closest_marker("snippets")]
