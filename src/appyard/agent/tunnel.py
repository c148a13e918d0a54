"""The agent's tunnel: one WebSocket it opens to the server, carrying requests into its apps.

The server never dials the agent's machine (it may sit behind NAT or a firewall): the agent
connects out to ``/api/v1/agents/{agent_id}/tunnel`` with its token, and keeps reconnecting
with capped backoff while it runs. Each stream the server opens on it (``schemas/tunnel.py``)
is one HTTP request to a running app's own server on ``127.0.0.1:APP_PORT``, forwarded in its
own thread with httpx, the bodies streamed both ways in chunks under the window the server's
``HELLO`` sets: a slow or dead app holds up only its own streams. Apps re-adopted after an
agent restart are reachable again as soon as the new agent's tunnel is up (their port is in
the task's ``state.json``).
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

import httpx
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from appyard.agent.client import Backoff
from appyard.schemas.tunnel import (
    DEFAULT_CHUNK_BYTES,
    DEFAULT_WINDOW,
    HEADER_BYTES,
    Frame,
    FrameError,
    Head,
    Hello,
    Kind,
    Open,
    Reset,
    ResetCode,
    decode,
    encode,
    encode_credit,
    encode_json,
)
from appyard.sdk._core import SOCKET_OPTIONS

log = logging.getLogger("appyard.agent")

#: streams this agent forwards at once (the server caps them per agent too)
MAX_STREAMS = 512
#: the longest a connection to an app may take to open
CONNECT_TIMEOUT_S = 5.0
#: headers that belong to one hop and are not passed on (either way)
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "host",
    }
)


class _Cancelled(Exception):
    """The server reset the stream (its client went away, or its deadline passed)."""


def tunnel_url(server: str, agent_id: int) -> str:
    """``http://host:port`` -> ``ws://host:port/api/v1/agents/<id>/tunnel`` (https: wss)."""
    parts = urlsplit(server)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}/api/v1/agents/{agent_id}/tunnel"


class AgentStream:
    """One request into an app: its body comes in from the server, the app's answer goes out."""

    def __init__(self, tunnel: TunnelClient, stream_id: int, open_: Open) -> None:
        self.tunnel = tunnel
        self.id = stream_id
        self.open = open_
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
                raise httpx.WriteTimeout("the request body did not arrive in time") from None
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
                    raise httpx.ReadTimeout("the server did not take the answer in time")
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
        except httpx.ConnectError as exc:
            self.reset("app_unreachable", f"nothing answers on the app's port ({exc})")
        except httpx.TimeoutException as exc:
            self.reset("app_timeout", f"no answer within {self.open.timeout:g} s ({exc})")
        except (httpx.HTTPError, OSError) as exc:
            self.reset("app_broken", f"{type(exc).__name__}: {exc}")
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
        left = self._left()
        timeout = httpx.Timeout(max(0.01, left), connect=min(CONNECT_TIMEOUT_S, max(0.01, left)))
        headers = [(k, v) for k, v in o.headers if k.lower() not in _HOP_BY_HOP]
        url = f"http://127.0.0.1:{port}{o.path}"
        request = self.tunnel.http.build_request(
            o.method, url, headers=headers, content=self._request_body(), timeout=timeout
        )
        response = self.tunnel.http.send(request, stream=True)
        try:
            head = Head(
                status=response.status_code,
                headers=[
                    (k, v) for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP
                ],
            )
            if self.cancelled:
                return
            self.tunnel.send(encode_json(Kind.HEAD, self.id, head))
            for piece in response.iter_raw(self.tunnel.chunk):
                if not self._wait_credit():
                    return
                self.tunnel.send(encode(Kind.DATA, self.id, piece))
            if not self.cancelled:
                self.tunnel.send(encode(Kind.END, self.id))
        finally:
            response.close()


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
        self.http = httpx.Client(
            transport=httpx.HTTPTransport(socket_options=SOCKET_OPTIONS, retries=0),
            headers={"User-Agent": "appyard-agent"},
            trust_env=False,  # the app is on this machine's loopback: never through a proxy
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        )
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
                additional_headers={"Authorization": f"Bearer {self.token}"},
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
                continue
            if frame.kind is Kind.OPEN:
                self._open(frame)
                continue
            with self._lock:
                stream = self._streams.get(frame.stream)
            if stream is not None:
                stream.on_frame(frame)

    def _open(self, frame: Frame) -> None:
        try:
            open_ = Open.model_validate(frame.json())
        except ValueError as exc:
            self.send(
                encode_json(
                    Kind.RESET, frame.stream, Reset(code="protocol", message=f"bad OPEN: {exc}")
                )
            )
            return
        stream = AgentStream(self, frame.stream, open_)
        with self._lock:
            full = len(self._streams) >= MAX_STREAMS
            if not full:
                self._streams[frame.stream] = stream
        if full:
            stream.reset("too_many", f"the agent forwards {MAX_STREAMS} requests at once at most")
            return
        threading.Thread(
            target=stream.run, name=f"tunnel-{open_.task_id}-{frame.stream}", daemon=True
        ).start()
