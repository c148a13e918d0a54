"""The agent's HTTP to its apps (``agent/app_http.py``) against a real HTTP server on loopback:
kept-alive connections reused, a connection the app closed meanwhile never used, bodies whole
and streamed (chunked), an answer the app gives before reading the whole body, and the three
failures the tunnel tells apart."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from appyard.agent.app_http import AppBroken, AppConnections, AppTimeout, AppUnreachable
from tests.support import free_port


class _App(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _answer(self, status: int, data: object, close: bool = False) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def do_GET(self) -> None:
        self.server.connections.add(self.client_address)
        if self.path == "/slow":
            time.sleep(2)
        if self.path == "/stream":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(5):
                piece = bytes([i]) * 1000
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        self._answer(200, {"path": self.path}, close=self.path == "/close")

    def do_POST(self) -> None:
        self.server.connections.add(self.client_address)
        if self.path == "/refuse":  # answers without reading the body, and hangs up
            self._answer(413, {"error": "too large"}, close=True)
            return
        data = self._body()
        self._answer(200, {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    connections: set[tuple[str, int]]


@pytest.fixture
def app() -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _App)
    server.connections = set()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _deadline(s: float = 10.0) -> float:
    return time.monotonic() + s


def _get(pool: AppConnections, port: int, path: str) -> tuple[int, object]:
    r = pool.request(port, "GET", path, [], b"", _deadline())
    try:
        return r.status, json.loads(r.read())
    finally:
        r.close()


def test_connections_are_kept_and_a_closed_one_is_never_used(app: _Server) -> None:
    port = app.server_address[1]
    pool = AppConnections()
    for i in range(5):
        assert _get(pool, port, f"/{i}") == (200, {"path": f"/{i}"})
    assert len(app.connections) == 1  # one connection, kept alive
    assert _get(pool, port, "/close") == (200, {"path": "/close"})  # the app hangs up after
    assert _get(pool, port, "/after") == (200, {"path": "/after"})
    assert len(app.connections) == 2
    pool.close()


def test_bodies_whole_streamed_and_chunked(app: _Server) -> None:
    port = app.server_address[1]
    pool = AppConnections()
    data = bytes(range(256)) * 4096  # 1 MiB
    digest = hashlib.sha256(data).hexdigest()

    def pieces() -> Iterator[bytes]:
        for i in range(0, len(data), 65536):
            yield data[i : i + 65536]

    for body, headers in (
        (data, []),
        (pieces(), [("Content-Length", str(len(data)))]),
        (pieces(), []),  # no length: chunked
    ):
        r = pool.request(port, "POST", "/upload", headers, body, _deadline())
        assert r.status == 200
        assert json.loads(r.read()) == {"bytes": len(data), "sha256": digest}
        r.close()

    r = pool.request(port, "GET", "/stream", [], b"", _deadline())
    assert r.length is None
    assert b"".join(r.pieces(4096)) == b"".join(bytes([i]) * 1000 for i in range(5))
    r.close()
    assert _get(pool, port, "/again") == (200, {"path": "/again"})
    pool.close()


def test_an_answer_before_the_whole_body_is_read_is_passed_on(app: _Server) -> None:
    port = app.server_address[1]
    pool = AppConnections()

    def endless() -> Iterator[bytes]:
        piece = b"x" * 65536
        for _ in range(4096):  # 256 MiB: far more than the socket's buffers
            yield piece

    r = pool.request(port, "POST", "/refuse", [], endless(), _deadline())
    assert r.status == 413
    assert json.loads(r.read()) == {"error": "too large"}
    r.close()
    pool.close()


def test_the_three_failures(app: _Server) -> None:
    pool = AppConnections()
    with pytest.raises(AppUnreachable, match="nothing answers on the app's port"):
        pool.request(free_port(), "GET", "/", [], b"", _deadline())

    port = app.server_address[1]
    with pytest.raises(AppTimeout):
        pool.request(port, "GET", "/slow", [], b"", _deadline(0.3))

    # a "server" that accepts and answers with something that is not HTTP
    junk = socket.create_server(("127.0.0.1", 0))

    def serve_junk() -> None:
        conn, _ = junk.accept()
        conn.recv(65536)
        conn.sendall(b"not http at all\r\n\r\n")
        conn.close()

    threading.Thread(target=serve_junk, daemon=True).start()
    with pytest.raises(AppBroken):
        pool.request(junk.getsockname()[1], "GET", "/", [], b"", _deadline())
    junk.close()
    pool.close()
