"""What every route needs: the server context and "authenticate, then run in one transaction"."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated, TypeVar

from fastapi import Path, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from appyard.errors import AuthenticationError
from appyard.schemas.common import MAX_ID
from appyard.server.db.engine import Database
from appyard.server.notifier import Notifier
from appyard.server.security import Principal
from appyard.server.services.accounts import authenticate
from appyard.server.settings import Settings
from appyard.server.storage import ReleaseStore

T = TypeVar("T")

#: ids in paths and queries: positive 64-bit integers (a larger one is a 422, not a crash)
PathId = Annotated[int, Path(ge=1, le=MAX_ID)]
QueryId = Annotated[int, Query(ge=1, le=MAX_ID)]


#: a request waiting for SQLite's write lock holds one; with the sync routes' own threads (anyio's
#: 40) they stay near the connection pool's size (20 + 20 overflow per engine)
WORKER_THREADS = 20


@dataclass
class ServerContext:
    settings: Settings
    db: Database
    notifier: Notifier
    releases: ReleaseStore
    #: the threads async routes run their database work in
    workers: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(WORKER_THREADS, "appyard-db")
    )
    #: each agent's team (it never changes): a poll knows its team's queue key without a read
    agent_teams: dict[int, int] = field(default_factory=dict)


def context(request: Request) -> ServerContext:
    ctx: ServerContext = request.app.state.ctx
    return ctx


def bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        token = header[7:].strip()
        if token:
            return token
    token = request.headers.get("x-api-key", "").strip()
    if token:
        return token
    raise AuthenticationError(
        "No API token: send 'Authorization: Bearer <token>' (or 'x-api-key'). "
        "Create one with `appyard token create`."
    )


async def authenticated(request: Request) -> None:
    """Router dependency: a request without a token is refused before its body is read.

    It only checks that a token is there (no database, no thread hop); the token is resolved
    in the same transaction as the work (``run``/``read``), once per request.
    """
    bearer(request)


def _principal(request: Request, s: Session) -> Principal:
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:
        principal = authenticate(s, bearer(request))
        request.state.principal = principal  # a long-poll resolves it once, not per look
    return principal


#: PostgreSQL's "deadlock detected" and "could not serialize": the transaction was rolled back
#: whole and may simply run again
_RETRYABLE = {"40P01", "40001"}
TRANSACTION_ATTEMPTS = 3


def _retryable(exc: OperationalError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in _RETRYABLE


def run(request: Request, fn: Callable[[Session, Principal], T]) -> T:
    """Authenticate and run ``fn`` in one transaction (committed if it returns).

    A transaction PostgreSQL chose as a deadlock's victim was rolled back whole: it runs again
    (``fn`` does nothing outside the database before it commits), up to 3 times.
    """
    for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
        try:
            with context(request).db.session() as s:
                return fn(s, _principal(request, s))
        except OperationalError as exc:
            if attempt == TRANSACTION_ATTEMPTS or not _retryable(exc):
                raise
    raise AssertionError("unreachable")


def read(request: Request, fn: Callable[[Session, Principal], T]) -> T:
    """Like ``run`` for a route that only reads: it never waits behind a writer."""
    with context(request).db.reader() as s:
        return fn(s, _principal(request, s))


def run_anon(request: Request, fn: Callable[[Session], T]) -> T:
    with context(request).db.session() as s:
        return fn(s)


async def in_thread(request: Request, fn: Callable[[], T]) -> T:
    """``fn()`` in one of the server's worker threads: straight onto the event loop's executor,
    the lightest hop there is (a route's database work blocks; the loop must not)."""
    return await asyncio.get_running_loop().run_in_executor(context(request).workers, fn)


async def arun(request: Request, fn: Callable[[Session, Principal], T]) -> T:
    """``run`` from an async route: the database work happens in a worker thread."""
    return await in_thread(request, lambda: run(request, fn))


async def aread(request: Request, fn: Callable[[Session, Principal], T]) -> T:
    """``read`` from an async route."""
    return await in_thread(request, lambda: read(request, fn))


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    """``model`` as the response, serialized once: a route that returns it skips FastAPI's
    second validation against its ``response_model`` (which still documents it)."""
    body = model.model_dump_json(by_alias=True)  # as FastAPI would have written it
    return Response(body, status_code=status_code, media_type="application/json")


async def arun_json(
    request: Request, fn: Callable[[Session, Principal], BaseModel], status_code: int = 200
) -> Response:
    """``run`` and serialize in one worker-thread hop, from an async route."""
    return await in_thread(request, lambda: json_response(run(request, fn), status_code))


async def aread_json(request: Request, fn: Callable[[Session, Principal], BaseModel]) -> Response:
    """``read`` and serialize in one worker-thread hop, from an async route."""
    return await in_thread(request, lambda: json_response(read(request, fn)))
