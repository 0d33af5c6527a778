"""Load and validate a connections file (TOML); every error names the file and the key.

Example message: ``connections.toml: connections[2].tps: must be a positive integer``
(array indexes count from 0, as in the file's own order).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from typing import Any

from dispatcher.config import Settings
from dispatcher.routing.model import (
    CONNECTION_TYPES,
    DEFAULT_CONNECTION,
    BreakerConfig,
    ConnectionConfig,
    Credentials,
    RoutingConfig,
)
from dispatcher.routing.smpp_config import SMPP_KEYS, parse_smpp
from dispatcher.webhooks.urls import UrlRefused, check_static

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
PREFIX_RE = re.compile(r"^\+[0-9]{1,15}$")
COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
LANES = ("priority", "bulk")
CONNECTION_KEYS = {
    "name",
    "type",
    "url",
    "tps",
    "headroom",
    "max_in_flight",
    "batch_size",
    "timeout_s",
    "destinations",
    "weight",
    "preference",
    "lanes",
    "accounts",
    "fallback",
    "lookups",
    "cost_per_part",
    "cost_currency",
}
SECRETS = ("api_key", "application_key", "authorization", "callback_token", "webhook_secret")
SECRET_KEYS = {f"{s}_{how}" for s in SECRETS for how in ("env", "file")}
BREAKER_KEYS = {
    "failure_threshold",
    "error_ratio",
    "window_s",
    "min_calls",
    "cooldown_s",
    "probes",
    "wait_s",
}


class ConfigError(ValueError):
    """The connections file is unusable; the message names the file and the key."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        super().__init__(f"{os.path.basename(file) or file}: {key}: {problem}")
        self.file = file
        self.key = key
        self.problem = problem


class _Reader:
    """Typed access to one table of the file, raising :class:`ConfigError` with its path."""

    def __init__(self, file: str, path: str, table: Mapping[str, Any], env: Mapping[str, str]):
        self.file, self.path, self.table, self.env = file, path, table, env

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.file, f"{self.path}.{key}" if self.path else key, problem)

    def unknown(self, allowed: set[str]) -> None:
        for key in self.table:
            if key not in allowed:
                raise self.fail(key, "unknown key")

    def get(self, key: str, check: Callable[[Any], bool], want: str, default: Any = None) -> Any:
        if key not in self.table:
            if default is None:
                raise self.fail(key, f"is required ({want})")
            return default
        value = self.table[key]
        if (isinstance(value, bool) and "boolean" not in want) or not check(value):
            raise self.fail(key, f"must be {want}")
        return value

    def positive_int(self, key: str, default: int | None = None) -> int:
        v = self.get(key, lambda v: isinstance(v, int) and v > 0, "a positive integer", default)
        return int(v)

    def positive_number(self, key: str, default: float | None = None) -> float:
        v = self.get(
            key, lambda v: isinstance(v, int | float) and v > 0, "a positive number", default
        )
        return float(v)

    def strings(self, key: str, pattern: re.Pattern[str], want: str) -> tuple[str, ...]:
        value = self.get(key, lambda v: isinstance(v, list), f"a list of {want}", [])
        for i, item in enumerate(value):
            if not isinstance(item, str) or not pattern.match(item):
                raise self.fail(f"{key}[{i}]", f"must be {want}, got {item!r}")
        return tuple(value)

    def secret(self, name: str) -> str:
        env_key, file_key = f"{name}_env", f"{name}_file"
        if env_key in self.table and file_key in self.table:
            raise self.fail(env_key, f"give {env_key} or {file_key}, not both")
        if env_key in self.table:
            var = self.table[env_key]
            if not isinstance(var, str) or not var:
                raise self.fail(env_key, "must name an environment variable")
            value = self.env.get(var, "")
            if not value:
                raise self.fail(env_key, f"environment variable {var} is not set")
            return value
        if file_key in self.table:
            path = self.table[file_key]
            if not isinstance(path, str) or not path:
                raise self.fail(file_key, "must be a file path")
            try:
                with open(os.path.join(os.path.dirname(self.file), path), encoding="utf-8") as fh:
                    value = fh.read().strip()
            except OSError as exc:
                raise self.fail(file_key, f"cannot read {path}: {exc.strerror}") from None
            if not value:
                raise self.fail(file_key, f"{path} is empty")
            return value
        return ""


