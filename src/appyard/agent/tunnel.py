"""The agent's tunnel: one WebSocket it opens to the server, carrying requests into its apps.

The server never dials the agent's machine (it may sit behind NAT or a firewall): the agent
connects out to ``/api/v1/agents/{agent_id}/tunnel`` with its token, and keeps reconnecting
with capped backoff while it runs. Each stream the server opens on it (``schemas/tunnel.py``)
is one HTTP request to a running app's own server on ``127.0.0.1:APP_PORT``, forwarded in its
own thread (``agent/app_http.py``), the bodies streamed both ways in chunks under the window the server's
``HELLO`` sets: a slow or dead app holds up only its own streams. Apps re-adopted after an
agent restart are reachable again as soon as the new agent's tunnel is up (their port is in
the task's ``state.json``).

A stream opened as a websocket (an app page's own WebSocket) is dialled to
``ws://127.0.0.1:APP_PORT/<path>`` with the websockets library (``AgentWebSocket``): the app's
messages go to the server in ``MESSAGE`` frames, the server's to the app, close codes both ways.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from appyard.agent.app_http import (
    AppBroken,
    AppConnections,
    AppResponse,
    AppTimeout,
    AppUnreachable,
)
from appyard.agent.client import Backoff
from appyard.domain.hop_headers import HOP_BY_HOP
from appyard.schemas.tunnel import (
    DEFAULT_CHUNK_BYTES,
    DEFAULT_WINDOW,
    DEFAULT_WS_MESSAGE_BYTES,
    FEATURES_HEADER,
    HEADER_BYTES,
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
    ResetCode,
    close_reason,
    decode,
    encode,
    encode_close,
    encode_credit,
    encode_json,
    encode_whole,
    is_close,
    message_frames,
    read_close,
    sendable_close,
)

log = logging.getLogger("appyard.agent")

#: streams this agent forwards at once (the server caps them per agent too)
MAX_STREAMS = 512
#: headers that belong to one hop and are not passed on (either way)
_HOP_BY_HOP = HOP_BY_HOP | {"host"}


class _Cancelled(Exception):
    """The server reset the stream (its client went away, or its deadline passed)."""


def tunnel_url(server: str, agent_id: int) -> str:
    """``http://host:port`` -> ``ws://host:port/api/v1/agents/<id>/tunnel`` (https: wss)."""
    parts = urlsplit(server)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}/api/v1/agents/{agent_id}/tunnel"


