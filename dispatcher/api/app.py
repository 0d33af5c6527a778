"""The FastAPI application: lifespan resources, error envelopes, health endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from dispatcher import __version__
from dispatcher.accounts.account import Authenticator
from dispatcher.accounts.quotas import AccountQuotas
from dispatcher.api import metrics
from dispatcher.api.callbacks import CallbackInbox
from dispatcher.api.context import ApiContext, request_id
from dispatcher.api.docs_page import install as install_docs
from dispatcher.api.envelope import JsonResponse, error_response
from dispatcher.api.fast_send import FastSend
from dispatcher.api.guard import RequestGuard
from dispatcher.api.proxies import TrustedProxies, parse_networks
from dispatcher.api.routes_carrier import router as carrier_router
from dispatcher.api.routes_control import router as control_router
from dispatcher.api.routes_inbound import router as inbound_router
from dispatcher.api.routes_lookup import router as lookup_router
from dispatcher.api.routes_senders import router as senders_router
from dispatcher.api.routes_sms import UNAVAILABLE, router
from dispatcher.api.webhook_targets import WebhookTargets
from dispatcher.config import Settings
from dispatcher.contract import Lane
from dispatcher.errors import ApiError
from dispatcher.intake.broker import Broker
from dispatcher.intake.writer import SubmissionWriter
from dispatcher.lookup import NumberLookup
from dispatcher.ops.health import check_database
from dispatcher.panel import mount_panel
from dispatcher.routing import current_table
from dispatcher.store.db import StoreUnavailable, make_engine
from dispatcher.store.prices import PriceBookCache

log = structlog.get_logger(component="api")


class OrjsonSchemaResponse(JSONResponse):
    """:class:`JsonResponse`'s rendering, as a ``JSONResponse`` subclass: FastAPI documents a
    route's ``response_model`` only for those (else its 200 schema says ``string``)."""

    render = JsonResponse.render


def build_context(settings: Settings) -> ApiContext:
    """Open the engine, the broker and the writer for one API process."""
    current_table(settings)  # an invalid connections file stops the start (ConfigError)
    engine = make_engine(settings.database_url, pool_size=8)
    broker = Broker(settings.redis_url)
    writer = SubmissionWriter(
        engine,
        broker,
        chunk_sizes={Lane.BULK: settings.chunk_size, Lane.PRIORITY: 100},
        max_rows=settings.writer_max_rows,
        prices=PriceBookCache(engine, settings.prices_reload_s) if settings.billing else None,
        fair=settings.bulk_fairness,
    )
    quotas = AccountQuotas(settings, engine)
    return ApiContext(
        settings,
        engine,
        broker,
        writer,
        Authenticator(engine, settings.auth_cache_ttl_s),
        CallbackInbox(engine, broker, settings.callback_lease_s),
        quotas,
        WebhookTargets(engine, settings),
        NumberLookup(settings, quotas.client),  # its cache shares the quotas' Redis client
    )


def _validation_errors(exc: RequestValidationError) -> list[ApiError]:
    out: list[ApiError] = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        where, path = (loc[0], loc[1:]) if loc else ("body", [])
        etype = err.get("type", "")
        msg = str(err.get("msg", "invalid value"))
        if etype == "json_invalid":
            out.append(ApiError("invalid_json", "the body is not valid JSON", "body", None))
            continue
        if not path:
            out.append(ApiError("invalid_json", "the body must be a JSON object", "body", None))
            continue
        parameter = path[0]
        source = parameter + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in path[1:])
        value = err.get("input") if etype != "missing" else None
        if where == "query":
            out.append(ApiError("invalid_query", msg, parameter, value, source))
        elif where == "header":
            out.append(ApiError("invalid_field", msg, parameter, None, source))
        elif etype == "missing":
            out.append(
                ApiError("missing_field", f"{parameter} is required", parameter, None, source)
            )
        else:
            out.append(ApiError("invalid_field", msg, parameter, value, source))
    return out or [ApiError("invalid_json")]


