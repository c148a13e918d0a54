"""The server's front door: the token before the body, a cap on every body, and an answer for
every failure that keeps the connection open (docs/security.md, docs/http-api.md).

FastAPI reads and parses a request's body before a route's dependencies run, so a check in a
dependency comes too late for a body of hundreds of megabytes. This ASGI middleware sits in
front of the routes and:

- refuses a body sent without a token with a 401, unread (``/auth/login`` needs none);
- for a body larger than ``auth_before_body_bytes`` (or of unknown length) checks the token
  against the database first (a 401, unread); a smaller body is read and its token resolved
  in the request's own transaction, as before (no extra lookup on the hot path);
- refuses a body whose ``Content-Length`` is over its route's cap with a 413, unread;
- counts a body as it streams in and stops it with a 413 at the cap (chunked bodies too);
- refuses a NUL character in the path with a 422 (PostgreSQL cannot look one up; one in a
  query parameter that reaches the database is a 422 naming the parameter);
- gives a publish (``POST /modules``) one of ``max_concurrent_publishes`` places before a byte
  of its archive is read, for its upload and its check: one more waits up to
  ``publish_wait_s`` for a place, then gets a 429 with ``Retry-After``, unread;
- answers any failure that escapes a route itself, so that uvicorn does not close the
  connection (it closes it when an exception reaches it after a response was sent).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from appyard.errors import ApiError, AuthenticationError, BadRequestError
from appyard.server.db.engine import Database
from appyard.server.services.accounts import authenticate
from appyard.server.services.annotations import MAX_ANNOTATIONS_BODY
from appyard.server.services.images import MAX_IMAGE_BYTES
from appyard.server.settings import Settings

log = logging.getLogger("appyard.server")

#: what a multipart upload carries besides its file (boundaries, part headers, small fields)
MULTIPART_SLACK = 64 * 1024
#: the body of ``POST /auth/login`` (read before any token exists): a login and a password
LOGIN_BODY_BYTES = 16 * 1024
#: SQLite's "the database is locked" (another writer held it past the busy timeout)
_SQLITE_BUSY = ("database is locked", "database table is locked", "database is busy")
#: SQLite's SQLITE_FULL, and PostgreSQL's disk_full / out_of_memory-on-disk class
_SQLITE_FULL = "database or disk is full"
_PG_FULL = {"53100"}
#: PostgreSQL: lock_not_available, query_canceled (a statement or lock timeout), too many
#: connections, cannot connect now (starting up / shutting down), admin shutdown
_PG_BUSY = {"55P03", "57014", "53300", "57P03", "57P01"}


class BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive`` when a streamed body passes its cap.

    An ``HTTPException`` so that FastAPI's body parsing passes it on unchanged (it turns any
    other failure there into a 400); rendered by ``failure_response`` as a 413 on ``body``.
    """

    def __init__(self, limit: int, setting: str) -> None:
        super().__init__(413, too_large(limit, setting).message)
        self.limit = limit
        self.setting = setting


def size_text(n: int) -> str:
    """``67108864`` -> ``64 MiB``: a limit as its setting would be written."""
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


def too_large(limit: int, setting: str) -> ApiError:
    return ApiError(
        f"body: the request body is larger than this endpoint's limit of {size_text(limit)} "
        f"({setting}); nothing was stored",
        field="body",
        status_code=413,
        code="too_large",
    )


def _nul_field(query: bytes) -> str:
    """The query parameter holding a NUL character, else ``body`` (where else it can be)."""
    if b"%00" in query:
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if "\x00" in value or "\x00" in name:
                return name.replace("\x00", "")
    return "body"