class _Workers:
    """Daemon threads that run streams, each kept for the next stream once its own is done.

    A thread per stream, as many as streams at once (a slow app ties up only its own), but
    not a new one for each request: starting a thread is a good part of a small request's
    cost. Daemon threads, unlike a ``ThreadPoolExecutor``'s, never hold up the agent's exit
    behind a request an app is still working on.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._idle = 0
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._idle > 0:
                self._idle -= 1
                start = False
            else:
                start = True
        self._jobs.put(job)
        if start:
            threading.Thread(target=self._run, name=self.name, daemon=True).start()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                job()
            except Exception:  # a stream's ``run`` catches its own; nothing may end the thread
                log.exception("a tunnel stream failed")
            with self._lock:
                self._idle += 1


class AgentStream:
    """One request into an app: its body comes in from the server, the app's answer goes out."""

    def __init__(
        self, tunnel: TunnelClient, stream_id: int, open_: Open, body: bytes | None = None
    ) -> None:
        self.tunnel = tunnel
        self.id = stream_id
        self.open = open_
        #: the whole request body, when it came in one ``REQUEST`` (no DATA, no credit)
        self.body = body
        self.deadline = time.monotonic() + open_.timeout
        self._incoming: queue.Queue[bytes | Reset | None] = queue.Queue()
        self._queued = 0
        self._credit = tunnel.window
        self._cond = threading.Condition()
        self.cancelled = False

    # -- from the tunnel's reader ------------------------------------------------------------
    def on_frame(self, frame: Frame) -> None:
        if frame.kind is Kind.DATA:
            with self._cond:
                self._queued += 1
                overrun = self._queued > self.tunnel.window
            if overrun:
                self.reset("protocol", "the server overran the stream's window")
                self.cancel()
                return
            self._incoming.put(frame.payload)
        elif frame.kind is Kind.END:
            self._incoming.put(None)
        elif frame.kind is Kind.CREDIT:
            with self._cond:
                self._credit += frame.credit()
                self._cond.notify_all()
        elif frame.kind is Kind.RESET:
            self.cancel()

    def cancel(self) -> None:
        with self._cond:
            self.cancelled = True
            self._cond.notify_all()
        self._incoming.put(Reset(code="cancelled"))

    # -- the stream's own thread -------------------------------------------------------------
    def _left(self) -> float:
        return self.deadline - time.monotonic()

    def _request_body(self) -> Iterator[bytes]:
        """The request's body as the server sends it; each piece taken gives its credit back."""
        while True:
            try:
                item = self._incoming.get(timeout=max(0.0, self._left()))
            except queue.Empty:
                raise AppTimeout("the request's body did not arrive in time") from None
            if item is None:
                return
            if isinstance(item, Reset):
                raise _Cancelled()
            with self._cond:
                self._queued -= 1
            self.tunnel.send(encode_credit(self.id, 1))
            yield item

    def _wait_credit(self) -> bool:
        """Wait until one more DATA frame may go; False if the stream was cancelled."""
        with self._cond:
            while self._credit <= 0 and not self.cancelled:
                left = self._left()
                if left <= 0:
                    raise AppTimeout("the server did not take the answer in time")
                self._cond.wait(left)
            if self.cancelled:
                return False
            self._credit -= 1
            return True

    def reset(self, code: ResetCode, message: str) -> None:
        self.tunnel.send(encode_json(Kind.RESET, self.id, Reset(code=code, message=message)))

    def run(self) -> None:
        try:
            self._forward()
        except _Cancelled:
            pass
        except AppUnreachable as exc:
            self.reset("app_unreachable", str(exc))
        except AppTimeout as exc:
            self.reset("app_timeout", f"no answer within {self.open.timeout:g} s ({exc})")
        except (AppBroken, OSError) as exc:
            self.reset("app_broken", str(exc))
        except Exception as exc:
            log.exception("tunnel stream %d of task %d failed", self.id, self.open.task_id)
            self.reset("app_broken", f"the agent failed forwarding it: {type(exc).__name__}")
        finally:
            self.tunnel.forget(self)

    def _forward(self) -> None:
        o = self.open
        port = self.tunnel.app_port(o.task_id)
        if port is None:
            self.reset("not_here", f"agent runs no app of task {o.task_id} now")
            return
        headers = [(k, v) for k, v in o.headers if k.lower() not in _HOP_BY_HOP]
        body = self.body if self.body is not None else self._request_body()
        response = self.tunnel.http.request(port, o.method, o.path, headers, body, self.deadline)
        try:
            self._answer(response)
        finally:
            response.close()

    def _answer(self, response: AppResponse) -> None:
        if self.cancelled:
            return
        head = Head(
            status=response.status,
            headers=[(k, v) for k, v in response.headers if k.lower() not in _HOP_BY_HOP],
        )
        length = response.length
        if self.tunnel.server_whole and length is not None and length <= self.tunnel.chunk:
            # the usual small reply: head, body and end in one message
            body = response.read()
            if not self.cancelled:
                self.tunnel.send(encode_whole(Kind.ANSWER, self.id, head, body))
            return
        self.tunnel.send(encode_json(Kind.HEAD, self.id, head))
        for piece in response.pieces(self.tunnel.chunk):
            if not self._wait_credit():
                return
            self.tunnel.send(encode(Kind.DATA, self.id, piece))
        if not self.cancelled:
            self.tunnel.send(encode(Kind.END, self.id))


#: of the client's handshake headers, those the websocket library makes itself for the app
_WS_OWN = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-accept",
        "sec-websocket-protocol",
    }
)
#: how long the app has to read a close and answer it before its connection is dropped
WS_CLOSE_TIMEOUT_S = 2.0


