"""The HTTP core under every SDK call: auth, base URL, JSON, typed errors, retries.

This module holds what the blocking core (``_sync.SyncCore``) and the asyncio one
(``_async.AsyncCore``) share: the request as data, the body rules and the retry rules; those two
only do the I/O.

One keep-alive connection pool per client, with TCP_NODELAY set: httpx writes a request's
headers and body in two sends, and with Nagle's algorithm on, the second one waits for the
server's delayed ACK (~40 ms per POST on loopback).

Retry rules: a request that never reached the server (connect error) is retried whatever its
method; one that may have reached it is retried only when it is safe to repeat (GET, PUT,
DELETE, or a call the API object marks idempotent, such as a start with an idempotency key).
502/503/504 on a safe request are retried too (a restarting server behind a proxy). Backoff
doubles and is capped. A retried DELETE that finds nothing (404) after an attempt that may have
been done (its answer was lost) has succeeded: that attempt removed it.

A 429 or a 503 that carries ``Retry-After`` (the server is busy, or the caller is over a
limit: open streams, publishes) is the server saying when to come back: a safe request waits
that long and tries again, up to ``RETRY_AFTER_TRIES`` times and ``RETRY_AFTER_BUDGET_S`` of
waiting in all (a longer wait asked for is not waited). Otherwise the typed error is raised
(``TooManyRequestsError`` for a 429) with the wait in ``retry_after_s`` and a message that says
when to try again.

A request body (``content=``) is sent again on a retry only if it can be: bytes, a binary file
(rewound to where it stood), or a callable giving a fresh iterable per attempt; any other
iterable is sent once. Downloads to a local file (``download_to`` of either core) stream into a
temporary file next to the target and are renamed over it when complete; a dropped connection
starts them again.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import httpx

from appyard import errors

API_PREFIX = "/api/v1"
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRY_COUNT = 5
BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 2.0
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_RETRY_STATUSES = frozenset({502, 503, 504})
#: answers whose ``Retry-After`` says when to come back (over a limit; the database busy)
_RETRY_LATER_STATUSES = frozenset({429, 503})
#: waits one request makes as a ``Retry-After`` asks, and their total at most
RETRY_AFTER_TRIES = 3
RETRY_AFTER_BUDGET_S = 30.0
#: answers after which the server behind a proxy may have done the request all the same
_MAYBE_DONE_STATUSES = frozenset({502, 504})
#: errors raised before a request left: the server cannot have done it
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: pieces a file body is read in, and a download written in
CHUNK = 1024 * 1024
#: TCP_NODELAY on every connection (see above)
SOCKET_OPTIONS = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]

Params = Mapping[str, str | int | float | bool | None]
#: a request body: bytes, a binary file, a callable giving a fresh iterable of bytes per attempt,
#: or an iterable of bytes (sent once)
Content = bytes | IO[bytes] | Callable[[], Iterable[bytes]] | Iterable[bytes]


def normalize_address(address: str) -> str:
    """Give a bare ``host:port`` the ``http://`` scheme and drop trailing slashes."""
    address = address.strip()
    if "://" not in address:
        address = "http://" + address
    return address.rstrip("/")


def retry_after(response: httpx.Response) -> float | None:
    """The seconds a 429 or 503 asks the client to wait (``Retry-After``), else None."""
    if response.status_code not in _RETRY_LATER_STATUSES:
        return None
    raw = response.headers.get("retry-after", "").strip()
    try:
        wait = float(raw)  # the server sends seconds (an HTTP date is not waited for)
    except ValueError:
        return None
    return wait if 0 <= wait < float("inf") else None


def backoff_delay(attempt: int, cap: float = BACKOFF_CAP_S) -> float:
    """Doubling delay for retry number ``attempt`` (0-based), capped."""
    return float(min(cap, BACKOFF_BASE_S * (2**attempt)))


@dataclass
class RequestSpec:
    """One request as the API objects describe it, before a transport sends it."""

    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    json: Any = None
    files: Any = None
    timeout: float | None = None
    auth: bool = True
    idempotent: bool | None = None  # None: decided by the method
    content: Content | None = None
    headers: dict[str, str] | None = None
    #: the call needs at least this long, whatever the client's own timeout
    min_timeout: float | None = None

    @property
    def retry_after_send(self) -> bool:
        if self.idempotent is not None:
            return self.idempotent
        return self.method.upper() in _SAFE_METHODS


