"""The sync SDK's plain-HTTP transport (``sdk/_plain_http.py``) against a real HTTP server of
the standard library's, for what the platform's own server rarely does: closing a kept-alive
connection while it is idle, refusing connections, chunked bodies both ways, answers that
trickle in."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from appyard.sdk._plain_http import PlainHTTPTransport
from tests.support import free_port


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    served: list[int] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        _Handler.served.append(id(self.connection))
        if self.path == "/drip":  # chunked, a piece at a time
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(3):
                piece = f"line {i}\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
                time.sleep(0.05)
            self.wfile.write(b"0\r\n\r\n")
            return
        body = b"hello"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if self.path == "/then-close":  # closes the kept-alive connection, unannounced
            self.wfile.flush()
            self.close_connection = True

    def do_POST(self) -> None:
        digest, size = hashlib.sha256(), 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while (n := int(self.rfile.readline().split(b";")[0], 16)) != 0:
                piece = self.rfile.read(n)
                self.rfile.readline()
                digest.update(piece)
                size += len(piece)
            self.rfile.readline()
        else:
            data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            digest.update(data)
            size = len(data)
        body = f"{size} {digest.hexdigest()}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _client(base: str) -> httpx.Client:
    return httpx.Client(base_url=base, transport=PlainHTTPTransport(httpx.HTTPTransport()))


def test_kept_alive_and_a_connection_closed_while_idle(server: str) -> None:
    _Handler.served.clear()
    with _client(server) as client:
        assert client.get("/").text == "hello"
        assert client.get("/").text == "hello"
        assert _Handler.served[0] == _Handler.served[1]  # the same connection, kept alive
        assert client.get("/then-close").text == "hello"
        time.sleep(0.1)  # the server has closed it meanwhile: found, and a new one is used
        assert client.get("/").text == "hello"
        assert client.post("/", content=b"x" * 10).text.startswith("10 ")


def test_bodies_of_known_and_unknown_length(server: str) -> None:
    data = [bytes([i]) * 70_000 for i in range(5)]
    whole = b"".join(data)
    want = f"{len(whole)} {hashlib.sha256(whole).hexdigest()}"
    with _client(server) as client:
        assert client.post("/", content=whole).text == want
        assert client.post("/", content=iter(data)).text == want  # chunked
        assert client.post("/", content=b"").text.startswith("0 ")


def test_an_answer_is_read_as_it_arrives(server: str) -> None:
    with _client(server) as client, client.stream("GET", "/drip") as answer:
        lines = list(answer.iter_lines())
    assert lines == ["line 0", "line 1", "line 2"]
    with _client(server) as client:
        assert client.get("/drip").text == "line 0\nline 1\nline 2\n"
        assert client.get("/").text == "hello"  # the connection went back after the stream


def test_failures_are_httpx_errors() -> None:
    with _client(f"http://127.0.0.1:{free_port()}") as client, pytest.raises(httpx.ConnectError):
        client.get("/")
    quiet = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)  # listens, never answers
    try:
        with (
            _client(f"http://127.0.0.1:{quiet.server_address[1]}") as client,
            pytest.raises(httpx.ReadTimeout),
        ):
            client.get("/", timeout=httpx.Timeout(0.3))
    finally:
        quiet.server_close()
