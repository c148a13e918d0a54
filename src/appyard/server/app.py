"""``create_app(settings)``: the FastAPI application, its error handlers and background work."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from appyard.errors import ApiError
from appyard.server.db.engine import Database
from appyard.server.db.migrate import upgrade
from appyard.server.db.stats import STATS_INTERVAL_S, refresh_statistics
from appyard.server.guard import (
    BodyTooLarge,
    Guard,
    error_response,
    failure_response,
    worker_runner,
)
from appyard.server.notifier import Notifier, PostgresListener
from appyard.server.relay import Relay
from appyard.server.request_grants import RequestGrants
from appyard.server.routes import accounts, agents, ecosystem, files, pipelines, projects, tasks
from appyard.server.routes import apps as app_pages
from appyard.server.routes import requests as session_requests
from appyard.server.routes import tunnel as agent_tunnel
from appyard.server.routes.deps import ServerContext
from appyard.server.services.accounts import bootstrap_admin
from appyard.server.services.agents import sweep_lost
from appyard.server.settings import Settings
from appyard.server.storage import ReleaseStore
from appyard.server.tunnel import TunnelLimits, TunnelRegistry
from appyard.web import STATIC_DIR

log = logging.getLogger("appyard.server")
API = "/api/v1"
#: the UI page: its own scripts and styles only (no inline code: an injected text cannot run),
#: talking to this server only, never framed
UI_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def _field_of(loc: tuple[Any, ...]) -> str:
    """``("body", "items", 3, "annotation")`` -> ``items[3].annotation``: where the request
    part is said once (first), and list positions read as in Python."""
    parts = list(loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc)
    out = ""
    for x in parts:
        out += f"[{x}]" if isinstance(x, int) else f"{'.' if out else ''}{x}"
    return out or ".".join(str(x) for x in loc)


async def _sweeper(ctx: ServerContext) -> None:
    """Marks silent agents lost; a timer inside the server, not a client polling it.

    It first lets one TTL pass: no agent could reach a server that was down, so after a
    restart (an upgrade, a crash) each gets a full TTL to come back before its sessions are
    called lost.
    """
    await asyncio.sleep(ctx.settings.agent_ttl_s)

    def once() -> None:
        with ctx.db.session() as s:
            lost = sweep_lost(s, ttl_s=ctx.settings.agent_ttl_s)
        if lost:
            log.warning("agents lost (no poll for %.0f s): %s", ctx.settings.agent_ttl_s, lost)

    while True:
        try:
            await anyio.to_thread.run_sync(once)
        except Exception:
            log.exception("sweeping lost agents failed; trying again")
        await asyncio.sleep(ctx.settings.sweep_interval_s)


def _refresh_statistics(db: Database) -> None:
    """SQLite: ANALYZE the tables that grew (or shrank) tenfold since their last analysis
    (``db/stats.py``); a failure is logged, never fatal."""
    try:
        analyzed = refresh_statistics(db.engine)
    except Exception:
        log.exception("refreshing the query planner's statistics failed; trying again later")
        return
    if analyzed:
        log.info("analyzed for the query planner: %s", ", ".join(analyzed))
        db.dispose()  # connections read the statistics when they open: let them reopen


async def _statistics(db: Database) -> None:
    """Keeps SQLite's planner statistics in step with the tables as they grow."""
    while True:
        await asyncio.sleep(STATS_INTERVAL_S)
        await anyio.to_thread.run_sync(_refresh_statistics, db)


