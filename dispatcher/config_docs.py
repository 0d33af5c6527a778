"""``docs/configuration.md``, generated from :class:`dispatcher.config.Settings` (``smsdispatch
config docs > docs/configuration.md``; tests/unit/test_docs_fresh.py keeps it in step)."""

from __future__ import annotations

from typing import Any

from dispatcher.config import Settings
from dispatcher.config_env import FILE_SUFFIX, NOT_SETTINGS, Spec, specs

HEADER = f"""# Configuration

<!-- Generated from dispatcher/config.py by `smsdispatch config docs > docs/configuration.md`;
edit the settings' descriptions there, not this file. -->

Every process is configured by environment variables; every setting has a default, so `make
run` needs none. The table below is generated from the settings themselves
(`dispatcher/config.py`), with what each variable accepts.

**Values are parsed strictly.** A value that is not what the variable accepts stops the process
before it does anything, with the variable's name and what it accepts, on stderr and with exit
code 4 (every process: API, workers, scheduler, exporter, links, SMPP, `smsdispatch run`):

```text
$ SMSDISPATCH_WEBHOOK_ALLOW_PRIVATE=ture smsdispatch api
smsdispatch: invalid configuration
  SMSDISPATCH_WEBHOOK_ALLOW_PRIVATE='ture': expected a boolean (true/false, 1/0, yes/no, on/off)
```

Booleans accept `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off` in any case; numbers must be
finite; an empty variable is the same as an unset one (the default). The values of secrets
(URLs with passwords, tokens, salts) are never shown: a URL is shown without its password.
`smsdispatch config check` validates the environment without starting anything.

**Secrets from files.** Every variable `NAME` may instead be given as `NAME{FILE_SUFFIX}`, the
path of a file holding the value (Docker and Kubernetes secrets:
`DATABASE_URL_FILE=/run/secrets/database-url`, `SMSDISPATCH_CARRIER_TOKEN_FILE=/run/secrets/
carrier-token`); one trailing newline is dropped. Setting both `NAME` and `NAME{FILE_SUFFIX}`, or
a file that cannot be read, stops the process. Scripts get the problems as one JSON object on
stderr (`{{"error": "invalid_configuration", "problems": […]}}`) when stdout is not a terminal.

**Unknown variables are warned about, not refused.** An `SMSDISPATCH_*` variable that is no
setting (a typo: `SMSDISPATCH_WEBHOOK_ALLOW_PRIVAT`) is logged once per process as a warning
naming the closest setting, and otherwise ignored. Refusing would turn harmless extras into an
outage: the environment is shared with the client library's, the snippets' and the dev
stack's variables ({", ".join(f"`{n}`" for n in sorted(NOT_SETTINGS))}), with tools
and manifests of other versions, and with Kubernetes' service variables (`SMSDISPATCH_API_PORT=
tcp://…` for a Service named `smsdispatch-api`; our manifests set `enableServiceLinks: false`).
`smsdispatch config check` does refuse them (exit 4), for a deploy pipeline that wants that.

"""

FOOTER = """
Logs are JSON (structlog), bound with message, batch, lane and connection ids; message bodies,
keys and secrets are never written (a redacting processor drops such fields whatever the caller
passes, and a test checks it).
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def shown_default(spec: Spec) -> str:
    """The default as the table shows it."""
    if spec.shown_default is not None:
        return f"`{spec.shown_default}`"
    value: Any = spec.default
    if value == "" or value is None:
        return "empty"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def render_configuration() -> str:
    """The whole of docs/configuration.md."""
    rows = ["| variable | accepts | default | meaning |", "|---|---|---|---|"]
    for spec in specs(Settings):
        name = f"`{spec.env}`" + (" (secret)" if spec.secret else "")
        rows.append(
            "| "
            + " | ".join(
                _cell(c) for c in (name, spec.describe_type(), shown_default(spec), spec.doc)
            )
            + " |"
        )
    return HEADER + "\n".join(rows) + "\n" + FOOTER
