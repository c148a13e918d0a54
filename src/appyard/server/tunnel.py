"""The server's side of the agents' tunnels (docs/tunnel.md; frames in ``schemas/tunnel.py``).

Each connected agent has one ``Tunnel``: the WebSocket it opened, and the streams (requests
into its apps) under way on it. The ``TunnelRegistry`` maps agent ids to their tunnels in this
server process; with several replicas, each knows only the tunnels connected to it.

Everything here runs on the event loop. One reader per tunnel dispatches the agent's frames to
their streams without ever waiting on a stream's consumer: a stream's incoming DATA is bounded
by the window the agent keeps to, so a client that reads its answer slowly holds up only its
own stream (and an agent that overruns a window has that stream reset).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from appyard.errors import ApiError
from appyard.schemas.tunnel import (
    DEFAULT_WS_MESSAGE_BYTES,
    Close,
    Frame,
    FrameError,
    Head,
    Hello,
    Kind,
    MessageTooBig,
    Open,
    Reassembly,
    Reset,
    decode,
    encode,
    encode_close,
    encode_credit,
    encode_json,
    encode_whole,
    is_close,
    message_frames,
    read_close,
)

log = logging.getLogger("appyard.server")

SendBytes = Callable[[bytes], Awaitable[None]]


@dataclass(frozen=True)
class TunnelLimits:
    """What a tunnel takes (``Settings``: ``APPYARD_TUNNEL_*``, ``APPYARD_MAX_REQUESTS_*``)."""

    window: int = 8
    chunk: int = 64 * 1024
    #: requests in flight into one session at once (past it: 429)
    per_session: int = 16
    #: streams in flight on one agent's tunnel at once (past it: 429)
    per_tunnel: int = 256
    #: the largest message of an app page's websocket, either way (``APPYARD_MAX_WS_MESSAGE_BYTES``)
    ws_message: int = DEFAULT_WS_MESSAGE_BYTES


class StreamFailed(Exception):
    """The stream ended without an answer: the agent reset it, or the tunnel went down."""

    def __init__(self, reset: Reset) -> None:
        super().__init__(reset.message)
        self.reset = reset


class ServerStream:
    """One request into an app: the request body goes out under the agent's credit; the
    answer's head and body come back through ``head()`` and ``body()``."""

    def __init__(self, tunnel: Tunnel, stream_id: int, task_id: int) -> None:
        self.tunnel = tunnel
        self.id = stream_id
        self.task_id = task_id
        self._head: asyncio.Future[Head] = asyncio.get_running_loop().create_future()
        self._chunks: asyncio.Queue[bytes | Reset | None] = asyncio.Queue()
        self._queued = 0  # DATA frames received and not consumed (at most the window)
        self._credit = tunnel.limits.window  # DATA frames we may still send
        self._credit_changed = asyncio.Event()
        self.failure: Reset | None = None
        self.ended = False  # the agent's END or RESET came, or the tunnel went down
        #: the answer is not wanted (``skip_response``): its DATA is dropped as it comes
        self.discard = False

    # -- from the reader ---------------------------------------------------------------------
    def on_frame(self, frame: Frame) -> None:
        kind = frame.kind
        if kind is Kind.HEAD:
            if not self._head.done():
                self._head.set_result(Head.model_validate(frame.json()))
        elif kind is Kind.ANSWER:
            self._on_answer(frame)
        elif kind is Kind.DATA:
            if self.discard:
                self.tunnel.post(encode_credit(self.id, 1))
                return
            self._queued += 1
            if self._queued > self.tunnel.limits.window:
                self.tunnel.post(
                    encode_json(
                        Kind.RESET, self.id, Reset(code="protocol", message="window overrun")
                    )
                )
                self.fail(Reset(code="protocol", message="the agent overran the stream's window"))
                return
            self._chunks.put_nowait(frame.payload)
        elif kind is Kind.END:
            self.ended = True
            self._chunks.put_nowait(None)
            self.tunnel.forget(self)
        elif kind is Kind.CREDIT:
            self._credit += frame.credit()
            self._credit_changed.set()
        elif kind is Kind.RESET:
            data = frame.json()
            try:
                reset = Reset.model_validate(data)
            except ValueError:
                reset = Reset(code="protocol", message=str(data.get("message", "")))
            self.fail(reset)

    def _on_answer(self, frame: Frame) -> None:
        """HEAD, the whole body and END at once (no credit is owed for it)."""
        raw, body = frame.whole()
        if not self._head.done():
            self._head.set_result(Head.model_validate(raw))
        self.ended = True
        if body and not self.discard:
            self._queued += 1
            self._chunks.put_nowait(body)
        self._chunks.put_nowait(None)
        self.tunnel.forget(self)

    def fail(self, reset: Reset) -> None:
        """The stream is over without (the rest of) an answer."""
        if self.ended and self.failure is not None:
            return
        self.failure = reset
        self.ended = True
        if not self._head.done():
            self._head.set_exception(StreamFailed(reset))
            self._head.exception()  # retrieved: no "never retrieved" warning if none awaits
        self._chunks.put_nowait(reset)
        self._credit_changed.set()
        self.tunnel.forget(self)

    # -- from the route ----------------------------------------------------------------------
    async def send_request(self, open_: Open, body: bytes) -> None:
        """OPEN, the body in DATA frames as the agent's credit allows, END; in one ``REQUEST``
        when the body fits in one piece and the agent reads those."""
        if self.tunnel.whole and len(body) <= self.tunnel.limits.chunk:
            await self.tunnel.send(encode_whole(Kind.REQUEST, self.id, open_, body))
            return
        await self.send_open(open_)
        chunk = self.tunnel.limits.chunk
        for start in range(0, len(body), chunk):
            await self.send_data(body[start : start + chunk])
        await self.send_end()

    async def send_open(self, open_: Open) -> None:
        await self.tunnel.send(encode_json(Kind.OPEN, self.id, open_))

    async def send_data(self, piece: bytes) -> None:
        """One piece of the request body (at most ``chunk`` bytes; a longer one is split),
        once the agent's credit allows: a body sent this way never sits whole in memory."""
        chunk = self.tunnel.limits.chunk
        for start in range(0, len(piece), chunk):
            while self._credit <= 0:
                if self.failure is not None:
                    raise StreamFailed(self.failure)
                self._credit_changed.clear()
                await self._credit_changed.wait()
            if self.failure is not None:
                raise StreamFailed(self.failure)
            self._credit -= 1
            await self.tunnel.send(encode(Kind.DATA, self.id, piece[start : start + chunk]))

    async def send_end(self) -> None:
        if self.failure is not None:
            raise StreamFailed(self.failure)
        await self.tunnel.send(encode(Kind.END, self.id))

    async def head(self) -> Head:
        return await asyncio.shield(self._head)

    async def body(self) -> AsyncIterator[bytes]:
        """The answer's body, piece by piece; each piece consumed gives the agent its credit
        back. Raises ``StreamFailed`` if the stream is reset (or the tunnel lost) midway."""
        while True:
            item = await self._chunks.get()
            if item is None:
                return
            if isinstance(item, Reset):
                raise StreamFailed(item)
            self._queued -= 1
            if not self.ended:
                await self.tunnel.send(encode_credit(self.id, 1))
            yield item

    async def read_all(self, limit: int) -> tuple[bytes, bool]:
        """Up to ``limit`` bytes of the body, and whether it was cut there (the rest is not
        wanted: the stream is cancelled)."""
        out = bytearray()
        async for piece in self.body():
            out += piece
            if len(out) > limit:
                await self.cancel()
                return bytes(out[:limit]), True
        return bytes(out), False

    async def cancel(self, message: str = "the client gave up") -> None:
        """Reset the stream (the agent stops its request into the app), unless it is over."""
        if self.ended:
            self.tunnel.forget(self)
            return
        self.fail(Reset(code="cancelled", message=message))
        with contextlib.suppress(Exception):
            await self.tunnel.send(
                encode_json(Kind.RESET, self.id, Reset(code="cancelled", message=message))
            )

    def release_when_done(self) -> None:
        """Answer not wanted: its frames are dropped as they come (the stream keeps its place
        among the session's requests until the app has answered)."""
        self.discard = True
        while not self._chunks.empty():
            item = self._chunks.get_nowait()
            if isinstance(item, bytes):
                self._queued -= 1
                self.tunnel.post(encode_credit(self.id, 1))


