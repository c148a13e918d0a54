"""The one loop of every push endpoint: subscribe, look, wait for a wake, look again.

A task's ``wait`` and an agent's ``poll`` (long-polls), and a task's ``watch``, its log stream
and the team stream (server-sent events) all follow notifier keys (``keys.py``) this way:

- subscribe *before* the first look, so a change between a look and the wait after it wakes
  that wait: nothing is missed;
- look: the route's database reads, in a worker thread, one hop each (``aread``/``arun``);
- hand the look to the route, which answers or sends what it shows;
- wait for a wake (a long-poll until its deadline; a stream with a keepalive tick every
  ``keepalive_s``), clear what fired, and look again;
- at server shutdown (``Notifier.close`` wakes every waiter) end after the look in hand: a
  long-poll answers with it, a stream ends, and clients reconnect to the next server.

Given the ``request``, each look after the first resolves the token again (one prebuilt
statement in the look's own transaction), as does a stream's keepalive tick that does not
look; and the follow also listens on its token's ``credential`` key, which a revocation (a
token revoked or signed out, its user disabled or removed from a team, an agent's token
rotated) fires when it commits. So a token refused now ends the follow at once: a long-poll
answers with the refusal (401, or 404 for a team no longer its), and a stream sends a last
``closed`` event carrying it (``{"status": 401, "error": {...}}``) and ends. A task token whose
task ended ends its stream at the task's own wake. Given ``team_of`` too, a client's follow
takes a place among its token's and its team's open ones (``OpenStreams``; 429 past a cap).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from fastapi import Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.types import Receive, Scope, Send

from appyard.errors import ApiError
from appyard.server.keys import Key, credential
from appyard.server.notifier import Notifier, Subscription
from appyard.server.routes.deps import bearer, check_token, context, principal_of, recheck_token
from appyard.server.security import hash_token

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

#: what "fired" before the first look (a look that acts on what woke it, the poll, tells it so)
FIRST = "first look"
#: what a stream sends when nothing happens for ``Settings.stream_keepalive_s``, so that
#: proxies keep it open
KEEPALIVE = ": keepalive\n\n"
#: the statuses that end a follow because its token or its access is gone (not a failure)
_REFUSED = frozenset({401, 403, 404})


class Follow(Generic[T]):
    """Looks of a long-poll or a stream, each after a wake of one of ``keys``.

    ``look(fired)`` does the reads and gets the keys fired since the last look (``{FIRST}``
    the first time). A long-poll gives ``timeout``: ``until(done)`` answers. A stream gives
    ``keepalive_s``: ``open()`` makes the first look before the response starts (its refusal is
    the answer), then ``async with follow: async for x in follow.looks()`` yields each look, and
    ``None`` for a keepalive tick. Options: ``again(x)``, look again at once (a full page: more
    is waiting); ``settle_s``, wait this long after a wake, so that a burst is one look (a wake
    at shutdown then ends it without a look); ``look_on_keepalive=False``, a tick does not look.
    """

    #: the newest look
    last: T

    def __init__(
        self,
        notifier: Notifier,
        keys: Sequence[Key],
        look: Callable[[set[str]], Awaitable[T]],
        *,
        timeout: float | None = None,
        keepalive_s: float | None = None,
        again: Callable[[T], bool] | None = None,
        settle_s: float = 0.0,
        look_on_keepalive: bool = True,
        request: Request | None = None,
        team_of: Callable[[T], int] | None = None,
    ) -> None:
        if (timeout is None) == (keepalive_s is None):
            raise TypeError("Follow needs a long-poll's timeout or a stream's keepalive_s")
        self._notifier = notifier
        # a revocation of its token wakes it (``keys.credential``): the token is refused at once
        self._credential = None if request is None else credential(hash_token(bearer(request)))
        self._keys = keys if self._credential is None else (*keys, self._credential)
        self._look = look
        self._loop = asyncio.get_running_loop()
        self._deadline = None if timeout is None else self._loop.time() + timeout
        self._keepalive_s = keepalive_s or 0.0
        self._again = again
        self._settle_s = settle_s
        self._look_on_keepalive = look_on_keepalive
        self._request = request
        self._team_of = team_of
        self._release: Callable[[], None] | None = None
        self._sub: Subscription | None = None
        self._looks: AsyncGenerator[T | None, None] | None = None

    async def open(self) -> T:
        """Subscribe, then make the first look; a refusal in it (a 404, say) closes the
        subscription and is raised. Once open, it only answers the first look."""
        if self._sub is None:
            self._sub = self._notifier.subscribe(*self._keys).__enter__()
            try:
                self.last = await self._look({FIRST})
                self._count()
            except BaseException:
                self._close()
                raise
        return self.last

    def _count(self) -> None:
        request, team_of = self._request, self._team_of
        if request is None or team_of is None:
            return
        principal = principal_of(request)
        if principal is None:
            raise RuntimeError("a counted follow's first look resolves the token")
        streams = context(request).streams
        self._release = streams.take(token_id=principal.token_id, team_id=team_of(self.last))

    async def __aenter__(self) -> Follow[T]:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._looks is not None:
            await self._looks.aclose()  # now, not when it is collected (that costs a task)
        self._close()

    def _close(self) -> None:
        if self._release is not None:
            self._release()
            self._release = None
        if self._sub is not None:
            self._sub.__exit__(None, None, None)
            self._sub = None

    def access_changed(self, fired: set[str]) -> bool:
        """Whether ``fired`` holds the wake of a revocation of this follow's token, or of a
        change of its user's access (disabled, removed from a team): a look that checks access
        only now and then must check it now."""
        return self._credential is not None and self._credential in fired

    def pass_on(self, key: Key) -> None:
        """Hand the wave of the ``queue:`` key that woke this look to the next waiter."""
        if self._sub is not None:
            self._sub.pass_on(key)

    async def until(self, done: Callable[[T], bool]) -> T:
        """A long-poll's answer: the first look ``done`` accepts, else the last one (at the
        deadline, or at shutdown)."""
        async with self:
            async for result in self.looks():
                if result is not None and done(result):
                    return result
        return self.last

    def looks(self) -> AsyncIterator[T | None]:
        """The first look, then one after each wake; ``None`` for a keepalive tick."""
        self._looks = self._run()
        return self._looks

    async def _run(self) -> AsyncGenerator[T | None, None]:
        sub = self._sub
        if sub is None:
            raise RuntimeError("open the Follow before its looks")
        result = self.last
        while True:
            yield result
            if sub.closing:
                return  # the server shuts down: the look in hand is the last
            if self._again is None or not self._again(result):
                if self._deadline is not None:  # a long-poll
                    remaining = self._deadline - self._loop.time()
                    if remaining <= 0:
                        return
                    await sub.wait(remaining)
                else:  # a stream
                    woke = await sub.wait(self._keepalive_s)
                    while not woke:
                        if self._look_on_keepalive:
                            yield None
                            break
                        if self._request is not None:
                            await check_token(self._request)  # no look to check it in
                        yield None
                        woke = await sub.wait(self._keepalive_s)
                    if woke and self._settle_s:
                        if sub.closing:
                            return
                        await asyncio.sleep(self._settle_s)
            if self._request is not None:
                recheck_token(self._request)
            self.last = result = await self._look(sub.take())


class EventStreamResponse(StreamingResponse):
    """Server-sent events; named as a route's ``response_class`` so that the API's schema
    says ``text/event-stream``, as the stream does."""

    media_type = "text/event-stream"


#: a stream route's documented answer: events of ``event``, ``data`` (JSON text) and ``id``
EVENT_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-sent events",
        "content": {
            "text/event-stream": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "event": {"type": "string"},
                        "data": {"type": "string"},
                        "id": {"type": "string"},
                    },
                }
            }
        },
    }
}


class _EventStream(EventStreamResponse):
    """A stream that gives back its follow's subscription and place when the response ends,
    however it ends: a client gone before the first event never starts the generator (whose
    ``async with`` would have closed it)."""

    def __init__(self, events: AsyncIterator[str], follow: Follow[Any]) -> None:
        super().__init__(
            _until_refused(events),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._follow = follow

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._follow._close()


async def _until_refused(events: AsyncIterator[str]) -> AsyncIterator[str]:
    """``events``, ended by a last ``closed`` event when a look is refused: the token was
    revoked or expired meanwhile (401), or its access to what it follows is gone (403, 404).
    The event carries what the refusal's answer would: ``{"status": 401, "error": {...}}``.
    """
    try:
        async for event in events:
            yield event
    except ApiError as exc:
        if exc.status_code not in _REFUSED:
            raise
        yield closing_event(exc)


def closing_event(exc: ApiError) -> str:
    """The last event of a stream whose look was refused."""
    body = {"status": exc.status_code, **exc.to_body()}
    return f"event: closed\ndata: {json.dumps(body)}\n\n"


def snapshot_stream(follow: Follow[M], event: str, ended: Callable[[M], bool]) -> StreamingResponse:
    """A watch: the followed object as ``event`` now and after every change (an unchanged
    look sends nothing; changes faster than a client reads are coalesced to the newest), until
    ``ended`` says so; then ``end``. Ended at shutdown, the client opens the watch again."""

    async def events() -> AsyncIterator[str]:
        sent = ""
        async with follow:
            async for info in follow.looks():
                if info is None:
                    yield KEEPALIVE
                    continue
                data = info.model_dump_json()
                if data != sent:
                    yield f"event: {event}\ndata: {data}\n\n"
                    sent = data
                if ended(info):
                    yield "event: end\ndata: {}\n\n"
                    return

    return event_stream(events(), follow)


def event_stream(events: AsyncIterator[str], follow: Follow[T]) -> StreamingResponse:
    """Server-sent events of ``follow``, sent as they come (no caching, no proxy buffering).

    A client that does not read holds up only its own stream: Starlette awaits each send, and
    uvicorn's send waits while the connection's write buffer is above its high-water mark
    (64 KiB), so nothing more is looked up or buffered for it meanwhile; wakes in between are
    kept as a set of keys, one look after it drains.
    """
    return _EventStream(events, follow)
