"""In-process producer for backend apps that share smsdispatch's Redis and database.

    from dispatcher.intake.enqueue import send_sms, send_bulk
    ids = send_sms("shop", sender="SHOP", message="Your code is 123456",
                   phone_numbers=["+48111222333"], priority=True)
    ids = send_bulk("shop", sender="SHOP", items=[("+48111222333", "Hi Ann"), ...])

The same validation, storage (committed before enqueueing) and lanes as the REST API; the
account is named, not authenticated, because the caller already holds the database credentials.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

from dispatcher.accounts.account import Account, find_account, recheck_sender
from dispatcher.config import Settings
from dispatcher.contract import Lane
from dispatcher.errors import ApiError
from dispatcher.intake.broker import Broker
from dispatcher.intake.submit import (
    Prepared,
    RequestRefused,
    SendRequest,
    prepare,
    prepare_personalised,
    unpaid_error,
    webhook_url_error,
)
from dispatcher.intake.writer import SubmissionWriter
from dispatcher.store.db import make_engine, reading, transaction
from dispatcher.store.endpoint_cap import admit_endpoint
from dispatcher.store.prices import PriceBookCache
from dispatcher.webhooks.urls import UrlRefused, check_url


class UnknownAccount(LookupError):
    """No account has that name."""


class Producer:
    """Holds the engine and the broker connection; reuse one per process."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.engine = make_engine(self.settings.database_url, pool_size=2)
        self.broker = Broker(self.settings.redis_url)
        self.writer = SubmissionWriter(
            self.engine,
            self.broker,
            {Lane.BULK: self.settings.chunk_size, Lane.PRIORITY: 100},
            self.settings.writer_max_rows,
            prices=(
                PriceBookCache(self.engine, self.settings.prices_reload_s)
                if self.settings.billing
                else None
            ),
            fair=self.settings.bulk_fairness,
        )
        self._accounts: dict[str, Account] = {}

    def account(self, name: str) -> Account:
        """Look an account up (cached for the producer's life)."""
        if name not in self._accounts:
            found = find_account(self.engine, name)
            if found is None:
                raise UnknownAccount(name)
            self._accounts[name] = found
        return self._accounts[name]

    def _prepare(self, name: str, sender: str, run: Callable[[Account], Prepared]) -> Prepared:
        """``run`` for the named account; a refusal for the sender name is checked again
        against the log (the cached account may predate an approval)."""
        account = self.account(name)
        try:
            return run(account)
        except RequestRefused as exc:
            if not exc.for_sender:
                raise
            with reading(self.engine) as conn:
                account, entry = recheck_sender(conn, account, sender)
            self._accounts[name] = account
            try:
                return run(account)
            except RequestRefused as again:
                raise again.explained(sender.strip(), entry) from None

    def _store(self, prepared: Prepared) -> list[str]:
        stored = self.writer.write([prepared.submission])[0]
        if stored.unpaid and not prepared.submission.messages:
            raise RequestRefused([unpaid_error(p, code) for p, code in stored.unpaid])
        if stored.duplicate:
            return [m["id"] for m in stored.messages]
        return [m.id for m in prepared.submission.messages]

    def send_sms(
        self,
        account: str,
        *,
        sender: str,
        message: str,
        phone_numbers: Sequence[str],
        priority: bool = False,
        validity_min: int | None = None,
        schedule_time: int | None = None,
        external_id: str | None = None,
        webhook_url: str | None = None,
    ) -> list[str]:
        """Store and enqueue one text to ``phone_numbers``; returns the message ids.

        Raises :class:`dispatcher.intake.submit.RequestRefused` when nothing could be accepted.
        """
        req = SendRequest(
            sender,
            message,
            phone_numbers,
            validity_min,
            schedule_time,
            webhook_url=webhook_url,
            external_id=external_id,
            priority=priority,
        )
        now = time.time()
        prepared = self._prepare(
            account,
            sender,
            lambda acct: prepare(req, acct, self.settings, now, source="library"),
        )
        hook = prepared.submission.messages[0].webhook_url
        if hook is not None:
            self._admit_webhook(self.account(account), hook)
        return self._store(prepared)

    def _admit_webhook(self, acct: Account, url: str) -> None:
        """What the API checks beyond :func:`~dispatcher.intake.submit.prepare`: the name's
        addresses and the account's cap on webhook endpoints (:class:`RequestRefused` otherwise)."""
        try:
            check_url(url, self.settings.webhook_allow_private)
        except UrlRefused as exc:
            raise RequestRefused([webhook_url_error(exc, url)]) from None
        with transaction(self.engine) as conn:
            cap = self.settings.webhook_max_endpoints
            if not admit_endpoint(conn, acct.id, url, cap, time.time()):
                raise RequestRefused([ApiError("webhook_endpoint_limit", None, "webhookUrl", url)])

    def send_bulk(
        self,
        account: str,
        *,
        sender: str,
        items: Iterable[tuple[str, str]],
        validity_min: int | None = None,
        batch: int = 10_000,
    ) -> list[str]:
        """Personalised messages ``(phone, text)``, stored in batches of ``batch``; the ids."""
        self.account(account)  # an unknown account fails before the items are read
        ids: list[str] = []
        pending: list[tuple[str, str]] = []
        for item in items:
            pending.append(item)
            if len(pending) >= batch:
                ids += self._bulk(account, sender, pending, validity_min)
                pending = []
        if pending:
            ids += self._bulk(account, sender, pending, validity_min)
        return ids

    def _bulk(
        self, account: str, sender: str, items: list[tuple[str, str]], validity_min: int | None
    ) -> list[str]:
        now = time.time()
        prepared = self._prepare(
            account,
            sender,
            lambda acct: prepare_personalised(
                acct, self.settings, sender, items, now, validity_min=validity_min
            ),
        )
        return self._store(prepared)

    def close(self) -> None:
        """Release connections."""
        self.broker.close()
        self.engine.dispose()


_default: Producer | None = None


def _producer() -> Producer:
    global _default
    if _default is None:
        _default = Producer()
    return _default


def send_sms(account: str, **kwargs: object) -> list[str]:
    """:meth:`Producer.send_sms` on a process-wide producer configured from the environment."""
    return _producer().send_sms(account, **kwargs)  # type: ignore[arg-type]


def send_bulk(account: str, **kwargs: object) -> list[str]:
    """:meth:`Producer.send_bulk` on a process-wide producer configured from the environment."""
    return _producer().send_bulk(account, **kwargs)  # type: ignore[arg-type]