@dataclass(frozen=True, slots=True)
class WsMessage:
    """A whole WebSocket message of the app's, to hand on to the client."""

    text: bool
    data: bytes


class WebSocketStream(ServerStream):
    """An app page's own WebSocket through the tunnel (``Open.kind == "websocket"``).

    ``head()`` is the agent's answer once the app accepted the handshake (101); then the
    client's messages go out with ``send_message`` under the agent's credit, and the app's come
    in through ``receive()`` (each followed by ``sent()`` once handed on: the credit goes back
    only then, so a client that reads slowly stalls only this stream). ``receive()`` ends with
    the app's ``Close``, or a ``Reset`` (the agent's, or the tunnel lost).
    """

    def __init__(self, tunnel: Tunnel, stream_id: int, task_id: int) -> None:
        super().__init__(tunnel, stream_id, task_id)
        self._inbox: asyncio.Queue[WsMessage | Close | Reset] = asyncio.Queue()
        self._assembly = Reassembly(tunnel.limits.window, tunnel.limits.ws_message)

    def on_frame(self, frame: Frame) -> None:
        kind = frame.kind
        if kind is Kind.MESSAGE and is_close(frame):
            self._close(read_close(frame))
        elif kind is Kind.MESSAGE:
            try:
                message, credit = self._assembly.feed(frame.payload)
            except MessageTooBig as exc:
                why = f"task {self.task_id}: the app sent {exc} (APPYARD_MAX_WS_MESSAGE_BYTES)"
                self.tunnel.post(encode_close(self.id, Close(code=1009, reason="message too big")))
                self._close(Close(code=1009, reason=why))
                return
            if credit:
                self.tunnel.post(encode_credit(self.id, credit))
            if message is not None:
                self._inbox.put_nowait(WsMessage(*message))
        elif kind in (Kind.HEAD, Kind.CREDIT, Kind.RESET):
            super().on_frame(frame)
        else:
            raise FrameError(f"a {kind.name} frame on a websocket stream")

    def _close(self, close: Close) -> None:
        if self.ended:
            return
        self.ended = True
        self._inbox.put_nowait(close)
        self._credit_changed.set()
        self.tunnel.forget(self)

    def fail(self, reset: Reset) -> None:
        already = self.ended
        super().fail(reset)
        if not already:
            self._inbox.put_nowait(reset)

    async def receive(self) -> WsMessage | Close | Reset:
        """The app's next message, or how the stream ended."""
        return await self._inbox.get()

    def sent(self) -> None:
        """The message ``receive`` gave was handed on to the client: its credit goes back."""
        credit = self._assembly.sent()
        if credit and not self.ended:
            self.tunnel.post(encode_credit(self.id, credit))

    async def send_message(self, data: bytes, text: bool) -> None:
        """One message of the client's, in pieces as the agent's credit allows (raises
        ``StreamFailed`` once the stream is over)."""
        for frame in message_frames(self.id, data, text, self.tunnel.limits.chunk):
            while self._credit <= 0 and not self.ended:
                self._credit_changed.clear()
                await self._credit_changed.wait()
            if self.ended:
                raise StreamFailed(self.failure or Reset(code="cancelled", message="closed"))
            self._credit -= 1
            await self.tunnel.send(frame)

    async def send_close(self, code: int | None, reason: str) -> None:
        """The client's side closed (or the server closes it): the app is told, and the stream
        is over here."""
        if self.ended:
            self.tunnel.forget(self)
            return
        self.ended = True
        self._credit_changed.set()
        self.tunnel.forget(self)
        with contextlib.suppress(Exception):
            await self.tunnel.send(encode_close(self.id, Close(code=code, reason=reason)))