class Body:
    """A request body, sent anew for each attempt when it can be."""

    def __init__(self, content: Content | None) -> None:
        self.content = content
        self.started = False
        self.length: int | None = None
        self.resendable = True
        self._start = 0
        if content is None or isinstance(content, bytes):
            return
        if hasattr(content, "read"):
            file: Any = content
            try:
                self._start = file.tell()
                try:
                    size = os.fstat(file.fileno()).st_size
                except (AttributeError, OSError):
                    size = file.seek(0, os.SEEK_END)
                    file.seek(self._start)
                self.length = max(0, size - self._start)
            except (AttributeError, OSError):
                self.resendable = False  # a pipe or the like: it can be read only once
        elif not callable(content):
            self.resendable = False

    def can_resend(self) -> bool:
        return self.resendable or not self.started

    def headers(self) -> dict[str, str]:
        return {} if self.length is None else {"Content-Length": str(self.length)}

    def for_attempt(self) -> bytes | Iterator[bytes] | None:
        content: Any = self.content
        if content is None or isinstance(content, bytes):
            return content
        if hasattr(content, "read"):
            if self.resendable:
                content.seek(self._start)
            return self._tracked(_file_chunks(content))
        if callable(content):
            return self._tracked(content())
        return self._tracked(content)

    def _tracked(self, parts: Iterable[bytes]) -> Iterator[bytes]:
        self.started = True
        yield from parts

    def for_async_attempt(self) -> bytes | AsyncIterator[bytes] | None:
        """The body for an ``httpx.AsyncClient``: its pieces are read in a worker thread, so a
        slow disk never blocks the event loop."""
        parts = self.for_attempt()
        if parts is None or isinstance(parts, bytes):
            return parts
        return _read_aside(parts)


async def _read_aside(parts: Iterator[bytes]) -> AsyncIterator[bytes]:
    import asyncio  # here: the blocking core (the agent's) has no use for asyncio

    while (data := await asyncio.to_thread(next, parts, None)) is not None:
        yield data


def _file_chunks(file: IO[bytes]) -> Iterator[bytes]:
    while data := file.read(CHUNK):
        yield data


