"""The conversation with the API, without I/O: request bodies and queries, when to retry, and
answers read into results or errors. :mod:`.sync` and :mod:`.aio` only move the bytes, so the
two clients cannot behave differently.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Literal, Self, TypedDict, TypeVar
from urllib.parse import quote

import httpx

from smsdispatch_client.credentials import credentials_from_env
from smsdispatch_client.errors import SmsApiError, SmsTransportError
from smsdispatch_client.models import Message, Page, RecipientError, SendResult
from smsdispatch_client.retry import RetryPolicy
from smsdispatch_client.version import API_PREFIX, __version__

SMS_PATH = f"{API_PREFIX}/sms"
STATUSES_PATH = f"{SMS_PATH}/statuses"
MAX_RECIPIENTS = 10_000  # per POST (the API's limit): larger sends are split
MAX_PAGE = 1_000  # the API's largest ``limit``
RETRY_STATUSES = frozenset({409, 429, 500, 502, 503, 504})
USER_AGENT = f"smsdispatch-client/{__version__} python-httpx/{httpx.__version__}"
SEND_OPTIONS = {
    "priority": "priority",
    "validity": "validity",
    "schedule_time": "scheduleTime",
    "external_id": "externalId",
    "webhook_url": "webhookUrl",
    "flash": "type",
    "short_link": "shortLink",
    "time_restriction": "timeRestriction",
    "time_restriction_range": "timeRestrictionRange",
}

Outcome = httpx.Response | httpx.TransportError
T = TypeVar("T")


class ListFilters(TypedDict, total=False):
    """Filters of the listings (``GET /v2.1/sms`` and ``/statuses``); all optional.

    ``phone_number``, ``status`` and ``sender`` take one value or several (``status``: names
    such as ``"delivered"`` or v2.1 codes such as ``21``; at most 10 senders). ``date_from`` and
    ``date_to`` bound the creation time (inclusive): an aware ``datetime``, unix seconds, or an
    ISO 8601 string. ``order_by`` is ``createTime`` (default), ``externalId`` or ``status``;
    newest (or last) first unless ``descending=False``.
    """

    external_id: str
    phone_number: str | Sequence[str]
    status: str | int | Sequence[str | int]
    sender: str | Sequence[str]
    date_from: datetime | float | str
    date_to: datetime | float | str
    order_by: Literal["createTime", "externalId", "status"]
    descending: bool


def _joined(value: str | int | Sequence[str | int]) -> str:
    if isinstance(value, str | int):
        return str(value)
    return ",".join(str(v) for v in value)


def _when(value: datetime | float | str, name: str) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{name}: use a timezone-aware datetime (the API's times are UTC)")
        return repr(value.timestamp())
    return value if isinstance(value, str) else repr(float(value))


def list_query(offset: int, limit: int, filters: ListFilters) -> dict[str, str]:
    """The query string of a listing page; bad arguments are refused before any request."""
    given: dict[str, Any] = {k: v for k, v in filters.items() if v is not None}
    unknown = sorted(set(given) - set(ListFilters.__annotations__))
    if unknown:
        raise TypeError(f"unknown filter {unknown[0]!r}")
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit: between 1 and {MAX_PAGE}")
    if offset < 0:
        raise ValueError("offset: 0 or more")
    query = {"offset": str(offset), "limit": str(limit)}
    for key, name in (("external_id", "externalId"), ("order_by", "orderBy")):
        if key in given:
            query[name] = str(given[key])
    for key, name in (("phone_number", "phoneNumber"), ("status", "status"), ("sender", "sender")):
        if key in given:
            query[name] = _joined(given[key])
    for key, name in (("date_from", "dateFrom"), ("date_to", "dateTo")):
        if key in given:
            query[name] = _when(given[key], key)
    query["orderDirection"] = "DESC" if given.get("descending", True) else "ASC"
    return query


def message_path(message_id: str) -> str:
    """``/v2.1/sms/{id}``, the id escaped so that it can only name a message."""
    if not message_id:
        raise ValueError("message_id: empty")
    return f"{SMS_PATH}/{quote(message_id, safe='')}"


def send_body(
    phone_numbers: Sequence[str], message: str, sender: str, options: dict[str, Any]
) -> dict[str, Any]:
    """The JSON body of ``POST /v2.1/sms``; ``options`` named as in :meth:`SmsClient.send_sms`."""
    body: dict[str, Any] = {"sender": sender, "message": message, "phoneNumbers": phone_numbers}
    for key, value in options.items():
        if key not in SEND_OPTIONS:
            raise TypeError(f"unknown option {key!r}")
        if value is not None:
            body[SEND_OPTIONS[key]] = int(value) if key == "flash" else value
    return body


def _chunks(phone_numbers: str | Sequence[str]) -> list[list[str]]:
    numbers = [phone_numbers] if isinstance(phone_numbers, str) else list(phone_numbers)
    return [numbers[i : i + MAX_RECIPIENTS] for i in range(0, len(numbers), MAX_RECIPIENTS)] or [[]]


def _first_code(resp: httpx.Response) -> str | None:
    try:
        errors = resp.json().get("errors") or []
        return str(errors[0].get("code")) if errors else None
    except (ValueError, AttributeError, TypeError):
        return None


def _retryable(resp: httpx.Response) -> bool:
    if resp.status_code == 409:  # only "the same key is still in flight" is worth retrying
        return _first_code(resp) == "idempotency_key_in_flight"
    return resp.status_code in RETRY_STATUSES


def _raise_for(resp: httpx.Response) -> dict[str, Any]:
    """The JSON body of a 2xx answer, else :class:`SmsApiError`."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if resp.is_success:
        if not isinstance(body, dict):
            raise SmsApiError(resp.status_code, "invalid_response", "the answer is not JSON")
        return body
    body = body if isinstance(body, dict) else {}
    errors = [RecipientError.from_json(e) for e in body.get("errors") or [] if isinstance(e, dict)]
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


