"""The OpenAPI document as a file: ``smsdispatch openapi > docs/openapi.json``.

The schema is the one the API serves at ``/openapi.json`` (``docs_page`` completes it); a test
keeps ``docs/openapi.json`` in step with the code.
"""

from __future__ import annotations

import json


def render_openapi() -> str:
    """The API's OpenAPI 3.1 document, as stable, indented JSON with a final newline."""
    from dispatcher.api.app import create_app
    from dispatcher.config import Settings

    # Defaults, not the environment: the published document must not depend on who exports it.
    app = create_app(Settings.from_env({}))
    return json.dumps(app.openapi(), indent=2, ensure_ascii=False) + "\n"
