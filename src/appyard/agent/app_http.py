"""HTTP/1.1 from the agent to its apps' own servers on this machine's loopback.

Every request into an app through the tunnel (``agent/tunnel.py``) is one exchange with
``127.0.0.1:APP_PORT``. This is the standard library's ``http.client`` with a small pool of
kept-alive connections per port: the apps are on this machine, so there is no proxy, TLS,
redirect or cookie to handle, and a small request costs a fraction of what a general client
spends on it. Bodies stream both ways; a deadline bounds the whole exchange.
"""

from __future__ import annotations

import contextlib
import http.client
import time
from collections.abc import Iterable, Iterator

from appyard.sdk._plain_http import IdleConnections, OneWriteConnection

#: the longest a connection to an app may take to open
CONNECT_TIMEOUT_S = 5.0
#: idle kept-alive connections per app port
MAX_IDLE_PER_PORT = 16


class AppHttpError(Exception):
    """An exchange with an app that did not complete."""


class AppUnreachable(AppHttpError):
    """Nothing accepts connections on the app's port."""


class AppTimeout(AppHttpError):
    """The app (or the request's body) did not come within the deadline."""


class AppBroken(AppHttpError):
    """The app closed the connection midway, or answered something that is not HTTP."""


class _Connection(OneWriteConnection):
    """A kept-alive connection to an app's port."""


class AppResponse:
    """The app's answer: its status and headers now, its body as it is read."""

    def __init__(
        self, pool: IdleConnections[int, _Connection], port: int, conn: _Connection, deadline: float
    ):
        self._pool, self._port, self._conn, self._deadline = pool, port, conn, deadline
        self._raw = conn.getresponse()
        self.status = self._raw.status
        self.headers: list[tuple[str, str]] = self._raw.getheaders()
        self._done = False

    @property
    def length(self) -> int | None:
        """The body's length, when the app said it (``Content-Length``, not chunked)."""
        return self._raw.length

    def _arm(self) -> None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise AppTimeout("the app did not send its answer in time")
        if self._conn.sock is not None:
            self._conn.sock.settimeout(left)

    def read(self) -> bytes:
        """The whole body (for a short answer of known length)."""
        with _mapped():
            self._arm()
            data = self._raw.read()
        self._done = True
        return data

    def pieces(self, size: int) -> Iterator[bytes]:
        """The body as it arrives, in pieces of at most ``size`` bytes."""
        while True:
            with _mapped():
                self._arm()
                piece = self._raw.read1(size)
            if not piece:
                self._done = True
                return
            yield piece

    def close(self) -> None:
        """Done with it: a connection whose answer was read to its end is kept for the next
        request into the same port; any other is closed (its state is unknown)."""
        keep = self._done and not self._raw.will_close and self._raw.isclosed()
        if keep:
            self._pool.give_back(self._port, self._conn)
        else:
            self._raw.close()
            self._conn.close()


class AppConnections:
    """Kept-alive connections to the apps' ports, for any number of threads at once."""

    def __init__(self, max_idle_per_port: int = MAX_IDLE_PER_PORT) -> None:
        self._idle: IdleConnections[int, _Connection] = IdleConnections(max_idle_per_port)

    def request(
        self,
        port: int,
        method: str,
        path: str,
        headers: Iterable[tuple[str, str]],
        body: bytes | Iterable[bytes],
        deadline: float,
    ) -> AppResponse:
        """Send the request (the body as it comes, chunked when its length is not in
        ``headers``) and read the answer's head. A request with a whole body that fails on a
        kept-alive connection the app had closed meanwhile goes once more on a new one."""
        headers = list(headers)
        replayable = isinstance(body, bytes)
        conn, reused = self._take(port, deadline)
        try:
            return self._exchange(port, conn, method, path, headers, body, deadline)
        except AppBroken:
            if not (reused and replayable):
                raise
        return self._exchange(
            port, self._new(port, deadline), method, path, headers, body, deadline
        )

    def _exchange(
        self,
        port: int,
        conn: _Connection,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        body: bytes | Iterable[bytes],
        deadline: float,
    ) -> AppResponse:
        try:
            with _mapped():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AppTimeout("no time was left to send the request")
                assert conn.sock is not None
                conn.sock.settimeout(left)
                cut: OSError | None = None
                try:
                    _send(conn, method, path, headers, body)
                except (BrokenPipeError, ConnectionResetError) as exc:
                    # the app may have answered before reading the whole body (a 413, say):
                    # its answer is read all the same, if it sent one
                    cut = exc
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AppTimeout("the app did not answer in time")
                conn.sock.settimeout(left)
                try:
                    return AppResponse(self._idle, port, conn, deadline)
                except (http.client.HTTPException, OSError):
                    if cut is not None:
                        raise cut from None
                    raise
        except BaseException:
            conn.close()
            raise

    def _take(self, port: int, deadline: float) -> tuple[_Connection, bool]:
        """A kept-alive connection the app has not closed meanwhile, else a new one."""
        conn = self._idle.take(port)
        return (conn, True) if conn is not None else (self._new(port, deadline), False)

    def _new(self, port: int, deadline: float) -> _Connection:
        left = deadline - time.monotonic()
        conn = _Connection("127.0.0.1", port, timeout=max(0.01, min(CONNECT_TIMEOUT_S, left)))
        try:
            conn.connect()
        except ConnectionRefusedError as exc:
            raise AppUnreachable(f"nothing answers on the app's port {port} ({exc})") from None
        except TimeoutError:
            raise AppUnreachable(f"the app's port {port} did not accept in time") from None
        except OSError as exc:
            raise AppUnreachable(f"cannot connect to the app's port {port} ({exc})") from None
        return conn

    def close(self) -> None:
        self._idle.close()


@contextlib.contextmanager
def _mapped() -> Iterator[None]:
    """``http.client``'s and the socket's errors as the three the tunnel tells apart."""
    try:
        yield
    except AppHttpError:
        raise
    except TimeoutError as exc:
        raise AppTimeout(f"the app did not answer in time ({exc or 'timed out'})") from None
    except (http.client.HTTPException, OSError) as exc:
        raise AppBroken(f"{type(exc).__name__}: {exc}") from None


def _send(
    conn: _Connection,
    method: str,
    path: str,
    headers: list[tuple[str, str]],
    body: bytes | Iterable[bytes],
) -> None:
    """The request line, the headers and the body (a whole one in one write; pieces as they
    come, chunked when ``headers`` give no length)."""
    conn.putrequest(method, path, skip_accept_encoding=True)
    has_length = False
    for k, v in headers:
        conn.putheader(k, v)
        has_length = has_length or k.lower() == "content-length"
    if isinstance(body, bytes):
        if not has_length and (body or method not in ("GET", "HEAD")):
            conn.putheader("Content-Length", str(len(body)))
        if body:
            conn.with_body(body)
        else:
            conn.endheaders()
    elif has_length:
        conn.endheaders()
        for piece in body:
            conn.send(piece)
    else:
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        for piece in body:
            if piece:
                conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        conn.send(b"0\r\n\r\n")