def conclude(outcome: Outcome) -> dict[str, Any]:
    """The last attempt's outcome as the JSON answer, or the error it means."""
    if isinstance(outcome, httpx.TransportError):
        raise SmsTransportError(f"{type(outcome).__name__}: {outcome}") from outcome
    return _raise_for(outcome)


def read(parse: Callable[[], T]) -> T:
    """Run ``parse`` over a 2xx answer; an answer of the wrong shape is an :class:`SmsApiError`
    (``invalid_response``), never a ``KeyError`` from inside the client."""
    try:
        return parse()
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise SmsApiError(200, "invalid_response", f"unexpected answer: {exc!r}") from exc


def read_message(body: dict[str, Any], message_id: str) -> Message:
    """The message of a ``GET /v2.1/sms/{id}`` answer, which must be the one asked for."""
    message = read(lambda: Message.from_json(body["data"][0]))
    if message.id != message_id:
        raise SmsApiError(404, "not_found", "no such message", "id", message_id)
    return message


def read_page(body: dict[str, Any], offset: int, limit: int) -> Page:
    """A listing's answer as a :class:`Page`."""
    return read(lambda: Page.from_json(body, offset, limit))


def page_for(error: SmsApiError, offset: int, limit: int) -> Page:
    """The empty page that a listing's 404 ``no_results`` means; any other error is raised."""
    if error.code != "no_results":
        raise error
    return Page.empty(offset, limit, error.request_id or "")


def merge(result: SendResult, body: dict[str, Any]) -> None:
    """Add one POST's answer to the result of a send."""

    def parse() -> None:
        result.messages += [Message.from_json(d) for d in body.get("data") or []]
        result.errors += [RecipientError.from_json(e) for e in body.get("errors") or []]
        meta = body.get("meta") or {}
        result.request_ids.append(str(meta.get("uniqId", "")))
        result.duplicate = result.duplicate or bool(meta.get("duplicate"))

    read(parse)


class PageWalk:
    """Offset paging over a listing that may change while it is walked.

    The next page starts where the last one ended. With the default order (newest first),
    messages created during the walk push older ones from one page onto the next: those
    repeats are dropped (the ids of the previous page are remembered). A message whose status
    changes out of a ``status`` filter during the walk can be missed; pass ``date_to`` for a
    fixed set.
    """

    def __init__(self, page_size: int, filters: ListFilters) -> None:
        if not 1 <= page_size <= MAX_PAGE:
            raise ValueError(f"page_size: between 1 and {MAX_PAGE}")
        list_query(0, page_size, filters)  # refuse bad filters before the first request
        self.page_size = page_size
        self.filters = filters
        self.offset: int | None = 0
        self._previous: set[str] = set()

    def query(self) -> dict[str, str] | None:
        """The next page's query, ``None`` when the walk is over."""
        if self.offset is None:
            return None
        return list_query(self.offset, self.page_size, self.filters)

    def take(self, page: Page) -> Page:
        """Record ``page``; it is returned without the repeats of the previous one."""
        fresh = [m for m in page.messages if m.id not in self._previous]
        self._previous = {m.id for m in page.messages}
        self.offset = page.next_offset
        return replace(page, messages=fresh)


class Core:
    """What both clients share: configuration, the retry decision, the send's requests."""

    def __init__(
        self,
        application_key: str,
        authorization: str,
        base_url: str,
        timeout: float,
        retry: RetryPolicy | None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {
            "Application-Key": application_key,
            "Authorization": authorization,
            "User-Agent": USER_AGENT,
        }
        self.timeout = timeout
        self.retry = retry or RetryPolicy()

    @classmethod
    def from_env(cls, keys_file: str | None = None, **kw: Any) -> Self:
        """A client configured by :func:`credentials_from_env`; ``kw`` as in the constructor."""
        app_key, auth, url = credentials_from_env(keys_file=keys_file)
        return cls(app_key, auth, url, **kw)

    def retry_in(self, attempt: int, outcome: Outcome) -> float | None:
        """Seconds before the next attempt, or ``None`` when this outcome is the answer."""
        if attempt >= self.retry.attempts - 1:
            return None
        if isinstance(outcome, httpx.TransportError):
            return self.retry.delay(attempt)
        if not _retryable(outcome):
            return None
        return self.retry.delay(attempt, outcome.headers.get("Retry-After"))

    def send_requests(
        self,
        phone_numbers: str | Sequence[str],
        message: str,
        sender: str,
        idempotency_key: str | None,
        campaign: str | None,
        options: dict[str, Any],
    ) -> tuple[SendResult, list[tuple[dict[str, Any], dict[str, str]]]]:
        """An empty result and the POSTs of one send: one per 10,000 recipients, each with its
        own key derived from the send's ``Idempotency-Key``."""
        key = idempotency_key or uuid.uuid4().hex
        chunks = _chunks(phone_numbers)
        posts = []
        for i, chunk in enumerate(chunks):
            headers = {"Idempotency-Key": key if len(chunks) == 1 else f"{key}-{i}"}
            if campaign:
                headers["Smsdispatch-Campaign"] = campaign
            posts.append((send_body(chunk, message, sender, options), headers))
        return SendResult([], [], [], idempotency_key=key), posts
