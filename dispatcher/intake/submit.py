"""Turning a send request into messages: validation, part counting, lane choice.

Plain Python, used by the REST API, the library producer and the CLI alike. Request-level
problems are all collected and raised together as :class:`RequestRefused`; per-recipient
problems (a bad number among good ones) are returned beside the submission, as the original API
does: the good recipients are sent, the bad ones reported.

Longer than 400 lines on purpose: every check of a send request, in the order they are
applied, so the refusals a client can get are read in one file.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from dispatcher.accounts.account import Account
from dispatcher.config import Settings
from dispatcher.contract import Lane, Status
from dispatcher.errors import ApiError
from dispatcher.ids import new_message_id
from dispatcher.links.shorten import Shortener
from dispatcher.routing import current_table
from dispatcher.sms import (
    EmptyMessage,
    InvalidPhoneNumber,
    InvalidSender,
    TooManyParts,
    check_parts,
    normalize,
    validate_sender,
)
from dispatcher.sms.quiet_hours import (
    FOLLOW,
    IGNORE,
    MODES,
    InvalidWindow,
    SendWindow,
    next_open,
    parse_window,
    parse_zones,
    zones_for,
)
from dispatcher.store.records import NewMessage, NewSubmission
from dispatcher.store.senders import NameState, SenderName, may_send
from dispatcher.webhooks.urls import UrlRefused, canonical, check_static

MAX_VALIDITY_MIN = 4320
MAX_SCHEDULE_AHEAD_S = 14 * 24 * 3600
SCHEDULE_SLACK_S = 1.0  # a scheduleTime this close to now is sent at once
_EXTERNAL_ID = re.compile(r"^[\x20-\x7e]{1,128}$")


SENDER_REFUSED = "sender_not_registered"


class RequestRefused(Exception):
    """Nothing was stored; ``errors`` says why (each naming its field)."""

    def __init__(self, errors: list[ApiError]) -> None:
        super().__init__(", ".join(e.code for e in errors))
        self.errors = errors

    @property
    def for_sender(self) -> bool:
        """Refused (among other things) because the account may not send from the name."""
        return any(e.code == SENDER_REFUSED for e in self.errors)

    def explained(self, sender: str, entry: SenderName | None) -> RequestRefused:
        """The same refusal, the sender error saying where the name stands."""
        return RequestRefused(
            [sender_refusal(sender, entry) if e.code == SENDER_REFUSED else e for e in self.errors]
        )


def sender_refusal(sender: str, entry: SenderName | None = None) -> ApiError:
    """The ``sender_not_registered`` error for ``sender``, saying where its request stands."""
    if entry is None:
        why = "is not a sender name of this account: request it with POST /v2.1/sms/senders"
    elif entry.state == NameState.PENDING:
        why = "is waiting for the operator's approval"
    elif entry.state == NameState.REJECTED:
        why = "was rejected" + (f": {entry.reason}" if entry.reason else "")
    else:  # approved, but the policy check ran on an older copy of the account
        why = "was approved a moment ago: send again"
    return ApiError(SENDER_REFUSED, f"{sender} {why}", "sender", sender)


def unpaid_error(phone: str, code: str) -> ApiError:
    """The per-recipient error for a recipient billing refused (``insufficient_balance`` or
    ``no_price``, docs/prices.md)."""
    if code == "no_price":
        why = f"no price for {phone} in the account's price list or the default one"
    else:
        why = f"the account's balance and credit limit cannot pay for {phone}"
    return ApiError(code, why, "phoneNumbers", phone)


def _sender_allowed(account: Account, sender: str) -> bool:
    return may_send(account.sender_policy, account.senders, sender)


@dataclass
class SendRequest:
    """The fields of ``POST /v2.1/sms`` (v2.1 names in comments)."""

    sender: str
    message: str
    phone_numbers: Sequence[str]  # phoneNumbers
    validity: int | None = None  # minutes
    schedule_time: int | None = None  # scheduleTime, unix seconds
    type: int | None = None  # 0 normal, 1 flash
    short_link: bool | None = None  # shortLink
    webhook_url: str | None = None  # webhookUrl
    external_id: str | None = None  # externalId
    priority: bool | None = None  # ours: ask for the priority lane
    time_restriction: str | None = None  # ours (SMSAPI's name): follow | ignore quiet hours
    time_restriction_range: str | None = None  # ours: the send window, HH:MM-HH:MM


@dataclass
class Prepared:
    """A validated submission and the recipients that were refused."""

    submission: NewSubmission
    recipient_errors: list[ApiError] = field(default_factory=list)


def choose_lane(account: Account, wants_priority: bool, recipients: int, threshold: int) -> Lane:
    """Priority only when asked, paid for, and small; everything else is bulk."""
    if wants_priority and account.priority_enabled and recipients <= threshold:
        return Lane.PRIORITY
    return Lane.BULK


def _is_text(value: str) -> bool:
    """Whether ``value`` is storable text (no lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def webhook_url_problem(url: str, allow_private: bool) -> ApiError | None:
    """A per-message ``webhookUrl`` gets every check a registered endpoint gets that needs no
    DNS (:func:`dispatcher.webhooks.urls.check_static`); the API also resolves the name."""
    try:
        if not _is_text(url):  # a lone surrogate (library callers; the API refuses it earlier)
            raise UrlRefused("invalid_url", "not valid Unicode text")
        check_static(url, allow_private)
    except UrlRefused as exc:
        return webhook_url_error(exc, url)
    return None


def webhook_url_error(exc: UrlRefused, url: str) -> ApiError:
    """The API error for a refused ``webhookUrl``: an address we never call has its own code."""
    code = "webhook_url_forbidden" if exc.code == "forbidden_address" else "invalid_webhook_url"
    return ApiError(code, f"webhookUrl: {exc.reason}", "webhookUrl", url)


def _check_request(
    req: SendRequest, account: Account, settings: Settings, now: float
) -> list[ApiError]:
    errors: list[ApiError] = []
    try:
        validate_sender(req.sender)
    except InvalidSender as exc:
        errors.append(ApiError("invalid_sender", exc.message, "sender", req.sender))
    else:
        if not _sender_allowed(account, req.sender):
            errors.append(sender_refusal(req.sender.strip()))
    text = req.message
    if req.short_link and settings.short_link_base and _is_text(text):
        text = shortener(settings).template(text)  # parts are counted on the text as sent
    try:
        check_parts(text, settings.max_parts)
    except EmptyMessage:
        errors.append(ApiError("empty_message", None, "message", ""))
    except TooManyParts as exc:
        errors.append(ApiError("message_too_long", exc.message, "message", None))
    except UnicodeEncodeError:  # a lone surrogate (library callers; the API refuses it earlier)
        errors.append(ApiError("invalid_field", "message is not valid Unicode text", "message"))
    if req.validity is not None and not 1 <= req.validity <= MAX_VALIDITY_MIN:
        errors.append(ApiError("invalid_validity", None, "validity", req.validity))
    if req.schedule_time is not None and not (0 < req.schedule_time <= now + MAX_SCHEDULE_AHEAD_S):
        errors.append(ApiError("invalid_schedule_time", None, "scheduleTime", req.schedule_time))
    if req.type not in (None, 0, 1):
        errors.append(ApiError("invalid_type", None, "type", req.type))
    if req.short_link and not settings.short_link_base:
        errors.append(ApiError("short_link_unsupported", None, "shortLink", True))
    if req.webhook_url is not None:
        problem = webhook_url_problem(req.webhook_url, settings.webhook_allow_private)
        if problem is not None:
            errors.append(problem)
    if req.external_id is not None and not _EXTERNAL_ID.match(req.external_id):
        errors.append(ApiError("invalid_external_id", None, "externalId", req.external_id))
    if req.time_restriction is not None and req.time_restriction not in MODES:
        errors.append(
            ApiError(
                "invalid_field",
                "timeRestriction is follow or ignore",
                "timeRestriction",
                req.time_restriction,
            )
        )
    if req.time_restriction_range is not None:
        try:
            parse_window(req.time_restriction_range)
        except InvalidWindow as exc:
            errors.append(
                ApiError(
                    "invalid_field",
                    f"timeRestrictionRange: {exc.message}",
                    "timeRestrictionRange",
                    req.time_restriction_range,
                )
            )
    if req.priority and not account.priority_enabled:
        errors.append(ApiError("priority_not_enabled", None, "priority", True))
    if not req.phone_numbers:
        errors.append(
            ApiError(
                "missing_field", "phoneNumbers must list at least one number", "phoneNumbers", None
            )
        )
    elif len(req.phone_numbers) > settings.max_recipients:
        errors.append(
            ApiError(
                "too_many_recipients",
                f"at most {settings.max_recipients} phoneNumbers per request",
                "phoneNumbers",
                len(req.phone_numbers),
            )
        )
    return errors


def _recipients(numbers: Sequence[str], region: str | None) -> tuple[list[str], list[ApiError]]:
    good: list[str] = []
    errors: list[ApiError] = []
    seen: set[str] = set()
    for i, raw in enumerate(numbers):
        source = f"phoneNumbers[{i}]"
        try:
            e164 = normalize(raw, region)
        except InvalidPhoneNumber as exc:
            errors.append(
                ApiError("invalid_phone_number", exc.message, "phoneNumbers", raw, source)
            )
            continue
        if e164 in seen:
            errors.append(
                ApiError(
                    "duplicate_phone_number",
                    f"{e164} appears more than once",
                    "phoneNumbers",
                    raw,
                    source,
                )
            )
            continue
        seen.add(e164)
        good.append(e164)
    return good, errors


def unrouteable(
    phones: Sequence[str], lane: str, account: Account, settings: Settings
) -> tuple[list[str], list[ApiError]]:
    """Split ``phones`` into routable ones and ``no_route`` errors (docs/routing.md)."""
    table = current_table(settings)
    good: list[str] = []
    errors: list[ApiError] = []
    for phone in phones:
        if table.routable(phone, lane, account.name):
            good.append(phone)
        else:
            errors.append(
                ApiError(
                    "no_route",
                    f"no carrier connection serves {phone} on the {lane} lane",
                    "phoneNumbers",
                    phone,
                )
            )
    return good, errors


def prepare_personalised(
    account: Account,
    settings: Settings,
    sender: str,
    items: Sequence[tuple[str, str]],
    now: float,
    *,
    validity_min: int | None = None,
    priority: bool = False,
    source: str = "library",
    campaign: str | None = None,
    schedule_at: float | None = None,
    idempotency_key: str | None = None,
) -> Prepared:
    """Many recipients, each with its own text (mail merge); bad rows are reported, not sent.

    ``campaign`` groups the submission in the panel; ``schedule_at`` (unix seconds) holds the
    messages until then; ``idempotency_key`` makes a repeat return the first submission."""
    try:
        validate_sender(sender)
    except InvalidSender as exc:
        raise RequestRefused([ApiError("invalid_sender", exc.message, "sender", sender)]) from None
    if not _sender_allowed(account, sender):
        raise RequestRefused([sender_refusal(sender.strip())])
    lane = choose_lane(account, priority, len(items), settings.bulk_threshold)
    sub = NewSubmission(
        new_message_id(),
        account.id,
        "",
        lane,
        source,
        now,
        idempotency_key=idempotency_key,
        campaign=campaign,
    )
    external_id = uuid.uuid4().hex
    scheduled = schedule_at is not None and schedule_at > now + SCHEDULE_SLACK_S
    start = float(schedule_at) if scheduled and schedule_at is not None else now
    valid_until = start + 60 * (validity_min or settings.default_validity_min)
    errors: list[ApiError] = []
    region = settings.default_region or None
    routes = current_table(settings)
    for i, (raw, text) in enumerate(items):
        try:
            phone = normalize(raw, region)
            info = check_parts(text, settings.max_parts)
        except InvalidPhoneNumber as exc:
            errors.append(
                ApiError("invalid_phone_number", exc.message, "phoneNumbers", raw, f"items[{i}]")
            )
            continue
        except (EmptyMessage, TooManyParts) as exc:
            code = "empty_message" if isinstance(exc, EmptyMessage) else "message_too_long"
            errors.append(ApiError(code, exc.message, "message", None, f"items[{i}]"))
            continue
        if not routes.routable(phone, lane, account.name):
            errors.append(ApiError("no_route", None, "phoneNumbers", phone, f"items[{i}]"))
            continue
        sub.messages.append(
            NewMessage(
                id=new_message_id(),
                account_id=account.id,
                submission_id=sub.id,
                external_id=external_id,
                phone=phone,
                sender=sender.strip(),
                body=text,
                parts=info.parts,
                encoding=str(info.encoding),
                flash=False,
                lane=lane,
                status=Status.SCHEDULED if scheduled else Status.QUEUED,
                created_at=now,
                valid_until=valid_until,
                scheduled_at=start if scheduled else None,
                next_attempt_at=start if scheduled else None,
            )
        )
    if not sub.messages:
        raise RequestRefused([*errors, ApiError("no_valid_recipients", None, "items", None)])
    window = send_window(account, lane, None, None)  # the account's quiet hours
    if window is not None:
        hold_for_window(sub.messages, window, start, settings)
    return Prepared(sub, errors)


def prepare(
    req: SendRequest,
    account: Account,
    settings: Settings,
    now: float,
    *,
    idempotency_key: str | None = None,
    body_hash: str = "",
    source: str = "api",
    campaign: str | None = None,
) -> Prepared:
    """Validate ``req`` and build its submission; raises :class:`RequestRefused`."""
    errors = _check_request(req, account, settings, now)
    if errors:
        raise RequestRefused(errors)
    good, recipient_errors = _recipients(req.phone_numbers, settings.default_region or None)
    if not good:
        raise RequestRefused(
            [*recipient_errors, ApiError("no_valid_recipients", None, "phoneNumbers", None)]
        )
    lane = choose_lane(account, bool(req.priority), len(good), settings.bulk_threshold)
    good, unrouted = unrouteable(good, lane, account, settings)
    if unrouted:
        recipient_errors.extend(unrouted)
        if not good:
            raise RequestRefused(
                [*recipient_errors, ApiError("no_valid_recipients", None, "phoneNumbers", None)]
            )
    sub_id = new_message_id()
    external_id = req.external_id or uuid.uuid4().hex
    validity_s = 60 * (req.validity or settings.default_validity_min)
    scheduled = req.schedule_time is not None and req.schedule_time > now + SCHEDULE_SLACK_S
    start = float(req.schedule_time) if scheduled and req.schedule_time else now
    status = Status.SCHEDULED if scheduled else Status.QUEUED
    sub = NewSubmission(
        id=sub_id,
        account_id=account.id,
        body_hash=body_hash,
        lane=lane,
        source=source,
        created_at=now,
        external_id=req.external_id,
        idempotency_key=idempotency_key,
        campaign=campaign,
    )
    sender = req.sender.strip()
    texts = shortener(settings).per_recipient(req.message, len(good)) if req.short_link else []
    info = check_parts(texts[0].text if texts else req.message, settings.max_parts)
    lifetime = settings.short_link_lifetime_s
    if account.link_lifetime_s is not None:
        lifetime = account.link_lifetime_s
    # Stored in the form the webhook sender connects to (checked above: cannot fail here).
    webhook_url = None if req.webhook_url is None else canonical(req.webhook_url).url
    for i, phone in enumerate(good):
        sub.messages.append(
            NewMessage(
                id=new_message_id(),
                account_id=account.id,
                submission_id=sub_id,
                external_id=external_id,
                phone=phone,
                sender=sender,
                body=texts[i].text if texts else req.message,
                parts=info.parts,
                encoding=str(info.encoding),
                flash=req.type == 1,
                lane=lane,
                status=status,
                created_at=now,
                valid_until=start + validity_s,
                scheduled_at=start if scheduled else None,
                next_attempt_at=start if scheduled else None,
                webhook_url=webhook_url,
                original_body=req.message if texts else None,
                links=texts[i].links if texts else (),
                links_expire_at=start + lifetime if texts else 0.0,
            )
        )
    window = send_window(account, lane, req.time_restriction, req.time_restriction_range)
    if window is not None:
        hold_for_window(sub.messages, window, start, settings)
    return Prepared(sub, recipient_errors)


def send_window(
    account: Account, lane: str, mode: str | None, window: str | None
) -> SendWindow | None:
    """The send window a submission follows (docs/campaigns.md, "Quiet hours"): the
    request's, else the account's; none when the request says ``ignore``, or on the priority
    lane unless it says ``follow`` (an OTP is wanted now, whatever the hour)."""
    text = window or account.send_window
    if text is None or mode == IGNORE or (lane == Lane.PRIORITY and mode != FOLLOW):
        return None
    return parse_window(text)  # checked: the request's above, the account's when it was set


def hold_for_window(
    msgs: Sequence[NewMessage], window: SendWindow, start: float, settings: Settings
) -> None:
    """Give ``msgs`` their window, and hold those whose window is closed at ``start`` until it
    opens (``scheduled``). The sender checks again when it claims them."""
    overrides = parse_zones(settings.send_window_zones)
    for m in msgs:
        m.window_start, m.window_end = window.start, window.end
        opens = next_open(start, window, zones_for(m.phone, overrides))
        if opens > start:
            m.status = Status.SCHEDULED
            m.next_attempt_at = opens


def shortener(settings: Settings) -> Shortener:
    """The shortener for the configured base and code length."""
    return Shortener(settings.short_link_base, settings.short_link_code_length)