class Tunnel:
    """One agent's WebSocket and the streams under way on it."""

    def __init__(
        self,
        agent_id: int,
        send_bytes: SendBytes,
        limits: TunnelLimits,
        whole: bool = False,
    ) -> None:
        self.agent_id = agent_id
        self.limits = limits
        #: the agent reads ``REQUEST`` frames (it said so when it connected)
        self.whole = whole
        self._send_bytes = send_bytes
        self._send_lock = asyncio.Lock()
        self.streams: dict[int, ServerStream] = {}
        self.per_task: dict[int, int] = {}
        self._next_id = 1
        self.closed = False
        self.close_reason = ""
        self._posted: set[asyncio.Task[None]] = set()

    async def send(self, data: bytes) -> None:
        if self.closed:
            raise StreamFailed(Reset(code="cancelled", message=self.down_message()))
        async with self._send_lock:
            await self._send_bytes(data)

    def post(self, data: bytes) -> None:
        """Send without waiting (from the reader, which must never wait on a send)."""
        if self.closed:
            return
        task = asyncio.get_running_loop().create_task(self._post(data))
        self._posted.add(task)
        task.add_done_callback(self._posted.discard)

    async def _post(self, data: bytes) -> None:
        with contextlib.suppress(Exception):
            await self.send(data)

    async def hello(self) -> None:
        await self.send(
            encode_json(
                Kind.HELLO,
                0,
                Hello(
                    window=self.limits.window,
                    chunk=self.limits.chunk,
                    whole=True,
                    ws_message=self.limits.ws_message,
                ),
            )
        )

    def down_message(self) -> str:
        why = f" ({self.close_reason})" if self.close_reason else ""
        return f"the tunnel of agent {self.agent_id} closed{why}"

    def open_stream(self, task_id: int) -> ServerStream:
        """A new stream into ``task_id``'s app, or a 429 past the caps."""
        if self.closed:
            raise tunnel_down(self.agent_id, task_id)
        if self.per_task.get(task_id, 0) >= self.limits.per_session:
            raise _too_many(
                f"task {task_id} has {self.limits.per_session} requests in flight already, the "
                "most a session takes at once (APPYARD_MAX_REQUESTS_PER_SESSION)"
            )
        if len(self.streams) >= self.limits.per_tunnel:
            raise _too_many(
                f"agent {self.agent_id} has {self.limits.per_tunnel} requests in flight already, "
                "the most its tunnel takes at once (APPYARD_MAX_REQUESTS_PER_AGENT)"
            )
        stream_id = self._next_id
        self._next_id = self._next_id + 1 if self._next_id < 2**31 else 1
        while stream_id in self.streams:
            stream_id += 1
        stream = ServerStream(self, stream_id, task_id)
        self.streams[stream_id] = stream
        self.per_task[task_id] = self.per_task.get(task_id, 0) + 1
        return stream

    def open_websocket(self, task_id: int) -> WebSocketStream:
        """A new websocket stream into ``task_id``'s app, counted as a request against the same
        caps (a 429 past them)."""
        plain = self.open_stream(task_id)
        stream = WebSocketStream(self, plain.id, task_id)
        self.streams[plain.id] = stream
        return stream

    def forget(self, stream: ServerStream) -> None:
        if self.streams.get(stream.id) is stream:
            del self.streams[stream.id]
            left = self.per_task.get(stream.task_id, 1) - 1
            if left > 0:
                self.per_task[stream.task_id] = left
            else:
                self.per_task.pop(stream.task_id, None)

    def dispatch(self, message: bytes) -> None:
        """One frame from the agent to its stream (frames of a stream already over are
        dropped: a RESET and the agent's last frames may cross)."""
        frame = decode(message)
        stream = self.streams.get(frame.stream)
        if stream is None:
            return
        try:
            stream.on_frame(frame)
        except FrameError as exc:
            self.post(
                encode_json(Kind.RESET, frame.stream, Reset(code="protocol", message=str(exc)))
            )
            stream.fail(Reset(code="protocol", message=f"the agent sent a bad frame: {exc}"))

    def close(self, reason: str) -> None:
        """The WebSocket is gone: every stream under way fails, naming the agent."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        for stream in list(self.streams.values()):
            stream.fail(Reset(code="cancelled", message=self.down_message()))
        for task in list(self._posted):
            task.cancel()


class TunnelRegistry:
    """The agents' tunnels connected to this server process, by agent id."""

    def __init__(self, limits: TunnelLimits) -> None:
        self.limits = limits
        self._tunnels: dict[int, Tunnel] = {}

    def attach(self, tunnel: Tunnel) -> None:
        """``tunnel`` is now the agent's; an older one of the same agent is closed (the agent
        reconnected before the server saw the old connection drop)."""
        old = self._tunnels.get(tunnel.agent_id)
        self._tunnels[tunnel.agent_id] = tunnel
        if old is not None and old is not tunnel:
            old.close("the agent opened a new tunnel")

    def detach(self, tunnel: Tunnel) -> None:
        if self._tunnels.get(tunnel.agent_id) is tunnel:
            del self._tunnels[tunnel.agent_id]

    def get(self, agent_id: int) -> Tunnel | None:
        tunnel = self._tunnels.get(agent_id)
        return None if tunnel is None or tunnel.closed else tunnel

    def __len__(self) -> int:
        return len(self._tunnels)


def tunnel_down(agent_id: int, task_id: int, why: str = "") -> ApiError:
    return ApiError(
        f"Cannot reach task {task_id}: agent {agent_id} has no tunnel to this server"
        f"{' (' + why + ')' if why else ''}. The agent reconnects on its own when it runs and "
        "can reach the server; retry in a few seconds. With several server replicas, give each "
        "its APPYARD_REPLICA_URL so that they relay such requests to the one the agent's "
        "tunnel is connected to (docs/tunnel.md).",
        status_code=503,
        code="tunnel_down",
        details={"agent_id": agent_id, "task_id": task_id, "retry_after_s": 2},
    )


def _too_many(why: str) -> ApiError:
    return ApiError(
        f"Too many requests in flight: {why}. Retry when one has been answered.",
        status_code=429,
        code="too_many_requests",
        details={"retry_after_s": 1},
    )
