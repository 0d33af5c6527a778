"""The asyncio client: the same calls as :class:`~smsdispatch_client.SmsClient`, awaited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any, Unpack

import httpx

from smsdispatch_client import protocol
from smsdispatch_client.credentials import DEFAULT_URL
from smsdispatch_client.errors import SmsApiError
from smsdispatch_client.models import Message, Page, SendResult
from smsdispatch_client.protocol import ListFilters
from smsdispatch_client.retry import RetryPolicy


class AsyncSmsClient(protocol.Core):
    """The API for asyncio applications; ``async with`` it or ``await`` :meth:`aclose`."""

    def __init__(
        self,
        application_key: str,
        authorization: str,
        base_url: str = DEFAULT_URL,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(application_key, authorization, base_url, timeout, retry)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self.headers, timeout=timeout, transport=transport
        )

    async def request(
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
                outcome: protocol.Outcome = await self._http.request(
                    method, path, json=body, params=params, headers=headers
                )
            except httpx.TransportError as exc:
                outcome = exc
            delay = self.retry_in(attempt, outcome)
            if delay is None:
                return protocol.conclude(outcome)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # the last attempt always concludes

    async def send_sms(
        self,
        phone_numbers: str | Sequence[str],
        message: str,
        *,
        sender: str,
        idempotency_key: str | None = None,
        campaign: str | None = None,
        **options: Any,
    ) -> SendResult:
        """See :meth:`SmsClient.send_sms`."""
        result, posts = self.send_requests(
            phone_numbers, message, sender, idempotency_key, campaign, options
        )
        for body, headers in posts:
            answer = await self.request("POST", protocol.SMS_PATH, body=body, headers=headers)
            protocol.merge(result, answer)
        return result

    send_bulk = send_sms

    async def get_message(self, message_id: str) -> Message:
        """See :meth:`SmsClient.get_message`."""
        body = await self.request("GET", protocol.message_path(message_id))
        return protocol.read_message(body, message_id)

    async def get_status(self, message_id: str) -> str:
        """See :meth:`SmsClient.get_status`."""
        return (await self.get_message(message_id)).status

    async def list_messages(
        self, *, offset: int = 0, limit: int = 100, **filters: Unpack[ListFilters]
    ) -> Page:
        """See :meth:`SmsClient.list_messages`."""
        return await self._page(protocol.SMS_PATH, offset, limit, filters)

    async def list_statuses(
        self, *, offset: int = 0, limit: int = 100, **filters: Unpack[ListFilters]
    ) -> Page:
        """See :meth:`SmsClient.list_statuses`."""
        return await self._page(protocol.STATUSES_PATH, offset, limit, filters)

    async def iter_pages(
        self, *, page_size: int = 1000, **filters: Unpack[ListFilters]
    ) -> AsyncIterator[Page]:
        """See :meth:`SmsClient.iter_pages` (``async for``)."""
        walk = protocol.PageWalk(page_size, filters)
        while (query := walk.query()) is not None:
            yield walk.take(await self._fetch(protocol.SMS_PATH, query, walk.page_size))

    async def iter_messages(
        self, *, page_size: int = 1000, **filters: Unpack[ListFilters]
    ) -> AsyncIterator[Message]:
        """See :meth:`SmsClient.iter_messages` (``async for``)."""
        async for page in self.iter_pages(page_size=page_size, **filters):
            for message in page.messages:
                yield message

    async def _page(self, path: str, offset: int, limit: int, filters: ListFilters) -> Page:
        return await self._fetch(path, protocol.list_query(offset, limit, filters), limit)

    async def _fetch(self, path: str, query: dict[str, str], limit: int) -> Page:
        offset = int(query["offset"])
        try:
            body = await self.request("GET", path, params=query)
        except SmsApiError as exc:
            return protocol.page_for(exc, offset, limit)
        return protocol.read_page(body, offset, limit)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncSmsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
