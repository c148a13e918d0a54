"""The HTTP core under every SDK call: auth, base URL, JSON, typed errors, retries.

One keep-alive connection pool per client, with TCP_NODELAY set: httpx writes a request's
headers and body in two sends, and with Nagle's algorithm on, the second one waits for the
server's delayed ACK (~40 ms per POST on loopback).

Retry rules: a request that never reached the server (connect error) is retried whatever its
method; one that may have reached it is retried only when it is safe to repeat (GET, PUT,
DELETE, or a call the API object marks idempotent, such as a start with an idempotency key).
502/503/504 on a safe request are retried too (a restarting server behind a proxy). Backoff
doubles and is capped. A retried DELETE that finds nothing (404) after an attempt that may have
been done (its answer was lost) has succeeded: that attempt removed it.

A request body (``content=``) is sent again on a retry only if it can be: bytes, a binary file
(rewound to where it stood), or a callable giving a fresh iterable per attempt; any other
iterable is sent once. Downloads to a local file (:meth:`SyncCore.download_to`) stream into a
temporary file next to the target and are renamed over it when complete; a dropped connection
starts them again.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from appyard import errors

API_PREFIX = "/api/v1"
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRY_COUNT = 5
BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 2.0
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_RETRY_STATUSES = frozenset({502, 503, 504})
#: answers after which the server behind a proxy may have done the request all the same
_MAYBE_DONE_STATUSES = frozenset({502, 504})
#: errors raised before a request left: the server cannot have done it
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: pieces a file body is read in, and a download written in
CHUNK = 1024 * 1024
_SOCKET_OPTIONS = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]

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

    @property
    def retry_after_send(self) -> bool:
        if self.idempotent is not None:
            return self.idempotent
        return self.method.upper() in _SAFE_METHODS


class _Body:
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


def _file_chunks(file: IO[bytes]) -> Iterator[bytes]:
    while data := file.read(CHUNK):
        yield data


def _create_beside(target: Path) -> tuple[int, Path]:
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
        return httpx.Timeout(total, connect=min(total, 10.0))

    def _unavailable(self, exc: Exception) -> errors.ServerUnavailableError:
        return errors.ServerUnavailableError(
            f"Cannot reach the appyard server at {self.server_address} ({type(exc).__name__}: "
            f"{exc}). Check SERVER_ADDRESS and that the server runs."
        )

    def _should_retry(self, spec: RequestSpec, exc: Exception, attempt: int) -> bool:
        if attempt >= self.retry_count:
            return False
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return True  # the request never left: safe for any method
        return spec.retry_after_send

    def _retry_status(self, spec: RequestSpec, response: httpx.Response, attempt: int) -> bool:
        return (
            response.status_code in _RETRY_STATUSES
            and spec.retry_after_send
            and attempt < self.retry_count
        )

    @staticmethod
    def _maybe_done(failure: Exception | httpx.Response) -> bool:
        """Whether an attempt that failed so (an error, or an answer to retry) may have been
        done by the server all the same."""
        if isinstance(failure, httpx.Response):
            return failure.status_code in _MAYBE_DONE_STATUSES
        return not isinstance(failure, _NOT_SENT)

    @staticmethod
    def _done_before(spec: RequestSpec, response: httpx.Response, maybe_done: bool) -> bool:
        """A retried DELETE that finds nothing, after an attempt that may have been done: that
        attempt removed it (its answer was lost), so the call succeeded."""
        return maybe_done and spec.method.upper() == "DELETE" and response.status_code == 404

    @staticmethod
    def raise_for_response(response: httpx.Response) -> None:
        """Turn a 4xx/5xx answer into the typed error its JSON body names."""
        if response.is_success:
            return
        try:
            body: Any = response.json()
        except ValueError:
            body = {"detail": response.text[:500] or f"HTTP {response.status_code}"}
        raise errors.error_from_response(response.status_code, body)

    @staticmethod
    def decode(response: httpx.Response) -> Any:
        if not response.content:
            return None
        return response.json()


def _client_kwargs(core: CoreBase) -> dict[str, Any]:
    return {
        "base_url": core.base_url,
        "headers": {"User-Agent": "appyard-sdk", "Accept": "application/json"},
        "timeout": core.timeout,
        "follow_redirects": False,
    }


class SyncCore(CoreBase):
    """Blocking HTTP core over one keep-alive ``httpx.Client``."""

    def __init__(
        self,
        server_address: str,
        token: str | None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry_count: int = DEFAULT_RETRY_COUNT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(server_address, token, timeout=timeout, retry_count=retry_count)
        self.client = httpx.Client(
            transport=transport or httpx.HTTPTransport(socket_options=_SOCKET_OPTIONS),
            **_client_kwargs(self),
        )

    def close(self) -> None:
        self.client.close()

    def send(self, spec: RequestSpec) -> httpx.Response:
        """Send with retries; return a successful response or raise the typed error."""
        body = _Body(spec.content)
        headers = {**self._headers(spec), **(spec.headers or {}), **body.headers()}
        attempt = 0
        maybe_done = False  # an earlier attempt may have been done by the server
        while True:
            try:
                response = self.client.request(
                    spec.method,
                    spec.path,
                    params=spec.params,
                    json=spec.json,
                    files=spec.files,
                    content=body.for_attempt(),
                    headers=headers,
                    timeout=self._timeout(spec),
                )
            except httpx.TransportError as exc:
                if not (self._should_retry(spec, exc, attempt) and body.can_resend()):
                    raise self._unavailable(exc) from exc
                maybe_done = maybe_done or self._maybe_done(exc)
                time.sleep(backoff_delay(attempt))
                attempt += 1
                continue
            if self._retry_status(spec, response, attempt) and body.can_resend():
                maybe_done = maybe_done or self._maybe_done(response)
                time.sleep(backoff_delay(attempt))
                attempt += 1
                continue
            if self._done_before(spec, response, maybe_done):
                return httpx.Response(204, request=response.request)
            self.raise_for_response(response)
            return response

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json: Any = None,
        files: Any = None,
        timeout: float | None = None,
        auth: bool = True,
        idempotent: bool | None = None,
        content: Content | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """One call: the decoded JSON body of a 2xx answer (None if it has none).

        ``content`` is a raw body (see :data:`Content`; a file is streamed from where it stands,
        with its length); ``headers`` are added to the request's.
        """
        spec = RequestSpec(
            method,
            path,
            clean_params(params),
            json,
            files,
            timeout,
            auth,
            idempotent,
            content=content,
            headers=headers,
        )
        return self.decode(self.send(spec))

    def download_to(
        self,
        path: str | os.PathLike[str],
        url: str,
        *,
        params: Params | None = None,
        timeout: float | None = None,
    ) -> None:
        """Stream the body of ``GET url`` into local file ``path``, which appears whole or not
        at all.

        Its folder is made; the body goes into a temporary file next to it, renamed over it when
        complete. The file is made like any new file (mode 0666 less the umask). A connection
        dropped midway (or a 502/503/504) starts the download again, by the retry rules of a
        GET; a 4xx/5xx answer raises its typed error and leaves nothing behind.
        """
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        spec = RequestSpec("GET", url, clean_params(params), timeout=timeout)
        headers = {**self._headers(spec), "Accept": "application/octet-stream, application/json"}
        attempt = 0
        while True:
            fd, tmp = _create_beside(target)
            try:
                with (
                    os.fdopen(fd, "wb") as out,
                    self.client.stream(
                        "GET", url, params=spec.params, headers=headers, timeout=self._timeout(spec)
                    ) as response,
                ):
                    again = self._retry_status(spec, response, attempt)
                    if not again:
                        if not response.is_success:
                            response.read()
                            self.raise_for_response(response)
                        for data in response.iter_bytes(CHUNK):
                            out.write(data)
                if not again:
                    os.replace(tmp, target)
                    return
                tmp.unlink(missing_ok=True)
            except httpx.TransportError as exc:  # the connection broke: start again
                tmp.unlink(missing_ok=True)
                if not self._should_retry(spec, exc, attempt):
                    raise self._unavailable(exc) from exc
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            time.sleep(backoff_delay(attempt))
            attempt += 1

    @contextmanager
    def stream(
        self, path: str, *, params: Params | None = None, timeout: float | None = None
    ) -> Iterator[httpx.Response]:
        """A streaming GET (server-sent events); raises the typed error on a 4xx/5xx."""
        spec = RequestSpec("GET", path, clean_params(params), timeout=timeout)
        headers = {**self._headers(spec), "Accept": "text/event-stream"}
        try:
            with self.client.stream(
                "GET", path, params=spec.params, headers=headers, timeout=self._timeout(spec)
            ) as response:
                if not response.is_success:
                    response.read()
                    self.raise_for_response(response)
                yield response
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from exc


class AsyncCore(CoreBase):
    """Non-blocking twin of :class:`SyncCore` over one ``httpx.AsyncClient``."""

    def __init__(
        self,
        server_address: str,
        token: str | None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry_count: int = DEFAULT_RETRY_COUNT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(server_address, token, timeout=timeout, retry_count=retry_count)
        self.client = httpx.AsyncClient(
            transport=transport or httpx.AsyncHTTPTransport(socket_options=_SOCKET_OPTIONS),
            **_client_kwargs(self),
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def send(self, spec: RequestSpec) -> httpx.Response:
        if spec.content is not None and not isinstance(spec.content, bytes):
            raise TypeError("the async core sends a request body given as bytes only")
        headers = {**self._headers(spec), **(spec.headers or {})}
        attempt = 0
        maybe_done = False  # an earlier attempt may have been done by the server
        while True:
            try:
                response = await self.client.request(
                    spec.method,
                    spec.path,
                    params=spec.params,
                    json=spec.json,
                    files=spec.files,
                    content=spec.content,
                    headers=headers,
                    timeout=self._timeout(spec),
                )
            except httpx.TransportError as exc:
                if not self._should_retry(spec, exc, attempt):
                    raise self._unavailable(exc) from exc
                maybe_done = maybe_done or self._maybe_done(exc)
                await asyncio.sleep(backoff_delay(attempt))
                attempt += 1
                continue
            if self._retry_status(spec, response, attempt):
                maybe_done = maybe_done or self._maybe_done(response)
                await asyncio.sleep(backoff_delay(attempt))
                attempt += 1
                continue
            if self._done_before(spec, response, maybe_done):
                return httpx.Response(204, request=response.request)
            self.raise_for_response(response)
            return response

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json: Any = None,
        files: Any = None,
        timeout: float | None = None,
        auth: bool = True,
        idempotent: bool | None = None,
    ) -> Any:
        spec = RequestSpec(
            method, path, clean_params(params), json, files, timeout, auth, idempotent
        )
        return self.decode(await self.send(spec))

    @asynccontextmanager
    async def stream(
        self, path: str, *, params: Params | None = None, timeout: float | None = None
    ) -> AsyncIterator[httpx.Response]:
        spec = RequestSpec("GET", path, clean_params(params), timeout=timeout)
        headers = {**self._headers(spec), "Accept": "text/event-stream"}
        try:
            async with self.client.stream(
                "GET", path, params=spec.params, headers=headers, timeout=self._timeout(spec)
            ) as response:
                if not response.is_success:
                    await response.aread()
                    self.raise_for_response(response)
                yield response
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from exc
