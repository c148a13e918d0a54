"""A serving app with its own HTTP server (http.server), for the app page tests.

- ``GET /``: an HTML page whose script tries to read the platform's token (``document.cookie``,
  ``localStorage``) and to call the platform's API with the browser's credentials, and posts
  what it got to ``/report``; ``GET /report`` answers the last report;
- ``POST /upload``: reads the body in pieces and answers its size and sha256;
- ``GET /download?mb=N``: N MiB of a known pattern, chunked (no length);
- ``GET /headers``: the request's path and headers as JSON;
- started with ``{"listen": false}``: it runs and listens on nothing (a dead app);
- ``GET /go``: a redirect to ``/headers``; ``GET /cookie``: sets a cookie of the app's own.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import appyard as ay

BASE = os.environ.get("APP_BASE_PATH") or "/"
PIECE = b"0123456789abcdef" * 4096  # 64 KiB
REPORT: dict[str, Any] = {}

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

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        q = parse_qs(url.query)
        if url.path == "/":
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
