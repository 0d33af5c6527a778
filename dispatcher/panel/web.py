"""What every panel page shares: the per-process state, rendering with security headers,
the logged-in user, and the exceptions that become a login redirect or an error page."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import Connection, Engine

from dispatcher.config import Settings
from dispatcher.panel import words
from dispatcher.panel.sessions import LoginLimiter, Session, SessionStore
from dispatcher.redis_clients import async_client
from dispatcher.store.db import StoreUnavailable, run
from dispatcher.store.users import PanelUser, Role, load_user

HERE = os.path.dirname(os.path.abspath(__file__))
SESSION_COOKIE = "smsd_panel"
LOGIN_COOKIE = "smsd_panel_login"
T = TypeVar("T")
# No inline scripts or styles anywhere: the policy can forbid them outright.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class LoginRequired(Exception):
    """No valid session: answered with a redirect to the login page."""


class PanelError(Exception):
    """An error page (404 for anything not in the user's account, 403, 429, 503)."""

    def __init__(self, status: int, title: str, text: str, user: PanelUser | None = None):
        super().__init__(title)
        self.status = status
        self.title = title
        self.text = text
        self.user = user


def not_found(user: PanelUser | None) -> PanelError:
    """The one answer for "absent" and "another account's": they must look the same."""
    return PanelError(404, "Not found", "There is nothing at this address in your account.", user)


@dataclass
class Viewer:
    """The logged-in user of a request and their session (for CSRF tokens)."""

    user: PanelUser
    session: Session

    @property
    def is_admin(self) -> bool:
        """Admins (and operators, in their own account) manage the account and see codes."""
        return self.user.role in (Role.ADMIN, Role.OPERATOR)

    @property
    def is_operator(self) -> bool:
        """Operators run the platform: every account's sender names, limits, new accounts."""
        return self.user.role is Role.OPERATOR

    @property
    def actor(self) -> str:
        """How the audit log and the sender-name decisions name this user."""
        return f"panel:{self.user.username}"


class PanelState:
    """Built once per API process, when the panel is mounted (no connection opens here)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis = async_client(settings.redis_url)
        self.sessions = SessionStore(self.redis, settings.panel_session_ttl_s)
        self.limiter = LoginLimiter(
            self.redis,
            settings.panel_login_attempts,
            settings.panel_login_ip_attempts,
            settings.panel_login_window_s,
        )
        self.templates = Environment(
            loader=FileSystemLoader(os.path.join(HERE, "templates")),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters.update(when=words.when, iso=words.iso, ms=words.ms)
        self.templates.globals.update(
            status_words=words.status_words,
            status_tone=words.STATUS_TONE,
            event_words=words.event_words,
            report_words=words.report_words,
        )

    async def close(self) -> None:
        """Close the Redis pool (API shutdown)."""
        await self.redis.aclose()


def state(request: Request) -> PanelState:
    """The process's panel state."""
    panel: PanelState = request.app.state.panel
    return panel


async def in_db(request: Request, work: Callable[[Connection], T], write: bool = False) -> T:
    """Run ``work`` with a connection (in a transaction when ``write``), off the event loop."""
    engine: Engine = request.app.state.ctx.engine
    try:
        return await asyncio.to_thread(run, engine, work, write)
    except StoreUnavailable:
        raise PanelError(
            503, "Temporarily unavailable", "The message log does not answer. Try again soon."
        ) from None


def is_https(request: Request) -> bool:
    """Served over HTTPS: the connection's scheme, or ``X-Forwarded-Proto`` from a trusted
    proxy (applied by :mod:`dispatcher.api.proxies`; from anyone else it does not count)."""
    return request.url.scheme == "https"


async def viewer(request: Request) -> Viewer:
    """The logged-in user; :class:`LoginRequired` otherwise (also for a disabled user)."""
    panel = state(request)
    session = await panel.sessions.load(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise LoginRequired()
    user = await in_db(request, lambda conn: load_user(conn, session.user_id))
    if user is None:
        await panel.sessions.end(session)
        raise LoginRequired()
    return Viewer(user, session)


async def admin_viewer(request: Request, csrf_token: str | None = None) -> Viewer:
    """The logged-in admin (or operator) of the account; a 403 page for support. With
    ``csrf_token`` (every POST passes the form's), the token is checked first."""
    who = await viewer(request)
    if csrf_token is not None:
        check_csrf(who, csrf_token)
    if not who.is_admin:
        raise PanelError(
            403,
            "Admins only",
            "This page is for the admins of the account. Support users can read messages, "
            "campaigns and the suppression list.",
            who.user,
        )
    return who


async def operator_viewer(request: Request, csrf_token: str | None = None) -> Viewer:
    """The logged-in platform operator; a 403 page for everyone else."""
    who = await viewer(request)
    if csrf_token is not None:
        check_csrf(who, csrf_token)
    if not who.is_operator:
        raise PanelError(
            403, "Operators only", "This page is for the operators of the platform.", who.user
        )
    return who


def check_csrf(who: Viewer, posted: str) -> None:
    """A 403 "Form expired" page unless the form posted the session's token."""
    if not who.session.csrf_ok(posted):
        raise PanelError(
            403, "Form expired", "Reload the page and submit the form again.", who.user
        )


def render(
    request: Request,
    template: str,
    status: int = 200,
    who: Viewer | None = None,
    **context: Any,
) -> HTMLResponse:
    """A page with the security headers."""
    html = (
        state(request)
        .templates.get_template(template)
        .render(
            request=request,
            viewer=who,
            user=who.user if who else None,
            csrf=who.session.csrf if who else None,
            path=request.url.path,
            **context,
        )
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def redirect(url: str) -> RedirectResponse:
    """303 See Other (after a POST, the browser GETs ``url``)."""
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


def login_redirect(request: Request) -> Response:
    """Send an anonymous browser to the login page, remembering where it wanted to go."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return redirect("/panel/login?next=" + quote(target, safe=""))
