"""Carrier callback items are checked like API fields before they are stored.

The carrier endpoints store what carriers post and answer at once; the dlr lane reads it later
(:mod:`dispatcher.api.callbacks`). A value the database cannot hold (a NUL character; lone
surrogates never get past the JSON parser) or that no carrier format has (a megabyte string, a
structure nested ten levels down) would only fail there, after the carrier was told it had
been taken. So every item is walked here, and a request with any such value is refused with a
4xx naming each place (``meta.source`` such as ``body[3].udh.ref``); nothing of it is stored.
"""

from __future__ import annotations

import math
from typing import Any

from dispatcher.errors import ApiError

MAX_ITEMS = 1000
MAX_KEYS = 50  # per object
MAX_KEY_CHARS = 64
MAX_STRING_CHARS = 4096  # inbound texts are at most a few hundred characters
MAX_ARRAY = 100  # inside an item
MAX_DEPTH = 4  # an item, an object in it (``udh``), and two more levels
MAX_ERRORS = 20


def _text_problem(value: str) -> str | None:
    if "\x00" in value:
        return "NUL characters (\\u0000) are not allowed"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "lone UTF-16 surrogates are not text"
    return None


class _Walk:
    def __init__(self) -> None:
        self.errors: list[ApiError] = []

    def fail(self, field: str, where: str, message: str, value: Any = None) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(ApiError("invalid_field", message, field, value, where))

    def value(self, value: Any, field: str, where: str, depth: int) -> None:
        if isinstance(value, str):
            problem = _text_problem(value)
            if problem is not None:
                self.fail(field, where, problem)
            elif len(value) > MAX_STRING_CHARS:
                self.fail(field, where, f"longer than {MAX_STRING_CHARS} characters", len(value))
        elif isinstance(value, float) and not math.isfinite(value):
            self.fail(field, where, "not a finite number")
        elif isinstance(value, dict | list):
            if depth >= MAX_DEPTH:
                self.fail(field, where, f"nested deeper than {MAX_DEPTH} levels")
            elif isinstance(value, dict):
                self.mapping(value, field, where, depth + 1)
            elif len(value) > MAX_ARRAY:
                self.fail(field, where, f"more than {MAX_ARRAY} elements", len(value))
            else:
                for i, element in enumerate(value):
                    self.value(element, field, f"{where}[{i}]", depth + 1)

    def mapping(self, obj: dict[str, Any], field: str | None, where: str, depth: int) -> None:
        if len(obj) > MAX_KEYS:
            self.fail(field or "body", where, f"more than {MAX_KEYS} fields", len(obj))
            return
        for key, value in obj.items():
            problem = _text_problem(key) or (
                f"field names are at most {MAX_KEY_CHARS} characters"
                if len(key) > MAX_KEY_CHARS
                else None
            )
            if problem is not None:
                self.fail(field or "body", where, f"field name: {problem}")
                continue
            self.value(value, field or key, f"{where}.{key}", depth)


def item_errors(items: list[Any], single: bool = False) -> list[ApiError]:
    """Why ``items`` (a parsed callback body) must not be stored: an error per bad place.

    ``single``: the body was one object, not an array (places are then ``body.field``)."""
    if not items or len(items) > MAX_ITEMS:
        return [ApiError("invalid_field", f"send 1-{MAX_ITEMS} objects", "body", len(items))]
    walk = _Walk()
    for i, item in enumerate(items):
        where = "body" if single else f"body[{i}]"
        if not isinstance(item, dict):
            walk.fail("body", where, "each item must be a JSON object")
        else:
            walk.mapping(item, None, where, 1)
    return walk.errors
