"""The workers' consumer reconnects to the broker quickly and never gives up (workers/app.py)."""

from __future__ import annotations

from typing import Any

from celery.utils.imports import symbol_by_name

from workers.app import RECONNECT_INTERVALS, QuickReconnectConsumer, app


class _Conn:
    """Records how the consumer asks for a connection."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def ensure_connection(self, *args: Any, **kwargs: Any) -> _Conn:
        self.calls.append((args, kwargs))
        return self


def test_the_worker_uses_the_quick_reconnect_consumer() -> None:
    assert symbol_by_name(app.conf.worker_consumer) is QuickReconnectConsumer
    assert app.conf.broker_connection_max_retries is None


def test_reconnect_waits_are_short() -> None:
    consumer = object.__new__(QuickReconnectConsumer)  # only what ensure_connected reads
    consumer.app = app
    consumer.first_connection_attempt = False
    consumer.broker_connection_retry_attempt = 0
    conn = _Conn()
    assert consumer.ensure_connected(conn) is conn  # type: ignore[arg-type]
    [(args, kwargs)] = conn.calls
    assert {k: kwargs[k] for k in RECONNECT_INTERVALS} == RECONNECT_INTERVALS
    assert args[1] is None, "retries without end"
    assert kwargs["interval_max"] <= 2.0