def _connection(reader: _Reader, settings: Settings) -> ConnectionConfig:
    kind = reader.get(
        "type", lambda v: v in CONNECTION_TYPES, "one of " + ", ".join(CONNECTION_TYPES)
    )
    if kind == "smpp":
        return _smpp_connection(reader, settings)
    reader.unknown(CONNECTION_KEYS | SECRET_KEYS)
    name = reader.get("name", lambda v: isinstance(v, str) and bool(NAME_RE.match(v)), "a name")
    url = reader.get(
        "url", lambda v: isinstance(v, str) and v.startswith(("http://", "https://")), "an URL"
    )
    try:
        # The guard of every fetcher: carriers may live on the operator's own networks.
        url = check_static(url, allow_private=True, restrict_ports=False).url
    except UrlRefused as exc:
        raise reader.fail("url", exc.reason) from None
    creds = Credentials(**{s: reader.secret(s) for s in SECRETS})
    if kind == "messageflow" and not (creds.application_key and creds.authorization):
        raise reader.fail(
            "application_key_env", "messageflow needs application_key_* and authorization_*"
        )
    cost, cost_currency = _cost(reader)
    return ConnectionConfig(
        name=name,
        type=kind,
        url=url.rstrip("/"),
        tps=float(reader.positive_int("tps")),
        headroom=_headroom(reader, settings),
        max_in_flight=reader.positive_int("max_in_flight", 64),
        batch_size=reader.positive_int("batch_size", 1 if kind == "messageflow" else 500),
        timeout_s=reader.positive_number("timeout_s", settings.carrier_timeout_s),
        credentials=creds,
        lookups=bool(
            reader.get(
                "lookups",
                lambda v: isinstance(v, bool),
                "a boolean (true/false)",
                kind == "simulator",
            )
        ),
        cost_per_part=cost,
        cost_currency=cost_currency,
        **_common(reader),
    )


def _headroom(reader: _Reader, settings: Settings) -> float:
    return float(
        reader.get(
            "headroom",
            lambda v: isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v < 0.5,
            "a fraction from 0 to 0.5 (0.02 = send at 98 % of tps)",
            settings.rate_headroom,
        )
    )


def _common(reader: _Reader) -> dict[str, Any]:
    """The routing keys every connection type shares."""
    return {
        "destinations": tuple(
            reader.strings(
                "destinations",
                re.compile(f"{PREFIX_RE.pattern}|{COUNTRY_RE.pattern}"),
                'prefixes like "+4850" or country codes like "PL"',
            )
        ),
        "weight": reader.positive_int("weight", 1),
        "preference": reader.positive_int("preference", 1),
        "lanes": reader.strings("lanes", re.compile("^(priority|bulk)$"), '"priority" or "bulk"'),
        "accounts": reader.strings("accounts", re.compile(r"^\S{1,64}$"), "account names"),
        "fallback": bool(
            reader.get("fallback", lambda v: isinstance(v, bool), "a boolean (true/false)", False)
        ),
    }


def _smpp_connection(reader: _Reader, settings: Settings) -> ConnectionConfig:
    """A ``type = "smpp"`` connection: the routing keys plus the SMPP ones; no URL, no batch."""
    reader.unknown((CONNECTION_KEYS - {"url", "batch_size", "lookups"}) | SMPP_KEYS | {"password"})
    name = reader.get("name", lambda v: isinstance(v, str) and bool(NAME_RE.match(v)), "a name")
    smpp = parse_smpp(reader)
    cost, cost_currency = _cost(reader)
    return ConnectionConfig(
        name=name,
        type="smpp",
        url=smpp.address,
        tps=float(reader.positive_int("tps")),
        headroom=_headroom(reader, settings),
        # Every bind's window, over every host: the holder enforces the windows itself.
        max_in_flight=reader.positive_int("max_in_flight", smpp.binds * smpp.window),
        batch_size=1,
        timeout_s=reader.positive_number("timeout_s", settings.carrier_timeout_s),
        lookups=False,
        smpp=smpp,
        cost_per_part=cost,
        cost_currency=cost_currency,
        **_common(reader),
    )


