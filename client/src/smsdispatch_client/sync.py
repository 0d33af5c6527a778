"""The blocking client."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any, Unpack

import httpx

from smsdispatch_client import protocol
from smsdispatch_client.credentials import DEFAULT_URL
from smsdispatch_client.errors import SmsApiError
from smsdispatch_client.models import Message, Page, SendResult
from smsdispatch_client.protocol import ListFilters
from smsdispatch_client.retry import RetryPolicy


class SmsClient(protocol.Core):
    """Blocking client of the smsdispatch API; use as a context manager or call :meth:`close`.

    Sending is retried on connection errors, timeouts, 5xx, 429 and 409
    ``idempotency_key_in_flight`` (``retry``, honouring ``Retry-After``), every attempt with the
    SAME ``Idempotency-Key``, so a retry never sends twice. ``transport`` replaces httpx's (tests,
    proxies).
    """

    def __init__(
        self,
        application_key: str,
        authorization: str,
        base_url: str = DEFAULT_URL,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(application_key, authorization, base_url, timeout, retry)
        self._http = httpx.Client(
            base_url=self.base_url, headers=self.headers, timeout=timeout, transport=transport
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One API call with retries; the JSON answer, or an :class:`SmsError`."""
        for attempt in range(self.retry.attempts):
            try:
                outcome: protocol.Outcome = self._http.request(
                    method, path, json=body, params=params, headers=headers
                )
            except httpx.TransportError as exc:
                outcome = exc
            delay = self.retry_in(attempt, outcome)
            if delay is None:
                return protocol.conclude(outcome)
            time.sleep(delay)
        raise AssertionError("unreachable")  # the last attempt always concludes

    def send_sms(
        self,
        phone_numbers: str | Sequence[str],
        message: str,
        *,
        sender: str,
        idempotency_key: str | None = None,
        campaign: str | None = None,
        **options: Any,
    ) -> SendResult:
        """Send ``message`` to one number or many (split into requests of 10,000).

        ``options``: ``priority``, ``validity`` (minutes), ``schedule_time`` (unix seconds),
        ``external_id``, ``webhook_url``, ``flash``,
        ``short_link`` (shorten and track the text's links; the server must have a short-link
        address, docs/short-links.md), ``time_restriction`` (``"follow"`` or ``"ignore"``) and
        ``time_restriction_range`` (``"08:00-21:00"``: quiet hours in the recipient's local
        time, docs/campaigns.md). ``campaign`` groups the messages in the
        panel (``Smsdispatch-Campaign``). Partial success returns normally with ``errors``; a
        request refused as a whole raises :class:`SmsApiError`.
        """
        result, posts = self.send_requests(
            phone_numbers, message, sender, idempotency_key, campaign, options
        )
        for body, headers in posts:
            answer = self.request("POST", protocol.SMS_PATH, body=body, headers=headers)
            protocol.merge(result, answer)
        return result

    send_bulk = send_sms  # the same call: many recipients, one text

    def get_message(self, message_id: str) -> Message:
        """One message with its carrier details and timeline (``raw['events']``)."""
        body = self.request("GET", protocol.message_path(message_id))
        return protocol.read_message(body, message_id)

    def get_status(self, message_id: str) -> str:
        """The message's status name (``queued`` … ``delivered``)."""
        return self.get_message(message_id).status

    def list_messages(
        self, *, offset: int = 0, limit: int = 100, **filters: Unpack[ListFilters]
    ) -> Page:
        """One page of ``GET /v2.1/sms``: up to ``limit`` (≤ 1000) messages from ``offset``,
        filtered by :class:`ListFilters`; nothing matching is an empty page."""
        return self._page(protocol.SMS_PATH, offset, limit, filters)

    def list_statuses(
        self, *, offset: int = 0, limit: int = 100, **filters: Unpack[ListFilters]
    ) -> Page:
        """One page of ``GET /v2.1/sms/statuses`` (the same filters and page)."""
        return self._page(protocol.STATUSES_PATH, offset, limit, filters)

    def iter_pages(
        self, *, page_size: int = 1000, **filters: Unpack[ListFilters]
    ) -> Iterator[Page]:
        """Every page of ``GET /v2.1/sms``, one request each, from the first to the last.

        Messages created during a newest-first walk push older ones onto the next page: those
        repeats are dropped (so a page may hold fewer than ``page_size``). A message whose
        status leaves a ``status`` filter during the walk can be missed: pass ``date_to`` for a
        fixed set.
        """
        walk = protocol.PageWalk(page_size, filters)
        while (query := walk.query()) is not None:
            yield walk.take(self._fetch(protocol.SMS_PATH, query, walk.page_size))

    def iter_messages(
        self, *, page_size: int = 1000, **filters: Unpack[ListFilters]
    ) -> Iterator[Message]:
        """Every matching message, fetched a page at a time."""
        for page in self.iter_pages(page_size=page_size, **filters):
            yield from page.messages

    def _page(self, path: str, offset: int, limit: int, filters: ListFilters) -> Page:
        return self._fetch(path, protocol.list_query(offset, limit, filters), limit)

    def _fetch(self, path: str, query: dict[str, str], limit: int) -> Page:
        offset = int(query["offset"])
        try:
            body = self.request("GET", path, params=query)
        except SmsApiError as exc:
            return protocol.page_for(exc, offset, limit)
        return protocol.read_page(body, offset, limit)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> SmsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
