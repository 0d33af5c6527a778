"""Python client of the smsdispatch REST API, sync (:class:`SmsClient`) and async
(:class:`AsyncSmsClient`).

    from dispatcher.client import SmsClient

    with SmsClient("APP_KEY", "AUTHORIZATION", "http://127.0.0.1:8080") as sms:
        sent = sms.send_sms("+48111222333", "Your code is 123456", sender="ACME", priority=True)
        print(sent.ids, sms.get_status(sent.ids[0]))

Sending is retried on connection errors, timeouts, 5xx, 429 and 409 (the same request still
in flight) with exponential backoff and jitter, honouring ``Retry-After``, and every attempt
carries the SAME ``Idempotency-Key`` (generated per call when not given), so a retry never sends
twice. Errors the API answers become :class:`SmsApiError` with the catalogue ``code`` and the
field (``parameter``); a server that stays unreachable raises :class:`SmsTransportError`.
Webhook signatures: :func:`verify_webhook` (``dispatcher.webhooks.verify``).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from dispatcher.webhooks.verify import WebhookVerificationError
from dispatcher.webhooks.verify import verify as verify_webhook

__all__ = [
    "AsyncSmsClient",
    "Message",
    "RecipientError",
    "RetryPolicy",
    "SendResult",
    "SmsApiError",
    "SmsClient",
    "SmsTransportError",
    "WebhookVerificationError",
    "credentials_from_env",
    "verify_webhook",
]

DEFAULT_URL = "http://127.0.0.1:8080"
MAX_RECIPIENTS = 10_000
RETRY_STATUSES = frozenset({409, 429, 500, 502, 503, 504})


class SmsApiError(Exception):
    """The API refused the request (or kept failing): ``status``, ``code``, ``parameter``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        parameter: str | None = None,
        value: Any = None,
        request_id: str | None = None,
        errors: list[RecipientError] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}" + (f" ({parameter})" if parameter else ""))
        self.status = status
        self.code = code
        self.message = message
        self.parameter = parameter
        self.value = value
        self.request_id = request_id
        self.errors = errors or []


class SmsTransportError(SmsApiError):
    """The server could not be reached (connection refused, timeouts) on every attempt."""

    def __init__(self, message: str) -> None:
        super().__init__(0, "unreachable", message)


@dataclass(frozen=True)
class RecipientError:
    """One element of ``errors[]``: a refused recipient or a problem with a field."""

    code: str
    message: str
    parameter: str | None = None
    value: Any = None
    docs: str | None = None
    source: str | None = None

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> RecipientError:
        """Parse an ``errors[]`` element."""
        meta = item.get("meta") or {}
        return cls(
            item.get("code", "unknown"),
            item.get("message", ""),
            meta.get("parameter"),
            meta.get("value"),
            item.get("docs"),
            meta.get("source"),
        )


@dataclass(frozen=True)
class Message:
    """One message (one recipient) as the API shows it."""

    id: str
    external_id: str
    phone_number: str
    status: str
    is_final: bool
    parts: int
    encoding: str
    lane: str
    sender: str = ""
    error_code: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Message:
        """Parse a ``data[]`` element."""
        error = d.get("error") or {}
        return cls(
            id=d["id"],
            external_id=d.get("externalId", ""),
            phone_number=d.get("phoneNumber", ""),
            status=d.get("statusName", ""),
            is_final=bool(d.get("isFinal")),
            parts=int(d.get("numberOfParts") or 0),
            encoding=d.get("encoding", ""),
            lane=d.get("lane", ""),
            sender=d.get("sender", ""),
            error_code=error.get("code"),
            raw=d,
        )


@dataclass
class SendResult:
    """What a send returned: accepted messages and refused recipients."""

    messages: list[Message]
    errors: list[RecipientError]
    request_ids: list[str]
    duplicate: bool = False
    idempotency_key: str = ""

    @property
    def ids(self) -> list[str]:
        """The message ids, in request order."""
        return [m.id for m in self.messages]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry: ``attempts`` in all, delays ``base * 2**n`` (±50 %
    jitter) capped at ``max_delay``; a ``Retry-After`` up to ``max_retry_after`` wins."""

    attempts: int = 4
    base: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1``."""
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.0), self.max_retry_after)
            except ValueError:
                pass  # an HTTP date: fall back to our own backoff
        backoff = min(self.base * 2**attempt, self.max_delay)
        return backoff * random.uniform(0.5, 1.5)


