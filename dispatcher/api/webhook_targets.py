"""Admission of a per-message ``webhookUrl`` beyond its static checks (those run in
:mod:`dispatcher.intake.submit` for every producer): the name is resolved, without blocking
the event loop, and refused when it points inside our network; the URL becomes one of the account's
webhook endpoints unless the account has reached its cap. Both refusals are per-request errors
naming ``webhookUrl``; the webhooks lane checks the address again when it connects."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

from sqlalchemy import Engine

from dispatcher.config import Settings
from dispatcher.errors import ApiError
from dispatcher.intake.submit import webhook_url_error
from dispatcher.store.db import transaction
from dispatcher.store.endpoint_cap import admit_endpoint
from dispatcher.webhooks.urls import UrlRefused, canonical, check_resolved

KNOWN_MAX = 10_000  # (account, url) pairs this process has seen admitted
VERDICT_TTL_S = 60.0  # how long a host's DNS verdict is reused (the sender checks anyway)


class WebhookTargets:
    """Checks per-message webhook URLs for one API process."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.allow_private = settings.webhook_allow_private
        self.cap = settings.webhook_max_endpoints
        # An endpoint, once registered, stays: the database is asked once per URL.
        self._known: OrderedDict[tuple[int, str], None] = OrderedDict()
        # (host, port) → (valid until, refusal or None): one DNS look-up per host a minute,
        # not one per request (and a slow resolver delays one request a minute, not all).
        self._verdicts: OrderedDict[tuple[str, int], tuple[float, UrlRefused | None]] = (
            OrderedDict()
        )

    async def _resolved(self, url: str) -> None:
        target = canonical(url)
        key, now = (target.host, target.port), time.monotonic()
        cached = self._verdicts.get(key)
        if cached is None or cached[0] < now:
            refusal: UrlRefused | None = None
            try:
                await check_resolved(url, self.allow_private)
            except UrlRefused as exc:
                refusal = exc
            cached = (now + VERDICT_TTL_S, refusal)
            self._verdicts[key] = cached
            if len(self._verdicts) > KNOWN_MAX:
                self._verdicts.popitem(last=False)
        if cached[1] is not None:
            raise cached[1]

    async def admit(self, account_id: int, url: str) -> None:
        """Raise :class:`ApiError` unless ``url`` (canonical, statically checked) may be used."""
        try:
            await self._resolved(url)
        except UrlRefused as exc:
            raise webhook_url_error(exc, url) from None
        key = (account_id, url)
        if key in self._known:
            self._known.move_to_end(key)
            return
        admitted = await asyncio.to_thread(self._admit, account_id, url)
        if not admitted:
            raise ApiError(
                "webhook_endpoint_limit",
                f"the account already has {self.cap} webhook endpoints; reuse one of them",
                "webhookUrl",
                url,
            )
        self._known[key] = None
        if len(self._known) > KNOWN_MAX:
            self._known.popitem(last=False)

    def _admit(self, account_id: int, url: str) -> bool:
        with transaction(self.engine) as conn:
            return admit_endpoint(conn, account_id, url, self.cap, time.time())
