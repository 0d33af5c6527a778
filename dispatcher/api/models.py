"""Request and response models of the v2.1 API (they also document the OpenAPI schema)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dispatcher.errors import CATALOGUE


class SendSmsBody(BaseModel):
    """Body of ``POST /v2.1/sms``: the original's fields, plus our ``priority``."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "sender": "ACME",
                    "message": "Your code is 123456",
                    "phoneNumbers": ["+48111222333"],
                    "validity": 10,
                    "externalId": "order-1234",
                    "priority": True,
                }
            ]
        },
    )

    sender: str = Field(
        description="Sender ID: 1-11 alphanumeric characters, or a number.", examples=["ACME"]
    )
    message: str = Field(
        description="The text. GSM-7 or Unicode is chosen automatically.",
        examples=["Your code is 123456"],
    )
    phoneNumbers: list[str] = Field(
        description="Recipients in E.164 (`+48111222333`); common spellings are accepted. "
        "At most 10,000 per request.",
        examples=[["+48111222333"]],
    )
    validity: int | None = Field(
        None, description="Minutes the message stays valid (1-4320).", examples=[4320]
    )
    scheduleTime: int | None = Field(
        None,
        description="Send later: unix seconds, at most 14 days ahead.",
        examples=[1767225600],
    )
    type: int | None = Field(None, description="0 normal (default), 1 flash.", examples=[0])
    shortLink: bool | None = Field(
        None,
        description="`true`: every http/https URL in the text is replaced by a short link of "
        "the server's redirect service, one per recipient, so each click is counted for its "
        "message (docs/short-links.md). Parts and encoding are counted on the shortened text "
        "(`numberOfParts`); each message of the answer lists its `shortLinks`. Refused "
        "(`short_link_unsupported`) when the server has no short-link address configured.",
        examples=[False],
    )
    webhookUrl: str | None = Field(
        None,
        description="Per-message delivery-report URL (http/https).",
        examples=["https://example.com/sms/reports"],
    )
    externalId: str | None = Field(
        None,
        description="Your unique id (1-128 chars). A repeat returns the original "
        "messages and sends nothing. Generated when absent.",
        examples=["order-1234"],
    )
    priority: bool | None = Field(
        None,
        description="smsdispatch extension: send through the priority lane (OTP, 2FA, "
        "alerts). Needs the account's priority add-on; requests to more than 10 recipients "
        "always use the bulk lane.",
        examples=[True],
    )
    timeRestriction: str | None = Field(
        None,
        description="smsdispatch extension, quiet hours (docs/campaigns.md): `follow` holds "
        "each message until its send window opens in the recipient's local time (within its "
        "validity), `ignore` sends at any hour. Default: `follow` on the bulk lane when a "
        "window is set (here or the account's), `ignore` on the priority lane.",
        examples=["follow"],
    )
    timeRestrictionRange: str | None = Field(
        None,
        description="smsdispatch extension: the send window, `HH:MM-HH:MM` in the "
        "recipient's local time (zone from the number), e.g. `08:00-21:00`; `22:00-06:00` "
        "crosses midnight. Default: the account's window, if it has one.",
        examples=["08:00-21:00"],
    )


class ErrorMeta(BaseModel):
    """Where the error is."""

    parameter: str | None = Field(
        None, description="The request field (or header) at fault.", examples=["phoneNumbers"]
    )
    source: str | None = Field(
        None, description="The exact place, with the index in a list.", examples=["phoneNumbers[1]"]
    )
    value: str | None = Field(
        None,
        description="The offending value as a string, numbers and booleans in their JSON "
        'spelling (`"5000"`, `"true"`); truncated to 200 characters.',
        examples=["+48 12"],
    )


class ErrorItem(BaseModel):
    """One element of ``errors[]``."""

    code: str = Field(
        description="Stable code; see the error catalogue (docs/errors.md).",
        examples=["invalid_phone_number"],
    )
    title: str = Field(description="The code's short title.", examples=["Invalid phone number"])
    message: str = Field(
        description="What is wrong with this request, in words.",
        examples=["the number is too short"],
    )
    meta: ErrorMeta = Field(
        description="Where the error is (its fields are null for request-wide errors)."
    )
    docs: str = Field(
        description="The code's entry in the error catalogue (its status, meaning and fix).",
        examples=["/docs/errors#invalid-phone-number"],
    )


class MessageError(BaseModel):
    """Why a message failed (lessons-from-peers convention)."""

    code: str = Field(
        description="Machine-readable reason (the carrier's or ours).",
        examples=["unknown_subscriber"],
    )
    description: str | None = Field(
        None, description="The reason in words.", examples=["number not in service"]
    )
    permanent: bool | None = Field(
        None, description="True when sending again will fail the same way.", examples=[True]
    )


