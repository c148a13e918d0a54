"""The HTTP core under every SDK call: auth, base URL, JSON, typed errors, retries.

One keep-alive connection pool per client, with TCP_NODELAY set: httpx writes a request's
headers and body in two sends, and with Nagle's algorithm on, the second one waits for the
server's delayed ACK (~40 ms per POST on loopback).

Retry rules: a request that never reached the server (connect error) is retried whatever its
method; one that may have reached it is retried only when it is safe to repeat (GET, or a call
the API object marks idempotent, such as a start with an idempotency key). 502/503/504 on a
safe request are retried too (a restarting server behind a proxy). Backoff doubles and is capped.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from appyard import errors

API_PREFIX = "/api/v1"
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRY_COUNT = 5
BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 2.0
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_RETRY_STATUSES = frozenset({502, 503, 504})
_SOCKET_OPTIONS = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]

Params = Mapping[str, str | int | float | bool | None]


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

    @property
    def retry_after_send(self) -> bool:
        if self.idempotent is not None:
            return self.idempotent
        return self.method.upper() in _SAFE_METHODS


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
        headers = self._headers(spec)
        attempt = 0
        while True:
            try:
                response = self.client.request(
                    spec.method,
                    spec.path,
                    params=spec.params,
                    json=spec.json,
                    files=spec.files,
                    headers=headers,
                    timeout=self._timeout(spec),
                )
            except httpx.TransportError as exc:
                if not self._should_retry(spec, exc, attempt):
                    raise self._unavailable(exc) from exc
                time.sleep(backoff_delay(attempt))
                attempt += 1
                continue
            if self._retry_status(spec, response, attempt):
                time.sleep(backoff_delay(attempt))
                attempt += 1
                continue
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
    ) -> Any:
        """One JSON call: the decoded body of a 2xx answer."""
        spec = RequestSpec(
            method, path, clean_params(params), json, files, timeout, auth, idempotent
        )
        return self.decode(self.send(spec))

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
        headers = self._headers(spec)
        attempt = 0
        while True:
            try:
                response = await self.client.request(
                    spec.method,
                    spec.path,
                    params=spec.params,
                    json=spec.json,
                    files=spec.files,
                    headers=headers,
                    timeout=self._timeout(spec),
                )
            except httpx.TransportError as exc:
                if not self._should_retry(spec, exc, attempt):
                    raise self._unavailable(exc) from exc
                await asyncio.sleep(backoff_delay(attempt))
                attempt += 1
                continue
            if self._retry_status(spec, response, attempt):
                await asyncio.sleep(backoff_delay(attempt))
                attempt += 1
                continue
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