def credentials_from_env(
    env: dict[str, str] | None = None, keys_file: str | None = None
) -> tuple[str, str, str]:
    """``(application_key, authorization, base_url)`` from ``SMSDISPATCH_APP_KEY``,
    ``SMSDISPATCH_AUTHORIZATION`` and ``SMSDISPATCH_URL``, or from a keys file (the
    ``accounts create --write`` format, ``SMSDISPATCH_KEYS_FILE``)."""
    env = dict(os.environ) if env is None else env
    url = env.get("SMSDISPATCH_URL") or DEFAULT_URL
    path = keys_file or env.get("SMSDISPATCH_KEYS_FILE")
    if path:
        with open(path, encoding="utf-8") as fh:
            keys = json.load(fh)
        return keys["Application-Key"], keys["Authorization"], url
    app_key, auth = env.get("SMSDISPATCH_APP_KEY"), env.get("SMSDISPATCH_AUTHORIZATION")
    if not app_key or not auth:
        raise SmsApiError(
            0,
            "no_credentials",
            "set SMSDISPATCH_APP_KEY and SMSDISPATCH_AUTHORIZATION, or a keys file",
        )
    return app_key, auth, url


def _send_body(
    phone_numbers: Sequence[str], message: str, sender: str, options: dict[str, Any]
) -> dict[str, Any]:
    names = {
        "priority": "priority",
        "validity": "validity",
        "schedule_time": "scheduleTime",
        "external_id": "externalId",
        "webhook_url": "webhookUrl",
        "flash": "type",
    }
    body: dict[str, Any] = {"sender": sender, "message": message, "phoneNumbers": phone_numbers}
    for key, value in options.items():
        if key not in names:
            raise TypeError(f"unknown option {key!r}")
        if value is not None:
            body[names[key]] = int(value) if key == "flash" else value
    return body


def _chunks(phone_numbers: str | Sequence[str]) -> list[list[str]]:
    numbers = [phone_numbers] if isinstance(phone_numbers, str) else list(phone_numbers)
    return [numbers[i : i + MAX_RECIPIENTS] for i in range(0, len(numbers), MAX_RECIPIENTS)] or [[]]


def _retryable(resp: httpx.Response) -> bool:
    if resp.status_code == 409:  # only "the same key is still in flight" is worth retrying
        return _first_code(resp) == "idempotency_key_in_flight"
    return resp.status_code in RETRY_STATUSES


def _first_code(resp: httpx.Response) -> str | None:
    try:
        errors = resp.json().get("errors") or []
    except ValueError:
        return None
    return errors[0].get("code") if errors else None


def _raise_for(resp: httpx.Response) -> dict[str, Any]:
    """The JSON body of a 2xx answer, else :class:`SmsApiError`."""
    try:
        body: dict[str, Any] = resp.json()
    except ValueError:
        body = {}
    if resp.is_success:
        return body
    errors = [RecipientError.from_json(e) for e in body.get("errors") or []]
    first = errors[0] if errors else RecipientError("http_error", resp.reason_phrase)
    raise SmsApiError(
        resp.status_code,
        first.code,
        first.message,
        first.parameter,
        first.value,
        (body.get("meta") or {}).get("uniqId"),
        errors,
    )


def _conclude(outcome: httpx.Response | httpx.TransportError) -> dict[str, Any]:
    if isinstance(outcome, httpx.TransportError):
        raise SmsTransportError(f"{type(outcome).__name__}: {outcome}") from outcome
    return _raise_for(outcome)


def _merge(result: SendResult, body: dict[str, Any]) -> None:
    result.messages += [Message.from_json(d) for d in body.get("data") or []]
    result.errors += [RecipientError.from_json(e) for e in body.get("errors") or []]
    meta = body.get("meta") or {}
    result.request_ids.append(str(meta.get("uniqId", "")))
    result.duplicate = result.duplicate or bool(meta.get("duplicate"))


