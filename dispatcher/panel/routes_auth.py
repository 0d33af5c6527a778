"""Login and logout.

The login form carries a CSRF token bound to a short-lived cookie (there is no session yet:
this stops another site from logging a browser into an account of its choosing); the logout
form carries the session's token. Failed logins are rate-limited per username and address.
Logins, failed logins and logouts are security events in the audit log (``login``,
``login.failed``, ``logout``; never the password): a failed one is a platform entry, seen by
operators only, since the name typed may belong to no account.
"""

from __future__ import annotations

import secrets
import time
from typing import Annotated

import structlog
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from dispatcher.panel.web import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    PanelError,
    in_db,
    is_https,
    redirect,
    render,
    state,
    viewer,
)
from dispatcher.store import audit
from dispatcher.store.users import MAX_PASSWORD_LENGTH, authenticate

router = APIRouter(prefix="/panel", include_in_schema=False)
log = structlog.get_logger(component="panel")
MAX_FIELD = 256


def _safe_next(raw: str | None) -> str:
    """Only a path inside the panel (never another host: no open redirect)."""
    if raw and raw.startswith("/panel/") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return "/panel/messages"


def _login_page(
    request: Request, next_url: str, error: str | None = None, status: int = 200, username: str = ""
) -> Response:
    token = secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        status=status,
        title="Sign in",
        login_csrf=token,
        next_url=next_url,
        error=error,
        username=username,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=3600,
        path="/panel/login",
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )
    return response


@router.get("/login")
async def login_form(request: Request, next: str | None = None) -> Response:
    """The login page."""
    return _login_page(request, _safe_next(next))


@router.post("/login")
async def login(
    request: Request,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    """Check the password; on success start a fresh session (never reuse one)."""
    panel = state(request)
    target = _safe_next(next)
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not cookie or not secrets.compare_digest(cookie, csrf_token):
        raise PanelError(
            403,
            "Form expired",
            "This form was not issued to your browser or has expired. Reload the page and "
            "try again.",
        )
    username = username.strip()[:MAX_FIELD]
    password = password[: MAX_PASSWORD_LENGTH + 1]  # longer is never right; bounds argon2
    ip = request.client.host if request.client else "-"
    wait = await panel.limiter.attempt(username, ip)  # counted as failed until it succeeds
    if wait:
        log.warning("panel.login_limited", ip=ip)
        minutes = max(1, round(wait / 60))
        return _login_page(
            request,
            target,
            f"Too many failed attempts. Try again in {minutes} minute{'s' * (minutes != 1)}.",
            429,
            username,
        )
    user = await in_db(request, lambda conn: authenticate(conn, username, password))
    where = f"from {ip}"
    if user is None:
        log.info("panel.login_failed", ip=ip)
        await in_db(
            request,
            lambda c: audit.record(
                c, None, f"panel:{username}", "login.failed", None, where, now=time.time()
            ),
            write=True,
        )
        return _login_page(request, target, "Wrong username or password.", 401, username)
    await panel.limiter.succeeded(username, ip)
    # Recorded before the session exists: no session without its entry.
    await in_db(
        request,
        lambda c: audit.record(
            c, user.account_id, f"panel:{user.username}", "login", None, where, now=time.time()
        ),
        write=True,
    )
    token, _ = await panel.sessions.create(user.id)
    log.info("panel.login", user_id=user.id, account_id=user.account_id)
    response = redirect(target)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        path="/panel",
        httponly=True,
        samesite="lax",
        secure=is_https(request),
    )
    response.delete_cookie(LOGIN_COOKIE, path="/panel/login")
    return response


@router.post("/logout")
async def logout(request: Request, csrf_token: Annotated[str, Form()] = "") -> Response:
    """End the session (CSRF-checked: another site cannot log you out)."""
    who = await viewer(request)
    if not who.session.csrf_ok(csrf_token):
        raise PanelError(403, "Form expired", "Reload the page and try again.", who.user)
    await in_db(
        request,
        lambda c: audit.record(
            c, who.user.account_id, who.actor, "logout", None, None, now=time.time()
        ),
        write=True,
    )
    await state(request).sessions.end(who.session)
    response = redirect("/panel/login")
    response.delete_cookie(SESSION_COOKIE, path="/panel")
    return response
