"""`create_app`: the console's FastAPI app (pages, the JSON API beside them, static files),
its error handlers and security headers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opsgate import __version__
from opsgate.errors import OpsgateError
from opsgate.server._alerts import alert_api, alert_pages
from opsgate.server._api import api
from opsgate.server._auth import identify
from opsgate.server._budgets_routes import budget_api, budget_pages
from opsgate.server._console import Console, ConsoleError
from opsgate.server._evals_routes import eval_api, eval_pages
from opsgate.server._login import login_page
from opsgate.server._pages import pages
from opsgate.server._render import templates
from opsgate.store import describe_db_error

__all__ = ["create_app"]

_HEADINGS = {
    400: "Bad request",
    401: "Log in",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    500: "Internal error",
    503: "Database unavailable",
}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def _answer(request: Request, status: int, message: str) -> Response:
    """One error, as JSON under /api, else as a page (the login form for a 401)."""
    if request.url.path.startswith("/api"):
        challenge = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse(
            {"error": message, "status": status}, status_code=status, headers=challenge
        )
    console: Console = request.app.state.console
    if status == 401:
        return login_page(request, console, message=message, status=status)
    try:  # the page's header names who is logged in, when that can still be told
        who = identify(request) if status != 503 else None
    except (ConsoleError, OpsgateError, SQLAlchemyError):
        who = None
    return templates.TemplateResponse(
        request,
        "error.html",
        {
            "who": who,
            "status": status,
            "heading": _HEADINGS.get(status, "Error"),
            "message": message,
        },
        status_code=status,
    )


class _SecurityHeaders:
    """Adds the security headers to every answer (a plain ASGI middleware: Starlette's
    ``BaseHTTPMiddleware`` streams each body through a task and a queue, a cost on every
    request for four headers)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", _CSP)
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "no-referrer"
                headers["X-Frame-Options"] = "DENY"
                if not static:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _handlers(app: FastAPI) -> None:
    async def console_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ConsoleError)
        return _answer(request, exc.status, exc.message)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        parts = []
        for error in exc.errors()[:5]:
            where = ".".join(str(p) for p in error.get("loc", ())[1:]) or "request"
            parts.append(f"`{where}`: {error.get('msg', 'invalid')}")
        return _answer(request, 400, "; ".join(parts) or "invalid request")

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        status = exc.status_code
        return _answer(request, status, "no such page" if status == 404 else str(exc.detail))

    async def database_error(request: Request, exc: Exception) -> Response:
        console: Console = request.app.state.console
        try:
            message = describe_db_error(console.store().engine, exc)
        except ConsoleError as error:
            message = error.message
        return _answer(request, 503, message)

    async def opsgate_error(request: Request, exc: Exception) -> Response:
        return _answer(request, 400, str(exc))

    async def unexpected(request: Request, exc: Exception) -> Response:
        return _answer(request, 500, "something went wrong in the console; it was not shown")

    app.add_exception_handler(ConsoleError, console_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(SQLAlchemyError, database_error)
    app.add_exception_handler(OpsgateError, opsgate_error)
    app.add_exception_handler(Exception, unexpected)


def create_app(console: Console | None = None) -> FastAPI:
    """The console app over ``console`` (default: the configured database)."""
    console = console or Console()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        console.close()

    app = FastAPI(
        title="opsgate console",
        version=__version__,
        description="What the console's pages show, as JSON. Authenticate with "
        "`Authorization: Bearer <token>` (`opsgate tokens create`).",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served by /api/openapi.json, behind a token
        lifespan=lifespan,
    )
    app.state.console = console
    app.include_router(pages)
    app.include_router(api)
    app.include_router(alert_pages)
    app.include_router(alert_api)
    app.include_router(eval_pages)
    app.include_router(eval_api)
    app.include_router(budget_pages)
    app.include_router(budget_api)
    app.mount("/static", StaticFiles(directory=Path(__file__).with_name("static")), name="static")
    _handlers(app)

    app.add_middleware(_SecurityHeaders)
    return app