class AgentWebSocket(AgentStream):
    """An app page's own WebSocket: the agent dials the app's port with the websockets library
    and passes messages and close codes both ways. Two threads: this stream's own reads the
    app's messages and sends them to the server as credit allows; a writer hands the server's
    messages to the app (a slow app stalls only it, and credit then stops the server's side)."""

    def __init__(self, tunnel: TunnelClient, stream_id: int, open_: Open) -> None:
        super().__init__(tunnel, stream_id, open_)
        self._assembly = Reassembly(tunnel.window, tunnel.ws_message)
        self._outbox: queue.Queue[tuple[bool, bytes] | Close | Reset] = queue.Queue()
        self._app: ClientConnection | None = None
        #: the server's side is over (its CLOSE or RESET, or the tunnel lost): the app's closing
        #: answer is not passed back
        self.done = threading.Event()
        self._writing = False

    # -- from the tunnel's reader (never waits on the app) -----------------------------------
    def on_frame(self, frame: Frame) -> None:
        if frame.kind is Kind.MESSAGE and is_close(frame):
            try:
                close = read_close(frame)
            except FrameError:
                close = Close(code=1002, reason="bad close from the server")
            self._outbox.put(close)
        elif frame.kind is Kind.MESSAGE:
            try:
                with self._cond:
                    message, credit = self._assembly.feed(frame.payload)
            except MessageTooBig as exc:
                self.tunnel.send(encode_close(self.id, Close(code=1009, reason="message too big")))
                self._outbox.put(Close(code=1009, reason=close_reason(f"the client sent {exc}")))
                return
            except FrameError as exc:
                self.reset("protocol", str(exc))
                self.cancel()
                return
            if credit:
                self.tunnel.send(encode_credit(self.id, credit))
            if message is not None:
                self._outbox.put(message)
        elif frame.kind in (Kind.CREDIT, Kind.RESET):
            super().on_frame(frame)

    def cancel(self) -> None:
        super().cancel()
        self._outbox.put(Reset(code="cancelled", message="the server ended the stream"))
        app = self._app
        if app is not None and self._writing:
            # the writer is stuck on an app that does not read: cut its connection
            with contextlib.suppress(OSError):
                app.socket.shutdown(socket.SHUT_RDWR)

    # -- the stream's threads ----------------------------------------------------------------
    def run(self) -> None:
        try:
            app = self._dial()
            if app is None:
                return
            writer = threading.Thread(
                target=self._to_app, args=(app,), name=f"{self.name()}-w", daemon=True
            )
            writer.start()
            try:
                self._from_app(app)
            finally:
                self._outbox.put(Reset(code="cancelled", message="the app's side is over"))
                writer.join(WS_CLOSE_TIMEOUT_S + 1)
                with contextlib.suppress(Exception):
                    app.close(1001, "the platform ended the connection")
        except Exception as exc:
            log.exception("websocket stream %d of task %d failed", self.id, self.open.task_id)
            self.reset("app_broken", f"the agent failed forwarding it: {type(exc).__name__}")
        finally:
            self.tunnel.forget(self)

    def name(self) -> str:
        return f"tunnel-{self.open.task_id}-{self.id}"

    def _dial(self) -> ClientConnection | None:
        """The app's WebSocket at the OPEN's path, and HEAD 101 sent; None if it failed (the
        stream was reset, saying why)."""
        o = self.open
        port = self.tunnel.app_port(o.task_id)
        if port is None:
            self.reset("not_here", f"agent runs no app of task {o.task_id} now")
            return None
        offered: list[Subprotocol] = []
        headers: list[tuple[str, str]] = []
        for k, v in o.headers:
            key = k.lower()
            if key == "sec-websocket-protocol":
                offered += [Subprotocol(x.strip()) for x in v.split(",") if x.strip()]
            elif key not in _HOP_BY_HOP and key not in _WS_OWN:
                headers.append((k, v))
        timeout = max(0.01, min(o.timeout, self._left()))
        try:
            app = connect(
                f"ws://127.0.0.1:{port}{o.path}",
                additional_headers=headers,
                subprotocols=offered or None,
                user_agent_header=None,
                compression=None,
                max_size=self.tunnel.ws_message,
                max_queue=4,  # the app's frames read ahead: a few, however slow the client
                open_timeout=timeout,
                ping_interval=20,
                ping_timeout=20,
                close_timeout=WS_CLOSE_TIMEOUT_S,
                proxy=None,
                legacy=True,  # a connection held by this stream, closed by it
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            self.reset(
                "app_refused",
                f"the app answered the websocket handshake at {o.path.split('?')[0]} with HTTP "
                f"{status}, not 101: it serves no websocket there",
            )
            return None
        except ConnectionRefusedError as exc:
            self.reset("app_unreachable", f"nothing answers on the app's port ({exc})")
            return None
        except TimeoutError:
            self.reset("app_timeout", f"the app did not finish the handshake in {timeout:g} s")
            return None
        except (InvalidHandshake, OSError, ValueError) as exc:
            self.reset("app_broken", f"the websocket handshake failed: {exc}")
            return None
        self._app = app
        if self.cancelled:
            app.close(1001, "the client went away")
            return None
        protocol = app.subprotocol
        head = Head(status=101, headers=[("sec-websocket-protocol", protocol)] if protocol else [])
        self.tunnel.send(encode_json(Kind.HEAD, self.id, head))
        return app

    def _from_app(self, app: ClientConnection) -> None:
        """The app's messages to the server, each piece as credit allows; then its close."""
        while True:
            try:
                message = app.recv()
            except ConnectionClosed as exc:
                if self.done.is_set() or self.cancelled:
                    return
                self.done.set()
                ours = exc.sent is not None and not exc.rcvd_then_sent
                if ours and exc.sent is not None and exc.sent.code == 1009:  # max_size refused it
                    close = Close(
                        code=1009,
                        reason=close_reason(
                            f"task {self.open.task_id}: the app sent a message over "
                            f"{self.tunnel.ws_message} bytes (APPYARD_MAX_WS_MESSAGE_BYTES)"
                        ),
                    )
                elif exc.rcvd is not None:
                    close = Close(code=exc.rcvd.code, reason=exc.rcvd.reason)
                else:
                    self.reset(
                        "app_broken", "the app's websocket connection dropped without a close"
                    )
                    return
                self.tunnel.send(encode_close(self.id, close))
                return
            text = isinstance(message, str)
            data = message.encode() if isinstance(message, str) else message
            for frame in message_frames(self.id, data, text, self.tunnel.chunk):
                if not self._take_credit():
                    return
                self.tunnel.send(frame)

    def _take_credit(self) -> bool:
        """Wait until one more MESSAGE frame may go (no deadline: a websocket lasts); False
        once the stream is over."""
        with self._cond:
            while self._credit <= 0 and not self.cancelled and not self.done.is_set():
                self._cond.wait(30.0)
            if self.cancelled or self.done.is_set():
                return False
            self._credit -= 1
            return True

    def _to_app(self, app: ClientConnection) -> None:
        """The server's messages to the app, each one's credit given back once the app has
        it; then the client's close, passed on."""
        try:
            self._write(app)
        except (ConnectionClosed, OSError):
            pass  # the app's side is over: its reader says so
        except Exception:
            log.exception("websocket stream %d of task %d failed", self.id, self.open.task_id)
            self.reset("app_broken", "the agent failed forwarding a message to the app")
            self.cancel()
            with contextlib.suppress(Exception):
                app.close(1011, "the platform failed forwarding a message")

    def _write(self, app: ClientConnection) -> None:
        while True:
            item = self._outbox.get()
            if isinstance(item, tuple):
                text, data = item
                self._writing = True
                try:
                    app.send(data, text=text)
                finally:
                    self._writing = False
                with self._cond:
                    credit = self._assembly.sent()
                if credit and not self.done.is_set():
                    self.tunnel.send(encode_credit(self.id, credit))
                continue
            self.done.set()
            with self._cond:
                self._cond.notify_all()
            if isinstance(item, Close):
                code = item.code
                reason = item.reason
                if code == 1006:
                    reason = "the client's connection was lost"
                app.close(sendable_close(code), close_reason(reason) if code != 1005 else "")
            else:
                app.close(1001, "the platform ended the connection")
            return


class TunnelClient(threading.Thread):
    """Keeps the agent's tunnel open while the agent runs, and forwards its streams."""

    def __init__(
        self,
        server: str,
        token: str,
        agent_id: int,
        app_port: Callable[[int], int | None],
        stop: threading.Event,
    ) -> None:
        super().__init__(name="tunnel", daemon=True)
        self.url = tunnel_url(server, agent_id)
        self.token = token
        self.agent_id = agent_id
        self.app_port = app_port
        self.stop_event = stop
        self.window = DEFAULT_WINDOW
        self.chunk = DEFAULT_CHUNK_BYTES
        #: the largest WebSocket message of an app page's websocket (the server's HELLO says)
        self.ws_message = DEFAULT_WS_MESSAGE_BYTES
        #: the server reads ``ANSWER`` frames (its HELLO said so)
        self.server_whole = False
        #: the streams' threads, kept for the next streams (a thread per stream, reused)
        self._pool = _Workers("tunnel-stream")
        #: kept-alive connections to the apps' ports
        self.http = AppConnections()
        self._conn: ClientConnection | None = None
        self._send_lock = threading.Lock()
        self._streams: dict[int, AgentStream] = {}
        self._lock = threading.Lock()
        #: set while a tunnel is open (tests and ``appyard agent`` logs look at it)
        self.connected = threading.Event()

    # -- sending (from any thread) -----------------------------------------------------------
    def send(self, data: bytes) -> None:
        conn = self._conn
        if conn is None:
            return  # the tunnel is down: the server has failed the stream already
        with self._send_lock, contextlib.suppress(ConnectionClosed, OSError):
            conn.send(data)

    def forget(self, stream: AgentStream) -> None:
        with self._lock:
            if self._streams.get(stream.id) is stream:
                del self._streams[stream.id]

    # -- the connection ----------------------------------------------------------------------
    def close(self) -> None:
        """Close the tunnel for good (the agent exits); the thread ends."""
        self.stop_event.set()
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
        self.http.close()

    def _connect(self) -> ClientConnection:
        parts = urlsplit(self.url)
        port = parts.port or (443 if parts.scheme == "wss" else 80)
        sock = socket.create_connection((parts.hostname or "127.0.0.1", port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            return connect(
                self.url,
                sock=sock,
                additional_headers={
                    "Authorization": f"Bearer {self.token}",
                    FEATURES_HEADER: "whole",
                },
                user_agent_header="appyard-agent",
                compression=None,  # bodies are often compressed already; no CPU spent on them
                max_size=HEADER_BYTES + 4 * 1024 * 1024,
                open_timeout=10,
                ping_interval=20,
                ping_timeout=20,
                close_timeout=2,
                proxy=None,
            )
        except BaseException:
            sock.close()
            raise

    def run(self) -> None:
        backoff = Backoff(first=0.2, cap=10.0)
        while not self.stop_event.is_set():
            try:
                conn = self._connect()
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                delay = backoff.next()
                if isinstance(exc, InvalidStatus) and exc.response.status_code in (401, 403, 404):
                    log.error("the server refused the agent's tunnel: %s", exc)
                elif backoff.attempt == 1 or backoff.attempt % 10 == 0:
                    log.warning("tunnel: cannot connect (%s); retrying in %.1f s", exc, delay)
                self.stop_event.wait(delay)
                continue
            if self.stop_event.is_set():
                conn.close()
                break
            self._conn = conn
            self.connected.set()
            log.info("tunnel to %s open", self.url.split("/api/")[0])
            try:
                self._serve(conn)
                backoff.reset()
            except ConnectionClosed as exc:
                if not self.stop_event.is_set():
                    log.warning("tunnel closed (%s); reconnecting", exc)
            except FrameError as exc:
                log.error("tunnel: the server broke the protocol (%s); reconnecting", exc)
                with contextlib.suppress(Exception):
                    conn.close(1002, str(exc)[:120])
            finally:
                self.connected.clear()
                self._conn = None
                self._drop_streams()
            self.stop_event.wait(backoff.next())

    def _drop_streams(self) -> None:
        with self._lock:
            streams = list(self._streams.values())
            self._streams.clear()
        for s in streams:
            s.cancel()

    def _serve(self, conn: ClientConnection) -> None:
        while True:
            message = conn.recv()
            if isinstance(message, str):
                raise FrameError("a text message on the tunnel (frames are binary)")
            frame = decode(message)
            if frame.kind is Kind.HELLO:
                hello = Hello.model_validate(frame.json())
                self.window, self.chunk = max(1, hello.window), max(1024, hello.chunk)
                self.ws_message = max(1024, hello.ws_message)
                self.server_whole = hello.whole
                continue
            if frame.kind is Kind.OPEN or frame.kind is Kind.REQUEST:
                self._open(frame)
                continue
            with self._lock:
                stream = self._streams.get(frame.stream)
            if stream is not None:
                stream.on_frame(frame)

    def _open(self, frame: Frame) -> None:
        body: bytes | None = None
        try:
            if frame.kind is Kind.REQUEST:
                raw, body = frame.whole()
                open_ = Open.model_validate(raw)
            else:
                open_ = Open.model_validate(frame.json())
        except ValueError as exc:
            self.send(
                encode_json(
                    Kind.RESET, frame.stream, Reset(code="protocol", message=f"bad OPEN: {exc}")
                )
            )
            return
        stream = (
            AgentWebSocket(self, frame.stream, open_)
            if open_.kind == "websocket"
            else AgentStream(self, frame.stream, open_, body)
        )
        with self._lock:
            full = len(self._streams) >= MAX_STREAMS
            if not full:
                self._streams[frame.stream] = stream
        if full:
            stream.reset("too_many", f"the agent forwards {MAX_STREAMS} requests at once at most")
            return
        self._pool.submit(stream.run)
