"""Structured logging (structlog, JSON) that never writes message bodies or secrets."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# Keys whose values are never written, whatever the caller passes.
REDACTED_KEYS = frozenset(
    {
        "text",
        "message_text",
        "body",
        "content",
        "password",
        "secret",
        "token",
        "authorization",
        "application_key",
        "api_key",
        "key",
        "webhook_secret",
    }
)


def redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Drop the values of sensitive keys (a processor, so it applies to every log call)."""
    for k in list(event.keys()):
        if k.lower() in REDACTED_KEYS:
            event[k] = "[redacted]"
    return event


class _StderrLogger:
    """Writes each line to whatever ``sys.stderr`` is at the time (test capture swaps it)."""

    def __init__(self, *_args: Any) -> None:
        pass

    def msg(self, message: str) -> None:
        """Write one rendered line."""
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


def configure(level: str = "INFO", fmt: str = "json") -> None:
    """Configure structlog and route stdlib logging (Celery, uvicorn) through the same output."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=_StderrLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer,
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def get_logger(name: str) -> Any:
    """A structlog logger bound with the component name."""
    return structlog.get_logger(component=name)
