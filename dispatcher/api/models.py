"""Request and response models of the v2.1 API (they also document the OpenAPI schema)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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
        description="Link shortening: not available yet, `true` is refused.",
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


class ErrorMeta(BaseModel):
    """Where the error is."""

    parameter: str | None = Field(None, examples=["phoneNumbers"])
    source: str | None = Field(None, examples=["phoneNumbers[1]"])
    value: Any = Field(None, examples=["+48 12"])


class ErrorItem(BaseModel):
    """One element of ``errors[]``."""

    code: str = Field(
        description="Stable code; see docs/errors.md.", examples=["invalid_phone_number"]
    )
    title: str = Field(examples=["Invalid phone number"])
    message: str = Field(examples=["the number is too short"])
    meta: ErrorMeta
    docs: str = Field(examples=["docs/errors.md#invalid-phone-number"])


class MessageError(BaseModel):
    """Why a message failed (lessons-from-peers convention)."""

    code: str = Field(examples=["unknown_subscriber"])
    description: str | None = Field(None, examples=["number not in service"])
    permanent: bool | None = Field(None, examples=[True])


class MessageView(BaseModel):
    """One message (one recipient)."""

    id: str = Field(
        description="Our message id (UUIDv7).", examples=["0192f7a4-8b1c-7cde-8f00-1234567890ab"]
    )
    externalId: str = Field(examples=["order-1234"])
    phoneNumber: str = Field(examples=["+48111222333"])
    sender: str = Field(examples=["ACME"])
    status: int = Field(description="v2.1 numeric status (see README).", examples=[1])
    statusName: str = Field(
        description="Our status: scheduled, queued, retrying, sending, sent, delivered, "
        "undelivered, expired, rejected, failed.",
        examples=["queued"],
    )
    isFinal: bool = Field(examples=[False])
    statusTime: str = Field(examples=["2026-11-26T12:00:00.000Z"])
    createTime: str = Field(examples=["2026-11-26T12:00:00.000Z"])
    numberOfParts: int = Field(examples=[1])
    encoding: str = Field(description="gsm7 or ucs2.", examples=["gsm7"])
    lane: str = Field(description="priority or bulk.", examples=["priority"])
    scheduleTime: str | None = Field(None, examples=[None])
    sentTime: str | None = Field(None, examples=[None])
    error: MessageError | None = None


class Meta(BaseModel):
    """The envelope's ``meta``."""

    status: int = Field(description="The HTTP status.", examples=[200])
    uniqId: str = Field(
        description="Request id: quote it to support.", examples=["5f2b8c1d9e0a4b7c"]
    )
    numberOfData: int = Field(examples=[1])
    numberOfErrors: int = Field(examples=[0])
    sentSms: int | None = Field(None, examples=[1])
    notSentSms: int | None = Field(None, examples=[0])
    total: int | None = Field(None, description="Matching rows (listings).", examples=[1])


class Envelope(BaseModel):
    """Every answer: ``{data, errors, meta}``."""

    data: list[MessageView]
    errors: list[ErrorItem]
    meta: Meta