def create_beside(target: Path) -> tuple[int, Path]:
    """A new temporary file next to ``target``, made like any new file (mode 0666 less the
    umask, not mkstemp's 0600)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_BINARY", 0)
    while True:
        tmp = target.with_name(f".{target.name[:200]}.{secrets.token_hex(6)}.part")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue


def clean_params(params: Params | None) -> dict[str, str]:
    """Drop ``None`` values and render the rest as the server parses them."""
    out: dict[str, str] = {}
    for key, value in (params or {}).items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        else:
            out[key] = str(value)
    return out


class CoreBase:
    """What the sync and async cores share: configuration, headers, response decoding."""

    def __init__(
        self,
        server_address: str,
        token: str | None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry_count: int = DEFAULT_RETRY_COUNT,
    ) -> None:
        self.server_address = normalize_address(server_address)
        self.token = token
        self.timeout = timeout
        self.retry_count = max(0, retry_count)
        self.base_url = self.server_address + API_PREFIX

    def client_kwargs(self) -> dict[str, Any]:
        """Settings of the ``httpx`` client of either core."""
        return {
            "base_url": self.base_url,
            "headers": {"User-Agent": "appyard-sdk", "Accept": "application/json"},
            "timeout": self.timeout,
            "follow_redirects": False,
        }

    def _headers(self, spec: RequestSpec) -> dict[str, str]:
        if not spec.auth:
            return {}
        if not self.token:
            raise errors.ConfigurationError(
                "No API token: set API_TOKEN (or pass token=...) to call the appyard server; "
                "`appyard token create` mints one."
            )
        return {"Authorization": f"Bearer {self.token}"}

    def _timeout(self, spec: RequestSpec) -> httpx.Timeout:
        total = spec.timeout if spec.timeout is not None else self.timeout
        if spec.min_timeout is not None:
            total = max(total, spec.min_timeout)
        return httpx.Timeout(total, connect=min(total, 10.0))

    def request_kwargs(self, spec: RequestSpec, body: Body) -> dict[str, Any]:
        """Everything of ``client.request`` but the body, which each attempt makes anew.

        No params are passed as None: httpx parses the URL once more for any dict, even ``{}``.
        """
        return {
            "method": spec.method,
            "url": spec.path,
            "params": spec.params or None,
            "json": spec.json,
            "files": spec.files,
            "headers": {**self._headers(spec), **(spec.headers or {}), **body.headers()},
            "timeout": self._timeout(spec),
        }

    def stream_kwargs(self, spec: RequestSpec, accept: str) -> dict[str, Any]:
        """Everything of ``client.stream`` for a streamed GET."""
        return {
            "method": "GET",
            "url": spec.path,
            "params": spec.params or None,
            "headers": {**self._headers(spec), "Accept": accept},
            "timeout": self._timeout(spec),
        }

    def unavailable(self, exc: Exception) -> errors.ServerUnavailableError:
        return errors.ServerUnavailableError(
            f"Cannot reach the appyard server at {self.server_address} ({type(exc).__name__}: "
            f"{exc}). Check SERVER_ADDRESS and that the server runs."
        )

    @staticmethod
    def raise_for_response(
        response: httpx.Response, waited: tuple[int, float] | None = None
    ) -> None:
        """Turn a 4xx/5xx answer into the typed error its JSON body names.

        A 429 or 503 with ``Retry-After`` carries it in ``retry_after_s``, and its message says
        when to try again; ``waited``: the retries already made as it asked, and their wait.
        """
        if response.is_success:
            return
        try:
            body: Any = response.json()
        except ValueError:
            body = {"detail": response.text[:500] or f"HTTP {response.status_code}"}
        error = errors.error_from_response(response.status_code, body)
        wait = retry_after(response)
        if wait is not None:
            error.retry_after_s = wait
            error.message = f"{error.message} {_retry_advice(wait, waited)}"
        raise error

    @staticmethod
    def decode(response: httpx.Response) -> Any:
        if not response.content:
            return None
        return response.json()


def _retry_advice(wait: float, waited: tuple[int, float] | None) -> str:
    """What to do about a 429/503 that asked for ``wait`` seconds."""
    when = f"{wait:g} s"
    if waited is None or not waited[0]:
        return f"(The server asks to retry after {when}: call again then.)"
    tries, total = waited
    return (
        f"(Still refused after {tries} retr{'y' if tries == 1 else 'ies'} over {total:g} s, "
        f"each after the wait the server asked for. Call again in {when} or later; if it "
        "keeps happening, the server is overloaded or the limit is too low for this use: see "
        "its operator.)"
    )


class Retry(Protocol):
    """The retry rule of one request: what a core asks after each attempt. ``Attempts`` is the
    SDK's; a client with rules of its own (the agent's reports) gives the sync core another."""

    def after_error(self, exc: httpx.TransportError) -> float:
        """The pause before the next attempt; raises the error of the call when none is left."""
        ...

    def after_response(self, response: httpx.Response) -> float | None:
        """The pause before the next attempt, or None when this answer is the final one."""
        ...

    def final(self, response: httpx.Response) -> httpx.Response:
        """The answer of the call, or its typed error."""
        ...


class Attempts:
    """The retry rules of one request, for both cores: after each failed attempt, the pause
    before the next one, or the error to raise when there is none left."""

    def __init__(self, core: CoreBase, spec: RequestSpec, body: Body | None = None) -> None:
        self.core = core
        self.spec = spec
        self.body = body
        self.attempt = 0
        self.maybe_done = False  # an earlier attempt may have been done by the server
        #: retries made as a ``Retry-After`` asked, and the seconds waited for them
        self.later = 0
        self.waited = 0.0

    def _can_resend(self) -> bool:
        return self.body is None or self.body.can_resend()

    def _next(self, failure: Exception | httpx.Response) -> float:
        self.maybe_done = self.maybe_done or _maybe_done(failure)
        delay = backoff_delay(self.attempt)
        self.attempt += 1
        return delay

    def after_error(self, exc: httpx.TransportError) -> float:
        """The pause before the next attempt; ``ServerUnavailableError`` when none is left.

        A request that never left (connect error) is retried whatever its method; one that may
        have reached the server only when it is safe to repeat.
        """
        left = self.attempt < self.core.retry_count
        safe = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout) or (
            self.spec.retry_after_send
        )
        if not (left and safe and self._can_resend()):
            raise self.core.unavailable(exc) from exc
        return self._next(exc)

    def after_response(self, response: httpx.Response) -> float | None:
        """The pause before the next attempt, or None when this answer is the final one."""
        wait = retry_after(response)
        if wait is not None:  # the server said when: that, or nothing
            later = (
                self.spec.retry_after_send
                and self._can_resend()
                and self.later < min(RETRY_AFTER_TRIES, self.core.retry_count)
                and self.waited + wait <= RETRY_AFTER_BUDGET_S
            )
            if not later:
                return None
            self.later += 1
            self.waited += wait
            self.attempt += 1
            return wait
        again = (
            response.status_code in _RETRY_STATUSES
            and self.spec.retry_after_send
            and self.attempt < self.core.retry_count
            and self._can_resend()
        )
        return self._next(response) if again else None

    def final(self, response: httpx.Response) -> httpx.Response:
        """The answer of the call, or its typed error.

        A retried DELETE that finds nothing, after an attempt that may have been done, has
        succeeded: that attempt removed it (its answer was lost).
        """
        if self.maybe_done and self.spec.method.upper() == "DELETE" and response.status_code == 404:
            return httpx.Response(204, request=response.request)
        self.core.raise_for_response(response, (self.later, self.waited))
        return response


def _maybe_done(failure: Exception | httpx.Response) -> bool:
    """Whether an attempt that failed so (an error, or an answer to retry) may have been done
    by the server all the same."""
    if isinstance(failure, httpx.Response):
        return failure.status_code in _MAYBE_DONE_STATUSES
    return not isinstance(failure, _NOT_SENT)


#: what a download to a file accepts: the file, or a JSON error body
DOWNLOAD_ACCEPT = "application/octet-stream, application/json"
#: what a stream of server-sent events accepts
EVENTS_ACCEPT = "text/event-stream"
