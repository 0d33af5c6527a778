"""Per-process resources of the webhooks lane, built on first use after the fork (never at
import): an event loop, one pooled aiohttp session with the address-checking resolver, and a
database engine."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

from dispatcher.config import Settings
from dispatcher.store.db import make_engine
from workers.metrics import record_webhook_outcomes
from workers.process_local import ProcessLocal
from workers.runtime import new_loop
from workers.webhooks.backoff import WebhookBackoff
from workers.webhooks.deliver import DeliverOptions, WebhookDeliverer
from workers.webhooks.http import AiohttpPoster, make_session
from workers.webhooks.store import SqlDeliveryStore

T = TypeVar("T")


class WebhookRuntime:
    """Everything a webhooks worker process needs."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.options = DeliverOptions.from_settings(settings)
        self.loop = new_loop()
        self.engine = make_engine(settings.database_url, pool_size=2, plan_each_run=True)
        self.session = self.loop.run_until_complete(
            make_session(settings.webhook_allow_private, self.options.max_in_flight)
        )
        poster = AiohttpPoster(
            self.session, settings.webhook_timeout_s, settings.webhook_allow_private
        )
        store = SqlDeliveryStore(
            self.engine, settings.webhook_suspend_after_h * 3600, settings.webhook_max_failures
        )
        backoff = WebhookBackoff(window_s=settings.webhook_retry_window_h * 3600)
        self.deliverer = WebhookDeliverer(
            store, poster, backoff, self.options, observe=record_webhook_outcomes
        )

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on this process's webhooks loop."""
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        """Release connections (worker process shutdown)."""
        self.run(self.session.close())
        self.engine.dispose()
        self.loop.close()


_RUNTIME = ProcessLocal(lambda: WebhookRuntime(Settings.from_env()))


def webhook_runtime() -> WebhookRuntime:
    """This process's webhooks runtime, built on first use."""
    return _RUNTIME.get()


def reset_webhook_runtime() -> None:
    """Close and forget this process's webhooks runtime (process shutdown, tests)."""
    _RUNTIME.reset()
