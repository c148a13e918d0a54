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

from appyard.errors import ApiError, AuthenticationError
from appyard.schemas.common import MAX_ID
from appyard.server.db.engine import Database
from appyard.server.notifier import Notifier
from appyard.server.security import Principal, SignInLimiter
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


class OpenStreams:
    """Long-polls and streams of clients open in this server process, counted per token and
    per team: one caller holding many of them makes every change cost as many looks, which
    the other requests wait behind. Past a cap a new one is a 429 with ``Retry-After``.

    The counts are this process's own: with several server replicas each counts its own
    streams, so a token may hold up to the cap on each. Only the event loop touches them.
    """

    def __init__(self, *, per_token: int, per_team: int, retry_after_s: int) -> None:
        self.per_token = per_token
        self.per_team = per_team
        self.retry_after_s = retry_after_s
        self.tokens: dict[int, int] = {}
        self.teams: dict[int, int] = {}

    def take(self, *, token_id: int, team_id: int) -> Callable[[], None]:
        """A place for one more stream of this token on this team's data, or a 429; the
        function returned gives it back (once, however often it is called)."""
        if self.tokens.get(token_id, 0) >= self.per_token:
            raise self._refusal(f"this token has {self.per_token} streams and waits open already")
        if self.teams.get(team_id, 0) >= self.per_team:
            raise self._refusal(
                f"team {team_id} has {self.per_team} streams and waits open already"
            )
        self.tokens[token_id] = self.tokens.get(token_id, 0) + 1
        self.teams[team_id] = self.teams.get(team_id, 0) + 1
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                _less(self.tokens, token_id)
                _less(self.teams, team_id)

        return release

    def _refusal(self, why: str) -> ApiError:
        return ApiError(
            f"Too many open streams: {why} (on this server). Close some (a finished wait, a "
            f"page no longer shown) or retry in {self.retry_after_s} s.",
            status_code=429,
            code="too_many_requests",
            details={"retry_after_s": self.retry_after_s},
        )


def _less(counts: dict[int, int], key: int) -> None:
    left = counts[key] - 1
    if left:
        counts[key] = left
    else:
        del counts[key]  # a token or team with no stream open costs no memory


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
    #: failed sign-ins per login and per client address, in this process
    signin: SignInLimiter = field(default_factory=SignInLimiter)
    #: clients' open long-polls and streams, capped per token and per team
    streams: OpenStreams = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        self.streams = OpenStreams(
            per_token=s.max_streams_per_token,
            per_team=s.max_streams_per_team,
            retry_after_s=s.retry_after_s,
        )


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


def principal_of(request: Request) -> Principal | None:
    """The principal this request's token was resolved to, if it was (``read``/``run``)."""
    principal: Principal | None = getattr(request.state, "principal", None)
    return principal


def recheck_token(request: Request) -> None:
    """The next ``read``/``run`` of this request resolves its token again, in its own
    transaction (one prebuilt statement): a stream or long-poll whose token was revoked, or
    whose task ended, is refused at its next look (401) instead of living on."""
    request.state.principal = None


async def check_token(request: Request) -> None:
    """Resolve this request's token again now (a stream's keepalive tick that does not look)."""
    recheck_token(request)
    await aread(request, lambda s, p: None)


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
