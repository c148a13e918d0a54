"""A serving app with its own HTTP server (http.server), for the app page tests.

- ``GET /``: an HTML page whose script tries to read the platform's token (``document.cookie``,
  ``localStorage``) and to call the platform's API with the browser's credentials, and posts
  what it got to ``/report``; ``GET /report`` answers the last report;
- ``POST /upload``: reads the body in pieces and answers its size and sha256;
- ``GET /download?mb=N``: N MiB of a known pattern, chunked (no length);
- ``GET /headers``: the request's path and headers as JSON;
- started with ``{"listen": false}``: it runs and listens on nothing (a dead app);
- ``GET /go``: a redirect to ``/headers``; ``GET /cookie``: sets a cookie of the app's own;
- ``/ws/echo`` (a WebSocket, RFC 6455 by hand): echoes each message as it came (text or
  binary); ``"close:CODE:REASON"`` makes it close with that code; ``"big:N"`` sends a binary
  message of N bytes; ``"flood:COUNT:SIZE"`` sends COUNT binary messages of SIZE bytes (the
  first 4 bytes their number) as fast as they are taken (``GET /ws/flood``: how many went); ``"headers"`` answers its handshake's path and headers as JSON; the
  first subprotocol offered is chosen; ``GET /ws/last-close`` answers the close it last got;
- ``GET /ws-page``: a page whose script opens ``ws/echo`` relative to its address, sends a
  text and shows the echo.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import signal
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import appyard as ay

BASE = os.environ.get("APP_BASE_PATH") or "/"
PIECE = b"0123456789abcdef" * 4096  # 64 KiB
REPORT: dict[str, Any] = {}
LAST_CLOSE: dict[str, Any] = {}
FLOOD: dict[str, int] = {"sent": 0}
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

WS_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>ws</title></head><body>
<h1>Echo</h1><p id="echo">waiting</p>
<script>
const url = new URL("ws/echo", location.href);
url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
const ws = new WebSocket(url, ["echo.v1"]);
ws.onopen = () => ws.send("hello from the page");
ws.onmessage = (e) => { document.getElementById("echo").textContent = "echo: " + e.data
  + " (" + ws.protocol + ")"; document.title = "echoed"; };
ws.onclose = (e) => { document.body.dataset.closed = e.code + " " + e.reason; };
</script></body></html>"""


def _ws_frame(opcode: int, data: bytes) -> bytes:
    """One unmasked, unfragmented frame (a server's)."""
    n = len(data)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + data


def _read_exact(rfile: Any, n: int) -> bytes:
    data = rfile.read(n)
    if len(data) != n:
        raise ConnectionError("the client went away")
    return bytes(data)


