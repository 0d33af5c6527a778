"""Reading settings from the environment strictly: every value parsed by pydantic against its
field's type and bounds, secrets from files, typos noticed.

- A bad value stops the process: :class:`ConfigError` lists every bad variable with what it
  accepts (``SMSDISPATCH_WEBHOOK_ALLOW_PRIVATE='ture': expected a boolean …``); the CLI prints it
  and exits with code 4, so no process starts half-configured and no traceback is shown.
- ``NAME_FILE=/run/secrets/x`` gives any setting from a file (Docker and Kubernetes secrets;
  the trailing newline is dropped). Setting both ``NAME`` and ``NAME_FILE`` is an error.
- An ``SMSDISPATCH_*`` variable that is no setting is warned about (with the closest setting's
  name), not refused: the environment is shared with the client library's variables, with
  tools of other versions and, without ``enableServiceLinks: false``, with Kubernetes' service
  variables, and an unknown extra must not be an outage. ``smsdispatch config check`` refuses
  them, for a deploy pipeline that wants that.

Why not pydantic-settings: it would add a dependency for what pydantic (already one) does here
in a page; its errors name the field, not the variable; and it has no ``_FILE`` convention
(its ``secrets_dir`` reads files named after the variables, one directory for all).
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import typing
from collections.abc import Callable, Mapping
from functools import cache
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, TypeAdapter, ValidationError

PREFIX = "SMSDISPATCH_"
FILE_SUFFIX = "_FILE"
# Variables with our prefix that are not server settings: the client library's and the
# snippets' credentials, and the dev stack's process marker.
NOT_SETTINGS = frozenset(
    {
        "SMSDISPATCH_URL",
        "SMSDISPATCH_APP_KEY",
        "SMSDISPATCH_AUTHORIZATION",
        "SMSDISPATCH_KEYS_FILE",
        "SMSDISPATCH_MESSAGE_ID",
        "SMSDISPATCH_DEVSTACK_ID",
    }
)

log = logging.getLogger("smsdispatch.config")


class ConfigError(ValueError):
    """One or more settings are invalid; ``problems`` has one line per variable."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration: " + "; ".join(problems))


def setting(
    default: Any = dataclasses.MISSING,
    doc: str = "",
    *,
    env: str | None = None,
    secret: bool = False,
    factory: Callable[[], Any] | None = None,
    shown_default: str | None = None,
    accepts: str | None = None,
    upper: bool = False,
    bounds: Mapping[str, Any] | None = None,
) -> Any:
    """A settings field: its default, its description (docs/configuration.md is generated from
    it), and how the environment gives it.

    ``env`` names the variable when it is not ``SMSDISPATCH_<NAME>``; ``secret`` keeps the value
    out of error messages; ``shown_default`` is the default as the documentation shows it;
    ``accepts`` describes what a structured string accepts; ``upper`` accepts any case;
    ``bounds`` are pydantic ``Field`` constraints (``ge``, ``gt``, ``le``, ``pattern``).
    """
    meta = {
        "doc": doc,
        "env": env,
        "secret": secret,
        "shown_default": shown_default,
        "accepts": accepts,
        "upper": upper,
        "bounds": dict(bounds or {}),
    }
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class Spec:
    """One setting as the environment sees it."""

    name: str
    env: str
    type: Any
    default: Any
    doc: str
    secret: bool
    shown_default: str | None
    accepts: str | None
    upper: bool
    bounds: Mapping[str, Any]

    @property
    def adapter(self) -> TypeAdapter[Any]:
        """The pydantic validator for a raw string of this setting."""
        return _adapter(self.type, tuple(sorted(self.bounds.items())))

    def describe_type(self) -> str:
        """What the variable accepts, in words (error messages, the documentation)."""
        return self.accepts or _describe(self.type, self.bounds)


