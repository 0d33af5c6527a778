"""Generated documents stay in step with the code."""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any

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


def test_configuration_reference_is_current() -> None:
    """docs/configuration.md is generated from the settings (dispatcher/config.py)."""
    from dispatcher.config_docs import render_configuration

    current = (ROOT / "docs" / "configuration.md").read_text()
    assert current == render_configuration(), (
        "run: .venv/bin/smsdispatch config docs > docs/configuration.md"
    )


# -- OpenAPI and the offline docs page ----------------------------------------------------------

EXPORT = "run: .venv/bin/smsdispatch openapi > docs/openapi.json"


def _schema() -> dict[str, Any]:
    from dispatcher.api.app import create_app
    from dispatcher.config import Settings

    return create_app(Settings.from_env({})).openapi()


def test_openapi_export_is_current() -> None:
    from dispatcher.api.openapi_export import render_openapi

    assert (ROOT / "docs" / "openapi.json").read_text() == render_openapi(), EXPORT


def test_every_field_and_parameter_is_described_with_an_example() -> None:
    schema = _schema()
    assert schema["openapi"].startswith("3.1")
    missing = []
    for name, comp in schema["components"]["schemas"].items():
        for prop, d in comp.get("properties", {}).items():
            refs = [d, d.get("items", {}), *d.get("anyOf", [])]
            nested = any("$ref" in r for r in refs)  # the referenced model is checked itself
            if not d.get("description"):
                missing.append(f"{name}.{prop}: description")
            if not nested and "examples" not in d and "example" not in d:
                missing.append(f"{name}.{prop}: example")
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            for p in op.get("parameters", []):
                if not p.get("description") or ("example" not in p and "examples" not in p):
                    missing.append(f"{method} {path} parameter {p['name']}")
    assert not missing, missing


def test_every_error_response_is_declared_with_the_error_envelope() -> None:
    schema = _schema()
    assert "HTTPValidationError" not in json.dumps(schema)  # we answer 400, not FastAPI's 422
    send = schema["paths"]["/v2.1/sms"]["post"]["responses"]
    assert {"400", "401", "403", "409", "413", "415", "422", "503"} <= set(send)
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            if path.startswith("/v2.1/"):
                assert {"401", "429"} <= set(op["responses"]), f"{method} {path}"
            for status, resp in op["responses"].items():
                if int(status) >= 400:
                    ref = resp["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorEnvelope"), f"{method} {path} {status}"


def _docs_client() -> Any:
    from fastapi.testclient import TestClient

    from dispatcher.api.app import create_app
    from dispatcher.config import Settings

    return TestClient(create_app(Settings.from_env({})))  # no lifespan: no Redis/database needed


EXTERNAL_LOAD = re.compile(
    r"""(?:src|href)\s*=\s*["']?https?://|src:\s*["']https?://|(?<!new )(?-i:url)\(\s*["']?https?://|"""
    r"""@import\s+["']?(?:url\()?https?://|fonts\.(?:googleapis|gstatic)\.com|"""
    r"""unpkg\.com|jsdelivr\.net|cdnjs\.|cdn\.redoc\.ly""",
    re.IGNORECASE,
)


def test_docs_page_loads_nothing_from_outside_the_origin() -> None:
    client = _docs_client()
    page = client.get("/docs")
    assert page.status_code == 200 and "<redoc" in page.text
    assets = re.findall(r"""<script[^>]*\ssrc=["']([^"']+)""", page.text)
    assets += re.findall(r"""<link[^>]*\shref=["']([^"']+)""", page.text)
    assert assets, "the page references its bundle"
    scanned = [page.text]
    for asset in assets:
        assert asset.startswith("/"), f"{asset} is not served by the API itself"
        r = client.get(asset)
        assert r.status_code == 200 and len(r.content) > 100_000, asset
        scanned.append(r.text)
    for text in scanned:
        found = EXTERNAL_LOAD.findall(text)
        assert not found, found[:5]
    assert client.get("/openapi.json").json()["info"]["title"] == "smsdispatch"


def test_the_scan_would_catch_a_cdn_load() -> None:
    for bad in (
        '<script src="https://cdn.jsdelivr.net/npm/redoc"></script>',
        '<link href="https://fonts.googleapis.com/css?family=Roboto" rel="stylesheet">',
        'n.createElement("img",{src:"https://cdn.redoc.ly/redoc/logo-mini.svg"})',
        "@import url(https://example.com/x.css);",
    ):
        assert EXTERNAL_LOAD.search(bad), bad


def test_error_docs_pointer_resolves_to_the_served_catalogue() -> None:
    from dispatcher.errors import ApiError

    client = _docs_client()
    pointer = ApiError("invalid_sender").as_dict()["docs"]
    path, _, anchor = pointer.partition("#")
    page = client.get(path)
    assert page.status_code == 200
    for code, kind in CATALOGUE.items():
        assert f'id="{code.replace("_", "-")}"' in page.text
        assert f"<td>{kind.status}</td>" in page.text
    assert f'id="{anchor}"' in page.text
    assert f'<a id="{anchor}"></a>' in (ROOT / "docs" / "errors.md").read_text()


def test_snippets_are_current() -> None:
    from snippets.generate import stale

    assert not stale(), "run: .venv/bin/python -m snippets.generate"


def test_snippets_page_is_served_and_linked() -> None:
    client = _docs_client()
    page = client.get("/docs/snippets")
    assert page.status_code == 200
    for title in ("cURL", "Python", "PHP", "Java", "C#", "Node.js", "Go", "Ruby", "Swift"):
        assert f"<summary>{title} " in page.text
    assert not EXTERNAL_LOAD.findall(page.text)
    assert "/docs/snippets" in client.get("/openapi.json").json()["info"]["description"]