def _ws_read(rfile: Any) -> tuple[bool, int, bytes]:
    """One frame of the client's: (fin, opcode, unmasked payload)."""
    b1, b2 = _read_exact(rfile, 2)
    n = b2 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", _read_exact(rfile, 2))
    elif n == 127:
        (n,) = struct.unpack("!Q", _read_exact(rfile, 8))
    mask = _read_exact(rfile, 4) if b2 & 0x80 else b""
    data = _read_exact(rfile, n)
    if mask and n:
        key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
        data = (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")
    return bool(b1 & 0x80), b1 & 0x0F, data


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>probe</title></head><body>
<h1>Probe page</h1><p id="base">__BASE__</p><a id="go" href="__BASE__headers">headers</a>
<script>
(async () => {
  const out = {};
  try { out.cookie = document.cookie; } catch (e) { out.cookie = "blocked: " + e.name; }
  try { out.token = localStorage.getItem("appyard.token"); } catch (e) { out.token = "blocked: " + e.name; }
  try {
    const r = await fetch("/api/v1/users/me", { credentials: "include" });
    out.api = r.status + " " + (await r.text()).slice(0, 200);
  } catch (e) { out.api = "blocked: " + e.name; }
  try {
    const r = await fetch("/api/v1/users/me", {
      credentials: "include", headers: { Authorization: "Bearer " + out.token } });
    out.api_bearer = r.status;
  } catch (e) { out.api_bearer = "blocked: " + e.name; }
  out.origin = String(self.origin);
  await fetch("__BASE__report", { method: "POST", body: JSON.stringify(out) }).catch(() => {});
  document.title = "probed";
  document.body.dataset.probe = JSON.stringify(out);
})();
</script></body></html>"""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(
        self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, data: Any, status: int = 200) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _websocket(self) -> None:
        """Echo messages until the client closes (or asks the app to close)."""
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        offered = [
            p.strip()
            for p in self.headers.get("Sec-WebSocket-Protocol", "").split(",")
            if p.strip()
        ]
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        if offered:
            self.send_header("Sec-WebSocket-Protocol", offered[0])
        self.end_headers()
        self.close_connection = True
        handshake = {
            "path": self.path,
            "headers": [[k.lower(), v] for k, v in self.headers.items()],
        }
        parts: list[bytes] = []
        first_op = 0
        while True:
            try:
                fin, op, data = _ws_read(self.rfile)
            except (ConnectionError, OSError, ValueError):
                return
            if op == 8:  # close: record it, answer it
                code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
                LAST_CLOSE.clear()
                LAST_CLOSE.update({"code": code, "reason": data[2:].decode()})
                self.wfile.write(_ws_frame(8, data[:2]))
                return
            if op == 9:
                self.wfile.write(_ws_frame(10, data))
                continue
            if op == 10:
                continue
            if op in (1, 2):
                first_op, parts = op, []
            parts.append(data)
            if not fin:
                continue
            message = b"".join(parts)
            if first_op == 1 and message.startswith(b"close:"):
                _, code, reason = message.decode().split(":", 2)
                self.wfile.write(_ws_frame(8, struct.pack("!H", int(code)) + reason.encode()))
                with contextlib.suppress(ConnectionError, OSError, ValueError):
                    _ws_read(self.rfile)  # the client's answer to the close
                return
            if first_op == 1 and message.startswith(b"big:"):
                self.wfile.write(_ws_frame(2, b"x" * int(message[4:])))
            elif first_op == 1 and message.startswith(b"flood:"):
                count, size = (int(x) for x in message[6:].split(b":"))
                noise = os.urandom(size - 4)  # no compression on the way shrinks it
                for i in range(count):  # blocks once the client stops reading
                    self.wfile.write(_ws_frame(2, i.to_bytes(4, "big") + noise))
                    FLOOD["sent"] = i + 1
            elif first_op == 1 and message == b"headers":
                self.wfile.write(_ws_frame(1, json.dumps(handshake).encode()))
            else:
                self.wfile.write(_ws_frame(first_op, message))

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        q = parse_qs(url.query)
        if url.path == "/ws/echo" and self.headers.get("Upgrade", "").lower() == "websocket":
            self._websocket()
        elif url.path == "/ws/last-close":
            self._json(LAST_CLOSE)
        elif url.path == "/ws/flood":
            self._json(FLOOD)
        elif url.path == "/ws-page":
            self._send(200, WS_PAGE.encode(), "text/html; charset=utf-8")
        elif url.path == "/":
            self._send(200, PAGE.replace("__BASE__", BASE).encode(), "text/html; charset=utf-8")
        elif url.path == "/report":
            self._json(REPORT)
        elif url.path == "/headers":
            self._json(
                {"path": self.path, "headers": [[k.lower(), v] for k, v in self.headers.items()]}
            )
        elif url.path == "/go":
            self._send(302, b"", "text/plain", {"Location": "/headers?from=go"})
        elif url.path == "/cookie":
            self._send(
                200, b"ok", "text/plain", {"Set-Cookie": "mine=1; Path=/; Domain=example.com"}
            )
        elif url.path == "/download":
            mb = int(q.get("mb", ["1"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(mb * 16):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(PIECE), PIECE))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self._json({"detail": f"no page {url.path}"}, 404)

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if url.path == "/report":
            REPORT.clear()
            REPORT.update(json.loads(self.rfile.read(length) or b"{}"))
            self._json({"ok": True})
        elif url.path == "/upload":
            digest, seen = hashlib.sha256(), 0
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        break
                    left = size
                    while left:
                        piece = self.rfile.read(min(left, 1 << 16))
                        digest.update(piece)
                        seen += len(piece)
                        left -= len(piece)
                    self.rfile.readline()
            else:
                left = length
                while left:
                    piece = self.rfile.read(min(left, 1 << 16))
                    if not piece:
                        break
                    digest.update(piece)
                    seen += len(piece)
                    left -= len(piece)
            self._json({"bytes": seen, "sha256": digest.hexdigest()})
        else:
            self._json({"detail": f"no page {url.path}"}, 404)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> int:
    session = ay.AppSession.from_env()
    if session.state.get("listen") is False:  # a dead app: it runs, and serves nothing
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        print("running without serving", flush=True)
        stop.wait()
        return 0
    server = ThreadingHTTPServer(("127.0.0.1", session.port or 0), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"serving on {server.server_address[1]}, base {BASE}", flush=True)
    session.ready()
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