def create_app(settings: Settings | None = None, context: ApiContext | None = None) -> FastAPI:
    """The API. Resources are opened in the lifespan, not here."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = context or build_context(settings)
        ctx.writer.start()
        app.state.ctx = ctx
        log.info("api.started", port=settings.api_port)
        try:
            yield
        finally:
            ctx.writer.stop()
            if ctx.lookups is not None:
                await ctx.lookups.close()
            if ctx.quotas is not None:
                await ctx.quotas.close()
            ctx.broker.close()
            ctx.engine.dispose()
            await panel.close()

    app = FastAPI(
        title="smsdispatch",
        version=__version__,
        summary="SMS API compatible with MessageFlow SMS API v2.1",
        lifespan=lifespan,
        default_response_class=OrjsonSchemaResponse,
        # The stock docs pages load their assets from a CDN: docs_page serves an offline one.
        docs_url=None,
        redoc_url=None,
    )
    app.include_router(carrier_router)
    app.include_router(inbound_router)  # before the sms router: /v2.1/sms/inbound ≠ /{id}
    app.include_router(senders_router)  # likewise /v2.1/sms/senders
    app.include_router(lookup_router)
    app.include_router(control_router)  # POST /v2.1/sms/{id}/cancel beside the sms router
    app.include_router(router)
    panel = mount_panel(app, settings)  # the support panel under /panel (docs/panel.md)
    install_docs(app)  # /docs, /docs/errors, /docs/snippets; completes /openapi.json

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JsonResponse:
        headers = UNAVAILABLE if exc.status == 503 else exc.headers
        return error_response(request_id(request), [exc], headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JsonResponse:
        return error_response(request_id(request), _validation_errors(exc), status=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JsonResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        if code is None:
            code = "invalid_field" if exc.status_code < 500 else "internal_error"
        return error_response(request_id(request), [ApiError(code)], status=exc.status_code)

    @app.exception_handler(StoreUnavailable)
    async def _store_down(request: Request, exc: StoreUnavailable) -> JsonResponse:
        # The one answer to the log's errors, wherever in a request they arise (authentication
        # included): unreachable (connections cut, the database refusing them) is a 503 the
        # client retries. Any other database error is a bug: a 500, logged with its stack,
        # not hidden behind "retry later".
        if not exc.outage:
            return await _crash(request, exc)
        log.warning("api.store_unavailable", error=str(exc))
        err = ApiError("service_unavailable", "the message log is unreachable")
        return error_response(request_id(request), [err], headers=UNAVAILABLE)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JsonResponse:
        log.exception("api.unhandled", error=type(exc).__name__)
        return error_response(request_id(request), [ApiError("internal_error")])

    @app.get("/healthz", tags=["Operations"], summary="Liveness")
    async def healthz() -> dict[str, Any]:
        """The process answers."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["Operations"],
        summary="Readiness: Redis and database reachable",
        responses={503: {"description": "Redis or the database does not answer"}},
    )
    async def readyz(request: Request) -> JsonResponse:
        """200 when Redis and the database answer, else 503 naming what failed."""
        ctx: ApiContext = request.app.state.ctx

        def check() -> dict[str, str]:
            out = {"database": check_database(ctx.engine)}
            try:
                ctx.broker.queue_lengths()
                out["redis"] = "ok"
            except Exception as exc:
                out["redis"] = type(exc).__name__
            return out

        checks = await asyncio.to_thread(check)
        ok = all(v == "ok" for v in checks.values())
        return JsonResponse(
            {"status": "ok" if ok else "unavailable", "checks": checks},
            status_code=200 if ok else 503,
        )

    app.add_route("/metrics", metrics.metrics_endpoint, include_in_schema=False)
    # First added, so innermost: sends skip FastAPI's routing and dependency solving (CPU-bound
    # accept path, docs/benchmarks.md, scenario E) and pass through every other middleware.
    app.add_middleware(FastSend)
    app.add_middleware(RequestGuard, max_body=settings.max_body_bytes)
    app.add_middleware(metrics.MetricsMiddleware)  # sees the guard's 413/415
    # Outermost: forwarded headers from trusted proxies only, before anything reads the client.
    parse_networks(settings.trusted_proxies)  # a bad entry stops the start, not a request
    app.add_middleware(TrustedProxies, trusted=settings.trusted_proxies)
    return app
