"""The sync SDK's transport to a plain-HTTP server: the standard library's ``http.client``
behind httpx's transport interface (``httpx.BaseTransport``, its documented hook).

Why: a small call (a request into a serving session, a status read) spent 0.55 ms of the
client's CPU in httpx's own HTTP/1.1 machinery, the largest share of the whole path's
(docs/tunnel.md); ``http.client`` does the same exchange for a fraction. Everything above the
transport (URLs, headers, timeouts, retries, streaming, the typed errors) stays httpx's and
the SDK's. ``https://`` goes to httpx's own transport (the ``fallback``), and so does anything
httpx routes through a proxy (its mounts come before the transport).

Connections are kept alive per host and port, a few idle each; one the server closed while
idle is found before it is used (readable with nothing asked), and a read whose kept-alive
connection turns out closed before any answer goes once more on a new one (anything else is
left to the SDK's retry rules, as with httpx's transport). A request's head and a body of known
length leave in one write.
"""

from __future__ import annotations

import http.client
import select
import socket
import threading
from collections.abc import Hashable, Iterable, Iterator
from typing import Any, Generic, TypeVar

import httpx

#: idle connections kept per server
MAX_IDLE = 8
#: methods a request of which may go again on a new connection when its kept-alive one turns
#: out closed as it was sent (the server may have read it: only a read is sent twice)
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


class OneWriteConnection(http.client.HTTPConnection):
    """An ``http.client`` connection with ``TCP_NODELAY`` that can send a request's head and
    a whole body in one write (``with_body``): the peer reads one segment, not two
    (``endheaders`` writes them apart). The agent talks to apps with it too."""

    _head: bytes | None = None
    _hold = False

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data: Any) -> None:
        if self._hold and self._head is None and isinstance(data, bytes):
            self._head = data
            return
        if self._head is not None:
            data, self._head = self._head + bytes(data), None
        super().send(data)

    def with_body(self, body: bytes) -> None:
        """End the headers and send ``body`` (not empty): head and body in one write."""
        self._hold = True
        try:
            self.endheaders(body)
        finally:
            self._hold, self._head = False, None


C = TypeVar("C", bound=OneWriteConnection)
K = TypeVar("K", bound=Hashable)