#: the detail of FastAPI's 400 for a body its JSON parsing failed on otherwise than as invalid
#: JSON (a document nested past the parser's recursion limit)
FASTAPI_BODY_UNPARSED = "There was an error parsing the body"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    notifier = Notifier()
    db = Database(
        settings.db_url,
        notifier,
        {"log_ceiling": settings.log_ceiling},
        lock_timeout_s=settings.db_lock_timeout_s,
    )
    ctx = ServerContext(
        settings=settings, db=db, notifier=notifier, releases=ReleaseStore(settings.releases_dir)
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        notifier.bind(asyncio.get_running_loop())
        await anyio.to_thread.run_sync(upgrade, db.engine, settings.files_dir)
        await anyio.to_thread.run_sync(_refresh_statistics, db)
        if settings.admin_token_file is not None:
            token_file = settings.admin_token_file

            def boot() -> None:
                with db.session() as s:
                    if bootstrap_admin(s, token_file):
                        log.info("created user admin; its token is in %s", token_file)

            await anyio.to_thread.run_sync(boot)
        listener = None
        if db.is_postgres:
            dsn = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            listener = PostgresListener(dsn, notifier)
            listener.start()
        sweeper = asyncio.create_task(_sweeper(ctx))
        engine = asyncio.create_task(pipelines.engine_loop(ctx))
        statistics = asyncio.create_task(_statistics(db)) if not db.is_postgres else None
        try:
            yield
        finally:
            for task in (sweeper, engine, statistics):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if listener is not None:
                listener.stop()
            await app.state.relay.aclose()
            ctx.workers.shutdown(wait=False)
            db.dispose()

    app = FastAPI(
        title="appyard",
        version="0.1.0",
        description="Publish apps and run them as sessions on your own agents.",
        lifespan=lifespan,
        # the docs' sections in this order, whatever order the routers are matched in
        openapi_tags=[
            {"name": name}
            for name in (
                "meta",
                "accounts",
                "ecosystem",
                "agents",
                "tasks",
                "pipelines",
                "projects",
                "files",
            )
        ],
    )
    app.state.ctx = ctx
    # the agents' tunnels connected to this process: requests into sessions ride them
    app.state.tunnels = TunnelRegistry(
        TunnelLimits(
            window=settings.tunnel_window,
            chunk=settings.tunnel_chunk_bytes,
            per_session=settings.max_requests_per_session,
            per_tunnel=settings.max_requests_per_agent,
            ws_message=settings.max_ws_message_bytes,
        )
    )
    # requests into sessions let through before skip the router (routes/requests.py); the
    # guard in front of them has checked that a token came and capped the body
    app.state.request_grants = RequestGrants(notifier)
    # with several replicas: requests into sessions whose agent's tunnel is on another one
    app.state.relay = Relay(db, settings.replica_url, ctx.workers)
    app.add_middleware(
        session_requests.FastSendRequest,
        api=API,
        settings=settings,
        tunnels=app.state.tunnels,
        grants=app.state.request_grants,
    )
    app.add_middleware(
        Guard, settings=settings, db=db, api=API, run_in_worker=worker_runner(ctx.workers)
    )
    # on an app page's own origin, only that page is served (routes/apps.py)
    app.add_middleware(app_pages.AppsHostGuard, apps_origin=settings.apps_origin)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)  # a 429 says when to come back: Retry-After

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        if first.get("type") == "json_invalid":
            ctx = first.get("ctx")
            reason = ctx.get("error", "") if isinstance(ctx, dict) else ""
            return JSONResponse(
                {
                    "error": {
                        "code": "invalid",
                        "message": f"body: the request body is not valid JSON ({reason})",
                        "field": "body",
                    }
                },
                status_code=422,
            )
        field = _field_of(tuple(first.get("loc", ())))
        message = f"{field}: {first.get('msg', 'invalid')}" if field else str(first.get("msg"))
        body = {
            "error": {
                "code": "invalid",
                "message": message,
                "field": field,
                "details": {
                    "errors": [
                        {"field": _field_of(tuple(e.get("loc", ()))), "message": e.get("msg")}
                        for e in errors
                    ]
                },
            }
        }
        return JSONResponse(body, status_code=422)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return failure_response(exc, request.method, request.url.path, settings.retry_after_s)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == FASTAPI_BODY_UNPARSED:
            # FastAPI's answer to a JSON body its parser gave up on (nested past its depth)
            body = {
                "error": {
                    "code": "invalid",
                    "message": "body: the request body cannot be read as JSON (nested too "
                    "deeply, or malformed); send a flatter document",
                    "field": "body",
                }
            }
            return JSONResponse(body, status_code=422)
        message = (
            f"No such endpoint: {request.method} {request.url.path}; see /docs"
            if exc.status_code == 404
            else str(exc.detail)
        )
        body = {
            "error": {"code": "not_found" if exc.status_code == 404 else "http", "message": message}
        }
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    # a busy database (503 + Retry-After), a full disk (507), a NUL PostgreSQL refused (422):
    # answered here, so the connection stays open; anything else is a logged 500
    async def _infrastructure(request: Request, exc: Exception) -> JSONResponse:
        return failure_response(
            exc,
            request.method,
            request.url.path,
            settings.retry_after_s,
            request.scope.get("query_string", b""),
        )

    for kind in (DBAPIError, PoolTimeoutError, OSError):
        app.add_exception_handler(kind, _infrastructure)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        # only what escapes the guard middleware itself reaches here (it answers the rest)
        return failure_response(exc, request.method, request.url.path, settings.retry_after_s)

    @app.get("/", include_in_schema=False)
    def root() -> FileResponse:
        # the web UI: one page of static modules; routes live in the URL's fragment
        return FileResponse(STATIC_DIR / "index.html", headers=UI_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/health", include_in_schema=False)
    @app.get(f"{API}/health", tags=["meta"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    # a request is matched against the routes in order: the sessions' and agents' routes,
    # which nearly every request is for, first (no two routers share a path)
    for module in (tasks, agents, session_requests, agent_tunnel):
        app.include_router(module.router, prefix=API)
    app.include_router(accounts.public, prefix=API)
    for module in (accounts, ecosystem, pipelines, projects, files):
        app.include_router(module.router, prefix=API)
    # running apps' own web pages, through their agents' tunnels
    app.include_router(app_pages.api_router, prefix=API)
    app.include_router(app_pages.router)
    return app
