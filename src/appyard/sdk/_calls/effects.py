"""The effects a call asks its core to perform, and the helpers that compose calls.

A call (an ``Op``) is a generator: it yields what it needs done (an HTTP request, a pause, a
line of a stream, blocking work) and gets the result sent back, or the error thrown in, so its
``try``/``except`` read like plain code. It never does I/O itself; ``SyncCore.run`` performs its
effects with blocking I/O and ``AsyncCore.run`` with asyncio. That is how the sync and async
twins share request building, response parsing and every rule (the rides of a wait, pages,
batches), as httpx shares its models between ``Client`` and ``AsyncClient``.

A call that hands out items as it goes (a listing, a stream of events) yields ``Emit`` between
its effects; a core reads it with ``iterate``, another call with :func:`consume`.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeAlias, TypeVar, cast

from appyard.schemas.common import Page
from appyard.sdk._core import Content, Params, RequestSpec, clean_params

T = TypeVar("T")
E = TypeVar("E")
R = TypeVar("R")
C = TypeVar("C", bound=type)


@dataclass(frozen=True, slots=True)
class Fetch:
    """Send ``spec``; the result is the raw body of the answer (bytes)."""

    spec: RequestSpec


@dataclass(frozen=True, slots=True)
class Download:
    """Stream the body of ``spec`` (a GET) into local file ``target``; it appears whole or not
    at all."""

    target: Path
    spec: RequestSpec


@dataclass(frozen=True, slots=True)
class Sleep:
    """Pause, without holding anything up in the async twin."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Offload:
    """Blocking local work (packing a folder): the async core runs it in a worker thread."""

    fn: Callable[[], Any]


@dataclass(frozen=True, slots=True)
class OpenStream:
    """Open a stream of server-sent events (a GET); the result is a handle for ``ReadLine``.

    The core closes the stream at its end, on an error reading it, and when the call ends.
    """

    spec: RequestSpec


@dataclass(frozen=True, slots=True)
class ReadLine:
    """The next line of an open stream; None at its end."""

    stream: int


@dataclass(frozen=True, slots=True)
class Emit(Generic[E]):
    """An item handed out by a call that iterates."""

    item: E


#: a ``RequestSpec`` itself is the commonest effect: the result is its decoded JSON answer
Effect: TypeAlias = RequestSpec | Fetch | Download | Sleep | Offload | OpenStream | ReadLine
Op: TypeAlias = Generator[Effect, Any, T]
Stream: TypeAlias = Generator[Effect | Emit[E], Any, None]


class Driver(Generic[T]):
    """Steps a call for a core: hands it each effect's result (or error) and holds the effect
    it asks for next, and its return value at the end."""

    def __init__(self, op: Generator[Any, Any, T]) -> None:
        self._op = op
        self._result: Any = None
        self._error: BaseException | None = None
        self._done = False
        self._value: T | None = None
        self.effect: Any = None

    def next(self) -> bool:
        """Advance the call with the last result; False once it returned."""
        error, self._error = self._error, None
        result, self._result = self._result, None
        try:
            self.effect = self._op.throw(error) if error is not None else self._op.send(result)
        except StopIteration as stop:
            self._done, self._value = True, stop.value
            return False
        return True

    def give(self, result: Any) -> None:
        self._result = result

    def fail(self, error: BaseException) -> None:
        self._error = error

    def value(self) -> T:
        assert self._done, "the call has not returned"
        return cast(T, self._value)

    def close(self) -> None:
        self._op.close()


def request(
    method: str,
    path: str,
    *,
    params: Params | None = None,
    json: Any = None,
    files: Any = None,
    timeout: float | None = None,
    min_timeout: float | None = None,
    auth: bool = True,
    idempotent: bool | None = None,
    content: Content | None = None,
    headers: dict[str, str] | None = None,
) -> Op[Any]:
    """One request; the decoded JSON of its 2xx answer (None if it has none)."""
    spec = RequestSpec(
        method,
        path,
        clean_params(params),
        json,
        files,
        timeout,
        auth,
        idempotent,
        content,
        headers,
        min_timeout,
    )
    return (yield spec)


def download(
    target: str | os.PathLike[str],
    url: str,
    *,
    params: Params | None = None,
    timeout: float | None = None,
    min_timeout: float | None = None,
) -> Op[None]:
    """Stream ``GET url`` into local file ``target`` (see :class:`Download`)."""
    spec = RequestSpec("GET", url, clean_params(params), timeout=timeout, min_timeout=min_timeout)
    yield Download(Path(target), spec)


def pages(fetch: Callable[[str | None], Op[Page[E]]]) -> Stream[E]:
    """The items of a paged listing, page after page (``fetch(cursor)`` reads one page)."""
    cursor: str | None = None
    while True:
        page = yield from fetch(cursor)
        for item in page.items:
            yield Emit(item)
        if not page.next_cursor or not page.items:
            return
        cursor = page.next_cursor


def consume(op: Stream[E], judge: Callable[[E], R | None]) -> Op[R | None]:
    """Run ``op`` inside another call, passing its effects on, until ``judge`` gives something
    other than None for one of its items (that is the result; None if ``op`` ends first)."""
    try:
        effect = next(op)
        while True:
            if isinstance(effect, Emit):
                verdict = judge(effect.item)
                if verdict is not None:
                    return verdict
                effect = op.send(None)
                continue
            try:
                result = yield effect
            except BaseException as exc:  # the effect failed: the inner call decides
                effect = op.throw(exc)
            else:
                effect = op.send(result)
    except StopIteration:
        return None
    finally:
        op.close()


def collect(op: Stream[E], limit: int | None = None) -> Op[list[E]]:
    """The items of ``op`` in a list; with ``limit``, it stops reading after that many."""
    out: list[E] = []

    def keep(item: E) -> bool | None:
        out.append(item)
        return True if limit is not None and len(out) >= limit else None

    if limit is not None and limit <= 0:
        op.close()
    else:
        yield from consume(op, keep)
    return out


def twin_of(sync_cls: type) -> Callable[[C], C]:
    """Give the async twin's methods the docstrings of the sync ones, written once there."""

    def decorate(cls: C) -> C:
        for name, member in vars(cls).items():
            twin = getattr(sync_cls, name, None)
            fn = getattr(member, "__func__", member)
            if twin is not None and inspect.isfunction(fn) and not fn.__doc__:
                fn.__doc__ = inspect.getdoc(twin)
        if not cls.__doc__:
            cls.__doc__ = f"The async twin of :class:`{sync_cls.__name__}`."
        return cls

    return decorate


__all__ = [
    "Download",
    "Driver",
    "Effect",
    "Emit",
    "Fetch",
    "Offload",
    "Op",
    "OpenStream",
    "ReadLine",
    "Sleep",
    "Stream",
    "collect",
    "consume",
    "download",
    "pages",
    "request",
    "twin_of",
]
