"""``POST /v2.1/sms`` without FastAPI's per-request machinery, same endpoint, same dependencies.

Profiled at 32 concurrent clients, FastAPI's routing, dependency solving and parameter
validation took more CPU than the endpoint itself (docs/benchmarks.md, scenario E). This
middleware answers the send route by calling the route's own dependencies and endpoint
directly, planned once from the route's ``dependant`` (so dependencies added to the route, its
router or the app are honoured), and renders exceptions with the app's own exception handlers.

Anything the plan does not cover goes the ordinary way, before any dependency has run: a body
that is not a JSON object valid for the model, a missing required header, dependency overrides,
or a route whose dependencies use something other than async functions, the request, headers
and the body model (then the fast path is off for the process, and says so in the log).

Add it before the other middlewares (innermost): everything they do still applies.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from fastapi import params
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from dispatcher.api.guard import replaying

log = structlog.get_logger(component="api")

Scope = dict[str, Any]
_SUPPORTED_HEADER_TYPES: tuple[Any, ...] = (str, str | None)


@dataclass
class _Plan:
    """How to call one dependant: its dependencies first, then itself."""

    call: Callable[..., Awaitable[Any]]
    request_param: str | None = None
    headers: list[tuple[str, str, bool, Any]] = field(default_factory=list)  # name, key, required
    deps: list[tuple[str, _Plan]] = field(default_factory=list)
    use_cache: bool = True
    body: tuple[str, type[BaseModel]] | None = None


class _NotCovered(Exception):
    """The route uses something the plan does not reproduce."""


def _plan(dependant: Any, top: bool) -> _Plan:
    call = dependant.call
    if call is None or not inspect.iscoroutinefunction(call):
        raise _NotCovered(f"{getattr(call, '__name__', call)} is not an async function")
    if (
        dependant.path_params
        or dependant.query_params
        or dependant.cookie_params
        or dependant.websocket_param_name
        or dependant.http_connection_param_name
        or dependant.response_param_name
        or dependant.background_tasks_param_name
        or dependant.security_scopes_param_name
        or dependant.own_oauth_scopes
    ):
        raise _NotCovered(f"{call.__name__} takes parameters other than headers and the body")
    plan = _Plan(call, dependant.request_param_name, use_cache=dependant.use_cache)
    for f in dependant.header_params:
        info = f.field_info
        if not isinstance(info, params.Header) or info.annotation not in _SUPPORTED_HEADER_TYPES:
            raise _NotCovered(f"header {f.name} is not a plain string")
        if "_" in f.alias:
            raise _NotCovered(f"header {f.name} relies on underscore conversion")
        required = info.is_required()
        plan.headers.append((f.name, f.alias.lower(), required, None if required else info.default))
    if dependant.body_params:
        body = dependant.body_params
        model = body[0].field_info.annotation if len(body) == 1 else None
        if not top or not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise _NotCovered("the body is not one pydantic model")
        plan.body = (body[0].name, model)
    for sub in dependant.dependencies:
        if sub.name is None:  # route- or app-level dependencies([...]) are not supported
            raise _NotCovered("unnamed dependency")
        plan.deps.append((sub.name, _plan(sub, top=False)))
    return plan


def _find_route(router: Any, path: str, method: str) -> tuple[APIRoute, Any] | None:
    """The route serving ``method path`` and its effective dependant (with the dependencies of
    every ``include_router`` above it). FastAPI 0.16x keeps included routers as branches whose
    effective routes are built lazily; older versions list plain ``APIRoute`` objects."""
    for candidate in getattr(router, "routes", ()):
        for route, effective_path, methods, dependant in _effective(candidate):
            if effective_path == path and method in methods:
                return route, dependant
    return None


def _effective(candidate: Any) -> list[tuple[APIRoute, str, set[str], Any]]:
    if isinstance(candidate, APIRoute):
        return [(candidate, candidate.path, candidate.methods or set(), candidate.dependant)]
    branches = getattr(candidate, "effective_candidates", None)
    if branches is None:
        return []
    out: list[tuple[APIRoute, str, set[str], Any]] = []
    for item in branches():
        original = getattr(item, "original_route", None)
        if isinstance(original, APIRoute):
            if getattr(item, "dependant", None) is not None:
                out.append((original, item.path, set(item.methods or ()), item.dependant))
        else:
            out.extend(_effective(item))
    return out


class FastSend:
    """Serves ``method path`` through a direct call plan; everything else passes through."""

    def __init__(self, app: Any, path: str = "/v2.1/sms", method: str = "POST") -> None:
        self.app = app
        self.path = path
        self.method = method
        self._route: APIRoute | None = None
        self._plan: _Plan | None = None
        self._planned = False

    def _prepare(self, scope: Scope) -> None:
        self._planned = True
        found = _find_route(getattr(scope.get("app"), "router", None), self.path, self.method)
        if found is None:
            log.warning("fast_send.off", path=self.path, reason="route not found")
            return
        route, dependant = found
        try:
            self._plan = _plan(dependant, top=True)
            self._route = route
        except _NotCovered as exc:
            log.warning("fast_send.off", path=self.path, reason=str(exc))

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        """ASGI entry point."""
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != self.method:
            await self.app(scope, receive, send)
            return
        if not self._planned:
            self._prepare(scope)
        fastapi_app = scope.get("app")
        if self._plan is None or getattr(fastapi_app, "dependency_overrides", None):
            await self.app(scope, receive, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
        replay = replaying(body, receive)
        headers: dict[str, str] = {}
        for k, v in scope["headers"]:
            headers.setdefault(k.decode("latin-1"), v.decode("latin-1"))
        model = self._body(body)
        if model is None or not self._headers_present(self._plan, headers):
            await self.app(scope, replay, send)  # the ordinary way reports what is wrong
            return
        scope["route"] = self._route
        scope["endpoint"] = self._route.endpoint if self._route else None
        scope["path_params"] = {}
        request = Request(scope, replay)
        try:
            response = await self._run(self._plan, request, headers, model, {})
        except Exception as exc:
            response = await self._handle(fastapi_app, request, exc)
        await response(scope, replay, send)

    def _body(self, body: bytes) -> BaseModel | None:
        assert self._plan is not None and self._plan.body is not None
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(data, dict):
            return None
        try:
            return self._plan.body[1].model_validate(data)
        except ValidationError:
            return None

    def _headers_present(self, plan: _Plan, headers: dict[str, str]) -> bool:
        if any(required and key not in headers for _, key, required, _ in plan.headers):
            return False
        return all(self._headers_present(p, headers) for _, p in plan.deps)

    async def _run(
        self,
        plan: _Plan,
        request: Request,
        headers: dict[str, str],
        model: BaseModel,
        cache: dict[Any, Any],
    ) -> Any:
        kwargs: dict[str, Any] = {}
        for name, sub in plan.deps:
            if not sub.use_cache:
                kwargs[name] = await self._run(sub, request, headers, model, cache)
                continue
            if sub.call not in cache:  # FastAPI's per-request dependency cache
                cache[sub.call] = await self._run(sub, request, headers, model, cache)
            kwargs[name] = cache[sub.call]
        if plan.request_param:
            kwargs[plan.request_param] = request
        for name, key, _required, default in plan.headers:
            kwargs[name] = headers.get(key, default)
        if plan.body is not None:
            kwargs[plan.body[0]] = model
        return await plan.call(**kwargs)

    async def _handle(self, fastapi_app: Any, request: Request, exc: Exception) -> Any:
        handlers = getattr(fastapi_app, "exception_handlers", {})
        for cls in type(exc).__mro__:
            handler = handlers.get(cls)
            if handler is not None:
                result = handler(request, exc)
                return await result if inspect.isawaitable(result) else result
        raise exc