def _nul_in(field: str) -> BadRequestError:
    return BadRequestError(
        f"{field}: contains a NUL character (\\u0000), which cannot be stored or looked up; "
        "remove it",
        field=field,
    )


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it was raised from, outermost first (a route may wrap a failure)."""
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def classify(
    exc: BaseException, retry_after_s: int, query: bytes = b""
) -> tuple[ApiError, dict[str, str]] | None:
    """The error a client can act on for an infrastructure failure, with its headers; None when
    ``exc`` is none of them (a bug: a 500).

    - the database's write lock held past the busy timeout, a lock or statement timeout, the
      connection pool or the database out of connections: 503 ``busy`` with ``Retry-After``;
    - the disk of the database or of stored files full: 507 ``storage_full``;
    - PostgreSQL refusing a NUL character the edge did not catch: 422 on the query parameter
      that holds it, else on ``body``.
    """
    for e in _chain(exc):
        if isinstance(e, OperationalError | DataError):
            state = getattr(e.orig, "sqlstate", None)
            text = str(e.orig).lower()
            if state in _PG_FULL or _SQLITE_FULL in text:
                return _storage_full("database"), {}
            if isinstance(e, OperationalError) and (
                state in _PG_BUSY or any(b in text for b in _SQLITE_BUSY)
            ):
                return _busy(retry_after_s), {"Retry-After": str(retry_after_s)}
            if "nul" in text and ("0x00" in text or "\\u0000" in text):
                return _nul_in(_nul_field(query)), {}
        if isinstance(e, PoolTimeoutError):
            return _busy(retry_after_s), {"Retry-After": str(retry_after_s)}
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return _storage_full("storage"), {}
    return None


def _busy(retry_after_s: int) -> ApiError:
    return ApiError(
        "The database is busy (another writer held it too long); nothing was written. "
        f"Retry in {retry_after_s} s.",
        status_code=503,
        code="busy",
    )


def _storage_full(what: str) -> ApiError:
    return ApiError(
        f"The server's {what} disk is full; nothing was written. Free space on the server, "
        "then retry.",
        status_code=507,
        code="storage_full",
    )


def error_response(error: ApiError, headers: dict[str, str] | None = None) -> JSONResponse:
    """``error`` as its JSON answer; one that says when to come back (a 429, a 503) carries
    ``Retry-After``."""
    retry = error.details.get("retry_after_s")
    if retry is not None:
        headers = {**(headers or {}), "Retry-After": str(retry)}
    return JSONResponse(error.to_body(), status_code=error.status_code, headers=headers)


def failure_response(
    exc: BaseException, method: str, path: str, retry_after_s: int, query: bytes = b""
) -> JSONResponse:
    """The answer to any exception a route let out: typed errors as themselves, known
    infrastructure failures as 503/507/422, anything else a logged 500."""
    if isinstance(exc, BodyTooLarge):
        return error_response(too_large(exc.limit, exc.setting), {"Connection": "close"})
    if isinstance(exc, ApiError):
        return error_response(exc)
    known = classify(exc, retry_after_s, query)
    if known is not None:
        error, headers = known
        log.warning("%s %s: %s (%s)", method, path, error.code, type(exc).__name__)
        return error_response(error, headers)
    log.error("unhandled error on %s %s", method, path, exc_info=exc)
    return JSONResponse(
        {
            "error": {
                "code": "server_error",
                "message": f"The server failed on this request ({type(exc).__name__}); "
                "this is a bug: see the server log.",
            }
        },
        status_code=500,
    )


@dataclass(frozen=True)
class BodyRule:
    """The cap of the bodies sent to ``method`` on paths matching ``pattern``."""

    method: str
    pattern: re.Pattern[str]
    limit: int
    setting: str  # what sets the limit (or what to do), as the 413 says it
    public: bool = False  # reachable without a token


def body_rules(settings: Settings, api: str) -> list[BodyRule]:
    """Uploads get their own, larger caps; every other body gets ``max_body_bytes``."""
    return [
        BodyRule(
            "PUT",
            re.compile(rf"^{api}/teams/\d+/files/content$"),
            settings.max_file_bytes,
            "APPYARD_MAX_FILE_BYTES",
        ),
        BodyRule(
            "POST",
            re.compile(rf"^{api}/modules$"),
            settings.max_release_bytes + MULTIPART_SLACK,
            "APPYARD_MAX_RELEASE_BYTES",
        ),
        BodyRule(
            "POST",
            re.compile(rf"^{api}/images$"),
            MAX_IMAGE_BYTES + MULTIPART_SLACK,
            f"an image is at most {size_text(MAX_IMAGE_BYTES)}",
        ),
        BodyRule(
            "PUT",
            re.compile(rf"^{api}/annotations$"),
            MAX_ANNOTATIONS_BODY,
            "send fewer annotations per request: the SDK's upload_jsons splits a list in batches",
        ),
        BodyRule(
            "*",
            re.compile(r"^/apps/\d+/"),
            settings.max_app_body_bytes,
            "APPYARD_MAX_APP_BODY_BYTES",
            # signed in by a token or the page's cookie: the route checks either before it
            # reads a byte of the body (routes/apps.py)
            public=True,
        ),
        BodyRule(
            "POST",
            re.compile(rf"^{api}/auth/login$"),
            LOGIN_BODY_BYTES,
            "a login and a password",
            public=True,
        ),
    ]


def token_of(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The request's token, read as ``routes.deps.bearer`` reads it (None: none sent)."""
    auth = key = b""
    for name, value in headers:
        if name == b"authorization":
            auth = value
        elif name == b"x-api-key":
            key = value
    if auth[:7].lower() == b"bearer ":
        bearer = auth[7:].strip()
        if bearer:
            return bearer.decode("latin-1")
    key = key.strip()
    return key.decode("latin-1") if key else None