class IdleConnections(Generic[K, C]):
    """Kept-alive connections not in use, at most ``max_idle`` per peer (a server, an app's
    port), for any number of threads. One the peer closed while idle is never handed out: it
    is readable with nothing asked (its EOF, or bytes nobody asked for). The agent's pool of
    connections to apps is one of these too."""

    def __init__(self, max_idle: int) -> None:
        self._max_idle = max_idle
        self._idle: dict[K, list[C]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def take(self, key: K) -> C | None:
        """An idle connection to ``key`` that is still open, or None."""
        while True:
            with self._lock:
                idle = self._idle.get(key)
                conn = idle.pop() if idle else None
            if conn is None:
                return None
            if conn.sock is not None and not _readable(conn.sock):
                return conn
            conn.close()

    def give_back(self, key: K, conn: C) -> None:
        """Keep ``conn`` (its exchange over, the answer read whole) for the next request."""
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if not self._closed and len(idle) < self._max_idle:
                idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        """Close the idle connections; those in use are closed when given back."""
        with self._lock:
            self._closed = True
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for conn in conns:
            conn.close()


def _readable(sock: socket.socket) -> bool:
    poller = select.poll()  # (select.select cannot take descriptors past 1023)
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class _Connection(OneWriteConnection):
    """One kept-alive connection to a server."""


class PlainHTTPTransport(httpx.BaseTransport):
    """``http://`` through ``http.client``; anything else through ``fallback``."""

    def __init__(self, fallback: httpx.BaseTransport, max_idle: int = MAX_IDLE) -> None:
        self._fallback = fallback
        self._idle: IdleConnections[tuple[str, int], _Connection] = IdleConnections(max_idle)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme != "http":
            return self._fallback.handle_request(request)
        timeout = request.extensions.get("timeout", {})
        key = (url.host, url.port or 80)
        target = url.raw_path.decode("ascii")
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        body: bytes | Iterable[bytes]
        if isinstance(request.stream, httpx.ByteStream):
            body = b"".join(request.stream)
        else:
            body = request.stream  # type: ignore[assignment]
        conn, reused = self._take(key, timeout.get("connect"))
        try:
            return self._exchange(request, conn, target, headers, body, timeout, key)
        except _Stale:
            # a kept-alive connection closed as the request went: sent again only when that is
            # safe whatever the server saw (the SDK's own rules decide for the rest)
            if not (reused and isinstance(body, bytes) and request.method in _SAFE):
                raise httpx.RemoteProtocolError(
                    "the server closed the connection without an answer", request=request
                ) from None
        conn, _ = self._take(key, timeout.get("connect"), fresh=True)
        try:
            return self._exchange(request, conn, target, headers, body, timeout, key)
        except _Stale:
            raise httpx.RemoteProtocolError(
                "the server closed the connection without an answer", request=request
            ) from None

    def _take(
        self, key: tuple[str, int], connect: float | None, fresh: bool = False
    ) -> tuple[_Connection, bool]:
        if not fresh:
            conn = self._idle.take(key)
            if conn is not None:
                return conn, True
        return _Connection(key[0], key[1], timeout=connect), False

    def _exchange(
        self,
        request: httpx.Request,
        conn: _Connection,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes | Iterable[bytes],
        timeout: dict[str, float | None],
        key: tuple[str, int],
    ) -> httpx.Response:
        names = {k.lower() for k, _ in headers}
        chunked = "transfer-encoding" in names and "content-length" not in names
        try:
            if conn.sock is None:
                try:
                    conn.connect()
                except TimeoutError as exc:
                    raise httpx.ConnectTimeout(str(exc), request=request) from exc
                except OSError as exc:
                    raise httpx.ConnectError(str(exc), request=request) from exc
            conn.sock.settimeout(timeout.get("write"))
            conn.putrequest(request.method, target, skip_host=True, skip_accept_encoding=True)
            for k, v in headers:
                if chunked and k.lower() == "transfer-encoding":
                    continue  # http.client writes its own, and encodes the pieces
                conn.putheader(k, v)
            if isinstance(body, bytes):
                if body:
                    conn.with_body(body)
                else:
                    conn.endheaders()
            else:
                if chunked:
                    conn.putheader("Transfer-Encoding", "chunked")
                conn.endheaders()
                for piece in body:
                    if piece:
                        conn.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                if chunked:
                    conn.send(b"0\r\n\r\n")
            conn.sock.settimeout(timeout.get("read"))
            raw = conn.getresponse()
        except (httpx.ConnectError, httpx.ConnectTimeout):
            conn.close()
            raise
        except http.client.RemoteDisconnected:
            conn.close()
            raise _Stale() from None
        except (BrokenPipeError, ConnectionResetError) as exc:
            conn.close()
            if isinstance(body, bytes):
                raise _Stale() from exc
            raise httpx.WriteError(str(exc), request=request) from exc
        except TimeoutError as exc:
            conn.close()
            raise httpx.ReadTimeout(str(exc), request=request) from exc
        except http.client.HTTPException as exc:
            conn.close()
            raise httpx.RemoteProtocolError(repr(exc), request=request) from exc
        except OSError as exc:
            conn.close()
            raise httpx.ReadError(str(exc), request=request) from exc
        return httpx.Response(
            raw.status,
            headers=raw.getheaders(),
            stream=_Body(self._idle, key, conn, raw, request),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": raw.reason.encode()},
            request=request,
        )

    def close(self) -> None:
        self._idle.close()
        self._fallback.close()


class _Stale(Exception):
    """A kept-alive connection the server had closed: nothing was answered on it."""


class _Body(httpx.SyncByteStream):
    """An answer's body as it arrives (``read1``: an event stream's lines are not held back);
    its connection goes back to the pool once the body was read whole."""

    def __init__(
        self,
        pool: IdleConnections[tuple[str, int], _Connection],
        key: tuple[str, int],
        conn: _Connection,
        raw: http.client.HTTPResponse,
        request: httpx.Request,
    ) -> None:
        self._pool, self._key, self._conn, self._raw, self._request = pool, key, conn, raw, request
        self._whole = False
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            while True:
                piece = self._raw.read1(65536)
                if not piece:
                    self._whole = True
                    return
                yield piece
        except TimeoutError as exc:
            raise httpx.ReadTimeout(str(exc), request=self._request) from exc
        except http.client.IncompleteRead as exc:
            raise httpx.RemoteProtocolError(repr(exc), request=self._request) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise httpx.ReadError(str(exc), request=self._request) from exc

    def close(self) -> None:
        if self._done:
            return
        self._done = True
        if self._whole and not self._raw.will_close:
            self._raw.close()
            self._pool.give_back(self._key, self._conn)
        else:
            self._raw.close()
            self._conn.close()
