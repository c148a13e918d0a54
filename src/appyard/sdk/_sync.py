"""The blocking core: performs the effects of the calls (``_calls``) with ``httpx.Client``.

Only I/O lives here; what a request is, and when it is tried again, is in ``_core``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from itertools import count
from pathlib import Path
from typing import Any, TypeVar, assert_never

import httpx

from appyard.sdk._calls import effects as fx
from appyard.sdk._core import (
    CHUNK,
    DEFAULT_RETRY_COUNT,
    DEFAULT_TIMEOUT,
    DOWNLOAD_ACCEPT,
    EVENTS_ACCEPT,
    SOCKET_OPTIONS,
    Attempts,
    Body,
    CoreBase,
    Params,
    RequestSpec,
    Retry,
    clean_params,
    create_beside,
)
from appyard.sdk._plain_http import PlainHTTPTransport

T = TypeVar("T")
E = TypeVar("E")


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
        pause: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(server_address, token, timeout=timeout, retry_count=retry_count)
        #: the wait between two attempts of a request; one that raises ends the retries (the
        #: agent's, when it shuts down)
        self.pause = pause
        self.client = httpx.Client(
            transport=transport
            or PlainHTTPTransport(httpx.HTTPTransport(socket_options=SOCKET_OPTIONS)),
            **self.client_kwargs(),
        )

    def close(self) -> None:
        self.client.close()

    # -- calls ---------------------------------------------------------------------------------

    def run(self, op: fx.Op[T]) -> T:
        """Perform the effects of call ``op``; its result."""
        driver = fx.Driver(op)
        for _ in self._drive(driver):
            raise AssertionError("a call that hands out items is read with iterate()")
        return driver.value()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request outside the resource APIs: the decoded JSON of its 2xx answer (None if
        it has none); the keyword arguments of ``_calls.effects.request``."""
        return self.run(fx.request(method, path, **kwargs))

    def iterate(self, op: fx.Stream[E]) -> Iterator[E]:
        """The items call ``op`` hands out, its effects performed as they come."""
        return self._drive(fx.Driver(op))

    def _drive(self, driver: fx.Driver[Any]) -> Iterator[Any]:
        streams = _Streams(self)
        try:
            while driver.next():
                effect = driver.effect
                if isinstance(effect, fx.Emit):
                    yield effect.item
                    continue
                try:
                    driver.give(self._perform(effect, streams))
                except BaseException as exc:  # thrown into the call, which decides
                    driver.fail(exc)
        finally:
            driver.close()
            streams.close()

    def _perform(self, effect: fx.Effect, streams: _Streams) -> Any:
        if isinstance(effect, RequestSpec):
            return self.decode(self.send(effect))
        if isinstance(effect, fx.Fetch):
            return self.send(effect.spec).content
        if isinstance(effect, fx.Download):
            return self.download(effect.target, effect.spec)
        if isinstance(effect, fx.Sleep):
            return time.sleep(effect.seconds)
        if isinstance(effect, fx.Offload):
            return effect.fn()
        if isinstance(effect, fx.OpenStream):
            return streams.open(effect.spec)
        if isinstance(effect, fx.ReadLine):
            return streams.read(effect.stream)
        assert_never(effect)

    # -- I/O -----------------------------------------------------------------------------------

    def send(self, spec: RequestSpec, retry: Retry | None = None) -> httpx.Response:
        """Send with retries; return a successful response or raise the typed error.

        ``retry``: the rule of this request instead of the SDK's (``Attempts``); it is not told
        about the body, so give it one that can be sent again (bytes).
        """
        body = Body(spec.content)
        tries = retry if retry is not None else Attempts(self, spec, body)
        kwargs = self.request_kwargs(spec, body)
        while True:
            try:
                response = self.client.request(content=body.for_attempt(), **kwargs)
            except httpx.TransportError as exc:
                self.pause(tries.after_error(exc))
                continue
            delay = tries.after_response(response)
            if delay is None:
                return tries.final(response)
            self.pause(delay)

    def download_to(
        self,
        path: str | os.PathLike[str],
        url: str,
        *,
        params: Params | None = None,
        timeout: float | None = None,
    ) -> None:
        """Stream the body of ``GET url`` into local file ``path`` (see :meth:`download`)."""
        self.download(Path(path), RequestSpec("GET", url, clean_params(params), timeout=timeout))

    def download(self, target: Path, spec: RequestSpec, retry: Retry | None = None) -> None:
        """Stream the body of ``spec`` into local file ``target``, which appears whole or not
        at all.

        Its folder is made; the body goes into a temporary file next to it, renamed over it when
        complete. The file is made like any new file (mode 0666 less the umask). A connection
        dropped midway (or a 502/503/504) starts the download again, by the retry rules of a
        GET (or by ``retry``); a 4xx/5xx answer raises its typed error and leaves nothing behind.
        """
        target.parent.mkdir(parents=True, exist_ok=True)
        tries = retry if retry is not None else Attempts(self, spec)
        kwargs = self.stream_kwargs(spec, DOWNLOAD_ACCEPT)
        while True:
            fd, tmp = create_beside(target)
            try:
                with os.fdopen(fd, "wb") as out, self.client.stream(**kwargs) as response:
                    delay = tries.after_response(response)
                    if delay is None:
                        if not response.is_success:
                            response.read()
                            self.raise_for_response(response)
                        for data in response.iter_bytes(CHUNK):
                            out.write(data)
                if delay is None:
                    os.replace(tmp, target)
                    return
            except httpx.TransportError as exc:  # the connection broke: start again
                delay = tries.after_error(exc)
            finally:
                tmp.unlink(missing_ok=True)
            self.pause(delay)

    @contextmanager
    def stream(
        self, path: str, *, params: Params | None = None, timeout: float | None = None
    ) -> Iterator[httpx.Response]:
        """A streaming GET (server-sent events); raises the typed error on a 4xx/5xx."""
        spec = RequestSpec("GET", path, clean_params(params), timeout=timeout)
        try:
            with self.client.stream(**self.stream_kwargs(spec, EVENTS_ACCEPT)) as response:
                if not response.is_success:
                    response.read()
                    self.raise_for_response(response)
                yield response
        except httpx.TransportError as exc:
            raise self.unavailable(exc) from exc


class _Streams:
    """The event streams one call opened, by handle; what is still open closes with it."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core
        self._open: dict[int, tuple[ExitStack, Iterator[str]]] = {}
        self._handles = count()

    def open(self, spec: RequestSpec) -> int:
        stack = ExitStack()
        response = stack.enter_context(
            self._core.stream(spec.path, params=spec.params, timeout=spec.timeout)
        )
        handle = next(self._handles)
        self._open[handle] = (stack, response.iter_lines())
        return handle

    def read(self, handle: int) -> str | None:
        try:
            return next(self._open[handle][1])
        except StopIteration:
            self._drop(handle)
            return None
        except httpx.TransportError as exc:
            self._drop(handle)
            raise self._core.unavailable(exc) from exc
        except BaseException:
            self._drop(handle)
            raise

    def _drop(self, handle: int) -> None:
        stack, _ = self._open.pop(handle)
        stack.close()

    def close(self) -> None:
        for handle in list(self._open):
            self._drop(handle)
