"""The panel: the customer's workspace and support's view, server-rendered pages under
``/panel`` in the API process.

:func:`mount_panel` adds its routes, its static files and its error handling to the API app.
Pages are Jinja2 templates with local CSS and one small local script (copy buttons, the
campaign preview) that no page needs to work; see ``docs/panel.md``. Roles: support reads,
admin manages its account, operator runs the platform (:class:`dispatcher.store.users.Role`).
"""

from __future__ import annotations

import os

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from dispatcher.config import Settings
from dispatcher.panel.routes_account import router as account_router
from dispatcher.panel.routes_auth import router as auth_router
from dispatcher.panel.routes_balance import router as balance_router
from dispatcher.panel.routes_campaign_new import router as campaign_new_router
from dispatcher.panel.routes_dashboard import router as dashboard_router
from dispatcher.panel.routes_export import router as export_router
from dispatcher.panel.routes_lists import router as lists_router
from dispatcher.panel.routes_messages import router as messages_router
from dispatcher.panel.routes_operator import router as operator_router
from dispatcher.panel.routes_prices import router as prices_router
from dispatcher.panel.routes_senders import router as senders_router
from dispatcher.panel.routes_webhooks import router as webhooks_router
from dispatcher.panel.sessions import SessionsUnavailable
from dispatcher.panel.web import (
    HERE,
    LoginRequired,
    PanelError,
    PanelState,
    login_redirect,
    not_found,
    redirect,
    render,
    viewer,
)


def mount_panel(app: FastAPI, settings: Settings) -> PanelState:
    """Serve the panel from ``app``; the caller closes the returned state at shutdown."""
    panel = PanelState(settings)
    app.state.panel = panel
    app.mount(
        "/panel/static",
        StaticFiles(directory=os.path.join(HERE, "static")),
        name="panel-static",
    )
    app.include_router(auth_router)
    app.include_router(export_router)
    app.include_router(messages_router)
    app.include_router(campaign_new_router)  # before lists: /campaigns/{kind}/{key} is wide
    app.include_router(lists_router)
    app.include_router(account_router)
    app.include_router(webhooks_router)
    app.include_router(senders_router)
    app.include_router(operator_router)
    app.include_router(prices_router)
    app.include_router(balance_router)
    app.include_router(dashboard_router)

    @app.get("/panel", include_in_schema=False)
    async def home() -> Response:
        return redirect("/panel/messages")

    @app.get("/panel/{rest:path}", include_in_schema=False)
    async def unknown(request: Request, rest: str) -> Response:
        raise not_found((await viewer(request)).user)

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, _exc: LoginRequired) -> Response:
        return login_redirect(request)

    @app.exception_handler(PanelError)
    async def _error(request: Request, exc: PanelError) -> Response:
        return render(
            request,
            "error.html",
            status=exc.status,
            title=exc.title,
            text=exc.text,
            error_user=exc.user,
        )

    @app.exception_handler(SessionsUnavailable)
    async def _unavailable(request: Request, _exc: SessionsUnavailable) -> Response:
        response = render(
            request,
            "error.html",
            status=503,
            title="Temporarily unavailable",
            text="The panel cannot reach its session store. Try again in a minute.",
            error_user=None,
        )
        response.headers["Retry-After"] = "30"
        return response

    return panel
