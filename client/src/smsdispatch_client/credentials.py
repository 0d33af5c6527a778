"""Credentials from the environment or a keys file."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from smsdispatch_client.errors import CredentialsError

DEFAULT_URL = "http://127.0.0.1:8080"


def credentials_from_env(
    env: Mapping[str, str] | None = None, keys_file: str | None = None
) -> tuple[str, str, str]:
    """``(application_key, authorization, base_url)`` from ``SMSDISPATCH_APP_KEY``,
    ``SMSDISPATCH_AUTHORIZATION`` and ``SMSDISPATCH_URL``, or from a keys file (the server's
    ``accounts create --write`` format: ``{"Application-Key": …, "Authorization": …}``; the
    ``keys_file`` argument, else ``SMSDISPATCH_KEYS_FILE``). Raises :class:`CredentialsError`.
    """
    env = os.environ if env is None else env
    url = env.get("SMSDISPATCH_URL") or DEFAULT_URL
    path = keys_file or env.get("SMSDISPATCH_KEYS_FILE")
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                keys = json.load(fh)
            return str(keys["Application-Key"]), str(keys["Authorization"]), url
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CredentialsError(f"keys file {path}: {type(exc).__name__}: {exc}") from exc
    app_key, auth = env.get("SMSDISPATCH_APP_KEY"), env.get("SMSDISPATCH_AUTHORIZATION")
    if not app_key or not auth:
        raise CredentialsError(
            "set SMSDISPATCH_APP_KEY and SMSDISPATCH_AUTHORIZATION, or a keys file"
        )
    return app_key, auth, url