class _Base:
    def __init__(
        self,
        application_key: str,
        authorization: str,
        base_url: str = DEFAULT_URL,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Application-Key": application_key, "Authorization": authorization}
        self.timeout = timeout
        self.retry = retry or RetryPolicy()

    def _retry_in(
        self, attempt: int, outcome: httpx.Response | httpx.TransportError
    ) -> float | None:
        """Seconds before the next attempt, or ``None`` when this outcome is the answer."""
        if attempt == self.retry.attempts - 1:
            return None
        if isinstance(outcome, httpx.TransportError):
            return self.retry.delay(attempt)
        if not _retryable(outcome):
            return None
        return self.retry.delay(attempt, outcome.headers.get("Retry-After"))

    def _requests(
        self,
        phone_numbers: str | Sequence[str],
        message: str,
        sender: str,
        idempotency_key: str | None,
        campaign: str | None,
        options: dict[str, Any],
    ) -> tuple[str, list[tuple[dict[str, Any], dict[str, str]]]]:
        """The POSTs of one send: one per 10,000 recipients, each with its own derived key."""
        key = idempotency_key or uuid.uuid4().hex
        chunks = _chunks(phone_numbers)
        out = []
        for i, chunk in enumerate(chunks):
            headers = {"Idempotency-Key": key if len(chunks) == 1 else f"{key}-{i}"}
            if campaign:
                headers["Smsdispatch-Campaign"] = campaign
            out.append((_send_body(chunk, message, sender, options), headers))
        return key, out


class SmsClient(_Base):
    """Blocking client; use as a context manager or call :meth:`close`."""

    def __init__(self, *args: Any, transport: httpx.BaseTransport | None = None, **kw: Any):
        super().__init__(*args, **kw)
        self._http = httpx.Client(
            base_url=self.base_url, headers=self.headers, timeout=self.timeout, transport=transport
        )

    @classmethod
    def from_env(cls, keys_file: str | None = None, **kw: Any) -> SmsClient:
        """A client configured by :func:`credentials_from_env`."""
        app_key, auth, url = credentials_from_env(keys_file=keys_file)
        return cls(app_key, auth, url, **kw)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One API call with retries; the JSON answer, or :class:`SmsApiError`."""
        for attempt in range(self.retry.attempts):
            try:
                outcome: httpx.Response | httpx.TransportError = self._http.request(
                    method, path, json=body, headers=headers
                )
            except httpx.TransportError as exc:
                outcome = exc
            delay = self._retry_in(attempt, outcome)
            if delay is None:
                return _conclude(outcome)
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
        ``external_id``, ``webhook_url``, ``flash``. Partial success returns normally with
        ``errors``; a request refused as a whole raises :class:`SmsApiError`.
        """
        key, posts = self._requests(
            phone_numbers, message, sender, idempotency_key, campaign, options
        )
        result = SendResult([], [], [], idempotency_key=key)
        for body, headers in posts:
            _merge(result, self.request("POST", "/v2.1/sms", body=body, headers=headers))
        return result

    send_bulk = send_sms  # the same call: many recipients, one text

    def get_message(self, message_id: str) -> Message:
        """One message with its carrier details and timeline (``raw['events']``)."""
        body = self.request("GET", f"/v2.1/sms/{message_id}")
        return Message.from_json(body["data"][0])

    def get_status(self, message_id: str) -> str:
        """The message's status name (``queued`` … ``delivered``)."""
        return self.get_message(message_id).status

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> SmsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncSmsClient(_Base):
    """The same API for asyncio applications."""

    def __init__(self, *args: Any, transport: httpx.AsyncBaseTransport | None = None, **kw: Any):
        super().__init__(*args, **kw)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self.headers, timeout=self.timeout, transport=transport
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One API call with retries; the JSON answer, or :class:`SmsApiError`."""
        for attempt in range(self.retry.attempts):
            try:
                outcome: httpx.Response | httpx.TransportError = await self._http.request(
                    method, path, json=body, headers=headers
                )
            except httpx.TransportError as exc:
                outcome = exc
            delay = self._retry_in(attempt, outcome)
            if delay is None:
                return _conclude(outcome)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

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
        key, posts = self._requests(
            phone_numbers, message, sender, idempotency_key, campaign, options
        )
        result = SendResult([], [], [], idempotency_key=key)
        for body, headers in posts:
            _merge(result, await self.request("POST", "/v2.1/sms", body=body, headers=headers))
        return result

    send_bulk = send_sms

    async def get_message(self, message_id: str) -> Message:
        """See :meth:`SmsClient.get_message`."""
        body = await self.request("GET", f"/v2.1/sms/{message_id}")
        return Message.from_json(body["data"][0])

    async def get_status(self, message_id: str) -> str:
        """See :meth:`SmsClient.get_status`."""
        return (await self.get_message(message_id)).status

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncSmsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