def _cost(reader: _Reader) -> tuple[int | None, int]:
    """``cost_per_part = "0.03"`` with ``cost_currency = "PLN"``: what the carrier charges."""
    from dispatcher.billing.money import MoneyError, currency, to_minor

    if "cost_per_part" not in reader.table:
        if "cost_currency" in reader.table:
            raise reader.fail("cost_currency", "needs cost_per_part")
        return None, 0
    raw = reader.get("cost_per_part", lambda v: isinstance(v, str), 'a string like "0.03"')
    code = reader.get("cost_currency", lambda v: isinstance(v, str), 'an ISO code like "PLN"')
    try:
        cur = currency(code)
    except MoneyError as exc:
        raise reader.fail("cost_currency", str(exc)) from None
    try:
        return to_minor(raw, cur), cur.numeric
    except MoneyError as exc:
        raise reader.fail("cost_per_part", str(exc)) from None


def _breaker(reader: _Reader) -> BreakerConfig:
    reader.unknown(BREAKER_KEYS)
    d = BreakerConfig()
    ratio = reader.get(
        "error_ratio",
        lambda v: isinstance(v, int | float) and 0 < v <= 1,
        "a number in (0, 1]",
        d.error_ratio,
    )
    return BreakerConfig(
        failure_threshold=reader.positive_int("failure_threshold", d.failure_threshold),
        error_ratio=float(ratio),
        window_s=reader.positive_int("window_s", d.window_s),
        min_calls=reader.positive_int("min_calls", d.min_calls),
        cooldown_s=reader.positive_number("cooldown_s", d.cooldown_s),
        probes=reader.positive_int("probes", d.probes),
        wait_s=reader.positive_number("wait_s", d.wait_s),
    )


def parse(
    data: Mapping[str, Any], file: str, settings: Settings, env: Mapping[str, str]
) -> RoutingConfig:
    """Validate the parsed TOML document ``data`` read from ``file``."""
    top = _Reader(file, "", data, env)
    top.unknown({"connections", "breaker"})
    raw = data.get("connections")
    if not isinstance(raw, list) or not raw:
        raise top.fail("connections", "must be a non-empty array of tables ([[connections]])")
    connections: list[ConnectionConfig] = []
    for i, table in enumerate(raw):
        if not isinstance(table, dict):
            raise top.fail(f"connections[{i}]", "must be a table")
        c = _connection(_Reader(file, f"connections[{i}]", table, env), settings)
        if any(other.name == c.name for other in connections):
            raise top.fail(f"connections[{i}].name", f"duplicate connection name {c.name!r}")
        if not c.destinations and not c.fallback:
            raise top.fail(
                f"connections[{i}].destinations", "is empty and fallback is false: serves nothing"
            )
        connections.append(c)
    breaker_table = data.get("breaker", {})
    if not isinstance(breaker_table, dict):
        raise top.fail("breaker", "must be a table")
    breaker = _breaker(_Reader(file, "breaker", breaker_table, env))
    return RoutingConfig(tuple(connections), breaker, file)


def load_file(path: str, settings: Settings, env: Mapping[str, str] | None = None) -> RoutingConfig:
    """Read and validate the connections file at ``path``."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(path, "(file)", "not found") from None
    except OSError as exc:
        raise ConfigError(path, "(file)", exc.strerror or str(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "(syntax)", str(exc)) from None
    return parse(data, os.path.abspath(path), settings, os.environ if env is None else env)


def implicit(settings: Settings) -> RoutingConfig:
    """No file: one ``default`` simulator connection on the carrier URL routes everything."""
    default = ConnectionConfig(
        name=DEFAULT_CONNECTION,
        type="simulator",
        url=settings.carrier_url,
        tps=settings.carrier_tps,
        headroom=settings.rate_headroom,
        max_in_flight=None,
        batch_size=settings.carrier_batch_size,
        timeout_s=settings.carrier_timeout_s,
        fallback=True,
        credentials=Credentials(
            api_key=settings.carrier_token, callback_token=settings.carrier_callback_token
        ),
        lookups=True,
    )
    return RoutingConfig((default,))


def load(settings: Settings, path: str | None = None) -> RoutingConfig:
    """The routing configuration: ``path``, else ``SMSDISPATCH_CONNECTIONS``, else implicit."""
    path = path or settings.connections
    return load_file(path, settings) if path else implicit(settings)