class MessageView(BaseModel):
    """One message (one recipient)."""

    id: str = Field(
        description="Our message id (UUIDv7).", examples=["0192f7a4-8b1c-7cde-8f00-1234567890ab"]
    )
    externalId: str = Field(
        description="Your id from the request, or one we generated.", examples=["order-1234"]
    )
    phoneNumber: str = Field(description="The recipient in E.164.", examples=["+48111222333"])
    sender: str = Field(description="The sender ID it is sent from.", examples=["ACME"])
    status: int = Field(description="v2.1 numeric status (docs/api.md).", examples=[1])
    statusName: str = Field(
        description="Our status: scheduled, queued, retrying, sending, sent, delivered, "
        "undelivered, expired, rejected, failed.",
        examples=["queued"],
    )
    isFinal: bool = Field(
        description="True when the status will not change again.", examples=[False]
    )
    statusTime: int = Field(
        description="When it entered its status: unix seconds (the original's int64).",
        examples=[1795694400],
    )
    createTime: int = Field(
        description="When it was accepted: unix seconds (the original's int64).",
        examples=[1795694400],
    )
    smsPrice: int = Field(
        description="The message's price, all parts, in the currency's minor unit (grosze, "
        "cents), an integer as the original's; 0 with billing off (docs/prices.md).",
        examples=[7],
    )
    currency: int = Field(
        description="ISO 4217 numeric currency of smsPrice (985 = PLN), an integer as the "
        "original's; 0 with billing off (docs/prices.md).",
        examples=[985],
    )
    numberOfParts: int = Field(
        description="SMS parts it takes (each is charged against the rate limit).", examples=[1]
    )
    encoding: str = Field(description="gsm7 or ucs2.", examples=["gsm7"])
    lane: str = Field(description="priority or bulk.", examples=["priority"])
    scheduleTime: int | None = Field(
        None,
        description="When it is due, for scheduled messages: unix seconds.",
        examples=[1795766400],
    )
    sentTime: int | None = Field(
        None, description="When the carrier accepted it: unix seconds.", examples=[1795694400]
    )
    statusAt: str = Field(
        description="`statusTime` with milliseconds (ISO 8601 UTC).",
        examples=["2026-11-26T12:00:00.000Z"],
    )
    createdAt: str = Field(
        description="`createTime` with milliseconds (ISO 8601 UTC).",
        examples=["2026-11-26T12:00:00.000Z"],
    )
    scheduledAt: str | None = Field(
        None,
        description="`scheduleTime` with milliseconds (ISO 8601 UTC).",
        examples=["2026-11-27T08:00:00.000Z"],
    )
    sentAt: str | None = Field(
        None,
        description="`sentTime` with milliseconds (ISO 8601 UTC).",
        examples=["2026-11-26T12:00:00.412Z"],
    )
    error: MessageError | None = Field(
        None, description="Why it failed; null unless it failed, expired or was rejected."
    )


class Meta(BaseModel):
    """The envelope's ``meta``."""

    status: int = Field(description="The HTTP status.", examples=[200])
    uniqId: str = Field(
        description="Request id: quote it to support.", examples=["5f2b8c1d9e0a4b7c"]
    )
    numberOfData: int = Field(description="Elements in `data`.", examples=[1])
    numberOfErrors: int = Field(description="Elements in `errors`.", examples=[0])
    sentSms: int = Field(0, description="Messages accepted (send answers).", examples=[1])
    notSentSms: int = Field(0, description="Recipients refused (send answers).", examples=[0])
    accountBalance: str | None = Field(
        None,
        description="The account's balance as a decimal string, as the original's "
        '("123.45"); null with billing off or for an account without one (docs/prices.md).',
        examples=[None],
    )
    total: int | None = Field(None, description="Matching rows (listings).", examples=[1])


class Envelope(BaseModel):
    """Every answer: ``{data, errors, meta}``."""

    data: list[MessageView] = Field(description="The messages.")
    errors: list[ErrorItem] = Field(description="What was refused, one element per problem.")
    meta: Meta = Field(description="Counts and the request id.")


class ErrorEnvelope(BaseModel):
    """An error answer: ``data`` is empty, ``errors`` says what is wrong and how to fix it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "data": [],
                    "errors": [
                        {
                            "code": "invalid_sender",
                            "title": "Invalid sender",
                            "message": "at most 11 characters",
                            "meta": {
                                "parameter": "sender",
                                "source": "sender",
                                "value": "VeryLongSenderName",
                            },
                            "docs": "/docs/errors#invalid-sender",
                        }
                    ],
                    "meta": {
                        "status": 400,
                        "uniqId": "5f2b8c1d9e0a4b7c",
                        "numberOfData": 0,
                        "numberOfErrors": 1,
                        "accountBalance": None,
                        "sentSms": 0,
                        "notSentSms": 0,
                    },
                }
            ]
        }
    )

    data: list[Any] = Field(description="Always empty in an error answer.", examples=[[]])
    errors: list[ErrorItem] = Field(description="One element per problem.")
    meta: Meta = Field(description="The HTTP status, the request id and the counts.")


def error_responses(*codes: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status its codes can answer with, and the envelope."""
    by_status: dict[int, list[str]] = {}
    for c in codes:
        by_status.setdefault(CATALOGUE[c].status, []).append(c)
    return {
        status: {
            "model": ErrorEnvelope,
            "description": "Error codes: " + ", ".join(f"`{c}`" for c in cs),
        }
        for status, cs in sorted(by_status.items())
    }
