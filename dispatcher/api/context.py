"""What the API process holds for its lifetime, and the dependencies that reach it."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Header, Request
from sqlalchemy import Connection, Engine

from dispatcher.accounts.account import Account, Authenticator
from dispatcher.accounts.quotas import AccountQuotas
from dispatcher.api.callbacks import CallbackInbox
from dispatcher.api.webhook_targets import WebhookTargets
from dispatcher.config import Settings
from dispatcher.errors import ApiError
from dispatcher.intake.broker import Broker
from dispatcher.intake.writer import SubmissionWriter
from dispatcher.lookup import NumberLookup
from dispatcher.store.db import run

T = TypeVar("T")


@dataclass
class ApiContext:
    """Built at start-up (lifespan), never at import."""

    settings: Settings
    engine: Engine
    broker: Broker
    writer: SubmissionWriter
    auth: Authenticator
    callbacks: CallbackInbox
    quotas: AccountQuotas | None = None  # per-account request rate and daily cap
    webhook_targets: WebhookTargets | None = None  # per-message webhookUrl: DNS and the cap
    lookups: NumberLookup | None = None  # number look-ups (POST /v2.1/sms/hlr)


async def get_context(request: Request) -> ApiContext:
    """The process's context (``async``: FastAPI runs a plain ``def`` dependency in a thread)."""
    ctx: ApiContext = request.app.state.ctx
    return ctx


async def in_log(ctx: ApiContext, work: Callable[[Connection], T], write: bool = False) -> T:
    """``work`` on a connection of the log (in a transaction when ``write``), off the event
    loop. Its :class:`~dispatcher.store.db.StoreUnavailable` reaches the app's one handler
    (a 503 with ``Retry-After``)."""
    return await asyncio.to_thread(run, ctx.engine, work, write)


def request_id(request: Request) -> str:
    """The id the guard middleware gave this request (``meta.uniqId``)."""
    return str(request.scope.get("state", {}).get("request_id", "-"))


async def current_account(
    ctx: Annotated[ApiContext, Depends(get_context)],
    application_key: Annotated[
        str | None, Header(alias="Application-Key", description="Your application key.")
    ] = None,
    authorization: Annotated[
        str | None, Header(description="Your authorization token (no `Bearer` prefix).")
    ] = None,
) -> Account:
    """The calling account; 401 unless both headers form a valid pair."""
    if not application_key or not authorization:
        missing = "Application-Key" if not application_key else "Authorization"
        raise ApiError("unauthorized", f"the {missing} header is required", missing, None)
    cached = ctx.auth.cached(application_key, authorization)
    account = (
        cached
        if cached is not ctx.auth.MISS
        else await asyncio.to_thread(ctx.auth.authenticate, application_key, authorization)
    )
    if account is None or not isinstance(account, Account):
        raise ApiError("unauthorized", "unknown or revoked key pair", None, None)
    if ctx.quotas is not None:
        throttled = await ctx.quotas.requests.check(account)
        if throttled is not None:
            retry = max(1, math.ceil(throttled.retry_after))
            raise ApiError(
                "rate_limited",
                f"over the account's request rate; retry in {retry} s",
                headers={"Retry-After": str(retry)},
            )
    return account


AccountDep = Annotated[Account, Depends(current_account)]
ContextDep = Annotated[ApiContext, Depends(get_context)]