@cache
def specs(cls: type) -> tuple[Spec, ...]:
    """The settings of a dataclass built with :func:`setting`, in declaration order (read once
    per class: type hints are costly to resolve, and processes build settings often)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        meta = f.metadata
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        out.append(
            Spec(
                name=f.name,
                env=meta.get("env") or PREFIX + f.name.upper(),
                type=hints[f.name],
                default=default,
                doc=meta.get("doc", ""),
                secret=bool(meta.get("secret")),
                shown_default=meta.get("shown_default"),
                accepts=meta.get("accepts"),
                upper=bool(meta.get("upper")),
                bounds=meta.get("bounds", {}),
            )
        )
    return tuple(out)


def parse(cls: type, env: Mapping[str, str]) -> dict[str, Any]:
    """The values ``env`` gives (absent and empty variables keep their defaults).

    Raises :class:`ConfigError` naming every bad variable at once.
    """
    values: dict[str, Any] = {}
    problems: list[str] = []
    for spec in specs(cls):
        raw, source = _raw(spec, env, problems)
        if raw is None:
            continue
        text = raw.upper() if spec.upper else raw
        try:
            values[spec.name] = spec.adapter.validate_python(
                text if spec.type is str or _is_literal(spec.type) else text.strip()
            )
        except ValidationError:
            problems.append(f"{source}={_shown(spec, raw)}: expected {spec.describe_type()}")
    if problems:
        raise ConfigError(problems)
    return values


def unknown(cls: type, env: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """``(variable, closest setting or None)`` for every ``SMSDISPATCH_*`` that is no setting."""
    known = {s.env for s in specs(cls)}
    known |= {name + FILE_SUFFIX for name in known} | NOT_SETTINGS
    out = []
    for name in sorted(env):
        if name.startswith(PREFIX) and name not in known:
            close = difflib.get_close_matches(name, sorted(known - NOT_SETTINGS), n=1)
            out.append((name, close[0] if close else None))
    return out


_warned: set[str] = set()


def warn_unknown(cls: type, env: Mapping[str, str]) -> None:
    """Log each unknown ``SMSDISPATCH_*`` variable once per process (a typo is ignored, not
    silently: the line names the setting it probably meant)."""
    for name, close in unknown(cls, env):
        if name in _warned:
            continue
        _warned.add(name)
        hint = f" (did you mean {close}?)" if close else ""
        log.warning("%s is not a setting and is ignored%s", name, hint)


def _raw(spec: Spec, env: Mapping[str, str], problems: list[str]) -> tuple[str | None, str]:
    direct = env.get(spec.env) or None
    path = env.get(spec.env + FILE_SUFFIX) or None
    if path is None:
        return direct, spec.env
    source = spec.env + FILE_SUFFIX
    if direct is not None:
        problems.append(f"{spec.env} and {source} are both set: set one")
        return None, source
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{source}={path!r}: cannot be read ({type(exc).__name__})")
        return None, source
    # Files written by `echo` or an editor end with a newline that is no part of the secret.
    return text.rstrip("\r\n") or None, source


def _shown(spec: Spec, raw: str) -> str:
    """The value as an error message may show it: a secret's password masked, or nothing."""
    if not spec.secret:
        return repr(raw)
    try:
        parts = urlsplit(raw)
        host = parts.hostname
    except ValueError:
        return "<hidden>"
    if not parts.scheme or not parts.netloc:
        return "<hidden>"
    where = f"{parts.scheme}://{'***@' if parts.username or parts.password else ''}{host or ''}"
    return repr(where + "/…")


def _is_literal(tp: Any) -> bool:
    return typing.get_origin(tp) is Literal


@cache
def _adapter(tp: Any, bounds: tuple[tuple[str, Any], ...]) -> TypeAdapter[Any]:
    kw = dict(bounds)
    if tp is float:
        kw.setdefault("allow_inf_nan", False)
    return TypeAdapter(Annotated[tp, Field(**kw)] if kw else tp)


def _describe(tp: Any, bounds: Mapping[str, Any]) -> str:
    args = typing.get_args(tp)
    if _is_literal(tp):
        return "one of " + ", ".join(str(a) for a in args)
    if type(None) in args:  # "int | None": empty or absent means the documented default
        (tp,) = (a for a in args if a is not type(None))
    words = {
        bool: "a boolean (true/false, 1/0, yes/no, on/off)",
        int: "an integer",
        float: "a number",
        str: "text",
    }.get(tp, str(tp))
    limits = []
    for key, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
        if key in bounds:
            limits.append(f"{sign} {bounds[key]}")
    if "pattern" in bounds:
        limits.append(f"matching {bounds['pattern']}")
    return words + (" " + " and ".join(limits) if limits else "")