class Guard:
    """The ASGI middleware described in the module's docstring."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Settings,
        db: Database,
        api: str,
        run_in_worker: Callable[[Callable[[], Any]], Any],
    ) -> None:
        self.app = app
        self.db = db
        self.default = BodyRule(
            "*", re.compile(""), settings.max_body_bytes, "APPYARD_MAX_BODY_BYTES"
        )
        self.rules = body_rules(settings, api)
        self.threshold = settings.auth_before_body_bytes
        self.retry_after_s = settings.retry_after_s
        self.run_in_worker = run_in_worker
        self.publish = re.compile(rf"^{api}/modules$")
        self.publishes = PublishPlaces(
            settings.max_concurrent_publishes, settings.publish_wait_s, settings.retry_after_s
        )

    def rule(self, method: str, path: str) -> BodyRule:
        for rule in self.rules:
            if rule.method in (method, "*") and rule.pattern.match(path):
                return rule
        return self.default

    def _check_token(self, token: str) -> None:
        with self.db.reader() as s:
            authenticate(s, token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if "\x00" in path:
            await self._refuse(scope, receive, send, _nul_in("path"))
            return

        length: int | None = None
        chunked = False
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        for key, raw in headers:
            if key == b"content-length":
                length = int(raw) if raw.isdigit() else None
            elif key == b"transfer-encoding" and b"chunked" in raw.lower():
                chunked = True
        if chunked or (length is not None and length > 0):
            rule = self.rule(scope["method"], path)
            large = chunked or length is None or length > self.threshold
            close = {"Connection": "close"} if large else None
            if not rule.public:
                token = token_of(headers)
                if token is None:
                    error = AuthenticationError(
                        "No API token: send 'Authorization: Bearer <token>' (or 'x-api-key'). "
                        "Create one with `appyard token create`."
                    )
                    await self._refuse(scope, receive, send, error, close)
                    return
                if large:
                    try:
                        await self.run_in_worker(lambda: self._check_token(token))
                    except ApiError as exc:
                        await self._refuse(scope, receive, send, exc, close)
                        return
                    except Exception as exc:
                        response = failure_response(exc, scope["method"], path, self.retry_after_s)
                        response.headers["Connection"] = "close"
                        await response(scope, receive, send)
                        return
            if length is not None and length > rule.limit:
                await self._refuse(scope, receive, send, too_large(rule.limit, rule.setting), close)
                return
            receive = _Capped(receive, rule)

        if scope["method"] == "POST" and self.publish.match(path):
            if not await self.publishes.take():
                # the archive is not read: the connection cannot serve another request
                await self._refuse(
                    scope, receive, send, self.publishes.refusal(), {"Connection": "close"}
                )
                return
            try:
                await self._forward(scope, receive, send, path)
            finally:
                self.publishes.give_back()
            return
        await self._forward(scope, receive, send, path)

    async def _forward(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        """The request to the routes; a failure they let out is answered here."""
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            if started:
                raise  # mid-response: nothing else can be said on this connection
            response = failure_response(
                exc, scope["method"], path, self.retry_after_s, scope["query_string"]
            )
            await response(scope, receive, send)

    @staticmethod
    async def _refuse(
        scope: Scope,
        receive: Receive,
        send: Send,
        error: ApiError,
        headers: dict[str, str] | None = None,
    ) -> None:
        await error_response(error, headers)(scope, receive, send)


class PublishPlaces:
    """Publishes under way at once in this process, from their request's head to their answer.

    A publish uploads up to ``APPYARD_MAX_RELEASE_BYTES`` to a temporary file, then unpacks up
    to the archive caps' worth of it: a flood of them must not fill the disk or starve the
    server's other requests of threads. The place is taken before the body is read, so one
    refused costs nothing; the price is that a slow upload holds its place while it lasts.
    """

    def __init__(self, limit: int, wait_s: float, retry_after_s: int) -> None:
        self.limit = max(1, limit)
        self.wait_s = wait_s
        self.retry_after_s = retry_after_s
        self._free = asyncio.Semaphore(self.limit)

    async def take(self) -> bool:
        """A place, waiting up to ``wait_s`` for one; False: none came free."""
        try:
            async with asyncio.timeout(self.wait_s):
                await self._free.acquire()
        except TimeoutError:
            return False
        return True

    def give_back(self) -> None:
        self._free.release()

    def refusal(self) -> ApiError:
        return ApiError(
            f"{self.limit} publish(es) are under way on this server already (uploading or "
            f"being checked), the most it takes at once (APPYARD_MAX_CONCURRENT_PUBLISHES); "
            f"nothing was stored. Retry in {self.retry_after_s} s.",
            status_code=429,
            code="too_many_requests",
            field="archive",
            details={"retry_after_s": self.retry_after_s},
        )


class _Capped:
    """``receive`` that counts the body and stops it at its rule's cap."""

    __slots__ = ("receive", "rule", "seen")

    def __init__(self, receive: Receive, rule: BodyRule) -> None:
        self.receive = receive
        self.rule = rule
        self.seen = 0

    async def __call__(self) -> Message:
        message = await self.receive()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.rule.limit:
                raise BodyTooLarge(self.rule.limit, self.rule.setting)
        return message


def worker_runner(loop_executor: Any) -> Callable[[Callable[[], Any]], Any]:
    """``fn`` in the server's worker threads, awaited from the event loop."""

    def run(fn: Callable[[], Any]) -> Any:
        return asyncio.get_running_loop().run_in_executor(loop_executor, fn)

    return run
