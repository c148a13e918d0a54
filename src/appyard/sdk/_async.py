"""The asyncio core: performs the effects of the calls (``_calls``) with ``httpx.AsyncClient``.

The twin of ``_sync``: the same calls, the same rules (``_core``), only the I/O differs.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
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
    clean_params,
    create_beside,
)

T = TypeVar("T")
E = TypeVar("E")


class AsyncCore(CoreBase):
    """Non-blocking twin of ``SyncCore`` over one ``httpx.AsyncClient``."""

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
            transport=transport or httpx.AsyncHTTPTransport(socket_options=SOCKET_OPTIONS),
            **self.client_kwargs(),
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    # -- calls ---------------------------------------------------------------------------------

    async def run(self, op: fx.Op[T]) -> T:
        """Perform the effects of call ``op``; its result."""
        driver = fx.Driver(op)
        async for _ in self._drive(driver):
            raise AssertionError("a call that hands out items is read with iterate()")
        return driver.value()

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request outside the resource APIs: the decoded JSON of its 2xx answer (None if
        it has none); the keyword arguments of ``_calls.effects.request``."""
        return await self.run(fx.request(method, path, **kwargs))

    def iterate(self, op: fx.Stream[E]) -> AsyncIterator[E]:
        """The items call ``op`` hands out, its effects performed as they come."""
        return self._drive(fx.Driver(op))

    async def _drive(self, driver: fx.Driver[Any]) -> AsyncIterator[Any]:
        streams = _Streams(self)
        try:
            while driver.next():
                effect = driver.effect
                if isinstance(effect, fx.Emit):
                    yield effect.item
                    continue
                try:
                    driver.give(await self._perform(effect, streams))
                except BaseException as exc:  # thrown into the call, which decides
                    driver.fail(exc)
        finally:
            driver.close()
            await streams.aclose()

    async def _perform(self, effect: fx.Effect, streams: _Streams) -> Any:
        if isinstance(effect, RequestSpec):
            return self.decode(await self.send(effect))
        if isinstance(effect, fx.Fetch):
            return (await self.send(effect.spec)).content
        if isinstance(effect, fx.Download):
            return await self.download(effect.target, effect.spec)
        if isinstance(effect, fx.Sleep):
            return await asyncio.sleep(effect.seconds)
        if isinstance(effect, fx.Offload):
            return await asyncio.to_thread(effect.fn)
        if isinstance(effect, fx.OpenStream):
            return await streams.open(effect.spec)
        if isinstance(effect, fx.ReadLine):
            return await streams.read(effect.stream)
        assert_never(effect)

    # -- I/O -----------------------------------------------------------------------------------

    async def send(self, spec: RequestSpec) -> httpx.Response:
        """Send with retries; return a successful response or raise the typed error."""
        body = Body(spec.content)
        tries = Attempts(self, spec, body)
        kwargs = self.request_kwargs(spec, body)
        while True:
            try:
                response = await self.client.request(content=body.for_async_attempt(), **kwargs)
            except httpx.TransportError as exc:
                await asyncio.sleep(tries.after_error(exc))
                continue
            delay = tries.after_response(response)
            if delay is None:
                return tries.final(response)
            await asyncio.sleep(delay)

    async def download_to(
        self,
        path: str | os.PathLike[str],
        url: str,
        *,
        params: Params | None = None,
        timeout: float | None = None,
    ) -> None:
        """Stream the body of ``GET url`` into local file ``path`` (see :meth:`download`)."""
        spec = RequestSpec("GET", url, clean_params(params), timeout=timeout)
        await self.download(Path(path), spec)

    async def download(self, target: Path, spec: RequestSpec) -> None:
        """See ``SyncCore.download``: whole or not at all, started again on a dropped
        connection."""
        target.parent.mkdir(parents=True, exist_ok=True)
        tries = Attempts(self, spec)
        kwargs = self.stream_kwargs(spec, DOWNLOAD_ACCEPT)
        while True:
            fd, tmp = create_beside(target)
            try:
                with os.fdopen(fd, "wb") as out:
                    async with self.client.stream(**kwargs) as response:
                        delay = tries.after_response(response)
                        if delay is None:
                            if not response.is_success:
                                await response.aread()
                                self.raise_for_response(response)
                            async for data in response.aiter_bytes(CHUNK):
                                out.write(data)
                if delay is None:
                    os.replace(tmp, target)
                    return
            except httpx.TransportError as exc:  # the connection broke: start again
                delay = tries.after_error(exc)
            finally:
                tmp.unlink(missing_ok=True)
            await asyncio.sleep(delay)

    @asynccontextmanager
    async def stream(
        self, path: str, *, params: Params | None = None, timeout: float | None = None
    ) -> AsyncIterator[httpx.Response]:
        """A streaming GET (server-sent events); raises the typed error on a 4xx/5xx."""
        spec = RequestSpec("GET", path, clean_params(params), timeout=timeout)
        try:
            async with self.client.stream(**self.stream_kwargs(spec, EVENTS_ACCEPT)) as response:
                if not response.is_success:
                    await response.aread()
                    self.raise_for_response(response)
                yield response
        except httpx.TransportError as exc:
            raise self.unavailable(exc) from exc


class _Streams:
    """The event streams one call opened, by handle; what is still open closes with it."""

    def __init__(self, core: AsyncCore) -> None:
        self._core = core
        self._open: dict[int, tuple[AsyncExitStack, AsyncIterator[str]]] = {}
        self._handles = count()

    async def open(self, spec: RequestSpec) -> int:
        stack = AsyncExitStack()
        response = await stack.enter_async_context(
            self._core.stream(spec.path, params=spec.params, timeout=spec.timeout)
        )
        handle = next(self._handles)
        self._open[handle] = (stack, response.aiter_lines())
        return handle

    async def read(self, handle: int) -> str | None:
        try:
            return await anext(self._open[handle][1])
        except StopAsyncIteration:
            await self._drop(handle)
            return None
        except httpx.TransportError as exc:
            await self._drop(handle)
            raise self._core.unavailable(exc) from exc
        except BaseException:
            await self._drop(handle)
            raise

    async def _drop(self, handle: int) -> None:
        stack, _ = self._open.pop(handle)
        await stack.aclose()

    async def aclose(self) -> None:
        for handle in list(self._open):
            await self._drop(handle)
