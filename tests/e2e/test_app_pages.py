"""A running app's own web page through the server (``/apps/{task_id}/...``) end to end: a
real server, a real agent and its tunnel, a real app with its own HTTP server
(``tests/e2e/apps/page``). The browser's side (the page's sandbox, the project viewer) is in
``tests/web/test_app_pages.py``."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect
from websockets.typing import Subprotocol

import appyard as ay
from tests.e2e.conftest import Env
from tests.support import Client

S = ay.Status
PAGE_APP = Path(__file__).parent / "apps" / "page"
MB = 1024 * 1024
#: what the server may grow by while a body many times larger goes through it
FLAT_MB = 24


def _page_session(env: Env) -> int:
    module_id = env.world.admin.publish(PAGE_APP)["module_id"]
    session = env.api.app.start(
        agent_id=env.agent_id, module_id=module_id, workspace_id=env.world.workspace_id
    )
    assert env.api.app.wait_until_ready_for_api_calls(session.task_id, 60, 1)
    return session.task_id


def _http(env: Env, token: str | None = None) -> httpx.Client:
    token = token or env.api._core.token
    return httpx.Client(
        base_url=env.world.server.url, headers={"Authorization": f"Bearer {token}"}, timeout=120
    )


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _pattern(n_mb: int) -> Iterator[bytes]:
    piece = os.urandom(MB)
    for _ in range(n_mb):
        yield piece


def test_bodies_stream_both_ways_with_flat_memory(env: Env) -> None:
    """A 64 MiB upload (chunked) and a 64 MiB download through the page proxy: the bytes
    arrive whole, and the server's resident memory does not grow by anything like the body."""
    tid = _page_session(env)
    server = env.world.server.proc
    assert server is not None
    with _http(env) as http:
        assert http.get(f"/apps/{tid}/headers").status_code == 200  # warm: routes, threads
        before = _rss_kb(server.pid)
        digest = hashlib.sha256()

        def body() -> Iterator[bytes]:
            for piece in _pattern(64):
                digest.update(piece)
                yield piece

        up = http.post(f"/apps/{tid}/upload", content=body())
        assert up.status_code == 200, up.text
        assert up.json() == {"bytes": 64 * MB, "sha256": digest.hexdigest()}

        got = 0
        with http.stream("GET", f"/apps/{tid}/download", params={"mb": 64}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"] == "application/octet-stream"
            for piece in r.iter_raw():
                got += len(piece)
        assert got == 64 * MB
        grown_mb = (_rss_kb(server.pid) - before) / 1024
        assert grown_mb < FLAT_MB, f"the server grew by {grown_mb:.1f} MiB"

        # a body with a length over the page cap is refused before it is read
        token = env.api._core.token
        with socket.create_connection(("127.0.0.1", env.world.server.port), timeout=30) as sock:
            sock.sendall(
                f"POST /apps/{tid}/upload HTTP/1.1\r\nHost: x\r\nContent-Length: {5 * 1024**3}"
                f"\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
            )
            raw = b""
            while piece := sock.recv(65536):  # the server closes it after its answer
                raw += piece
        answer = raw.decode()
        assert answer.startswith("HTTP/1.1 413") and "APPYARD_MAX_APP_BODY_BYTES" in answer


def test_headers_redirects_cookies_and_who_may_open_it(env: Env) -> None:
    world = env.world
    tid = _page_session(env)
    with _http(env) as http:
        seen = http.get(
            f"/apps/{tid}/headers?x=1",
            headers={
                "x-api-key": "secret-key",
                "Cookie": "appyard_app=v1.1.2.3.abc; theirs=ok",
                "Connection": "keep-alive, x-hop",
                "x-hop": "dropped",
                "x-mine": "kept",
            },
        ).json()
        headers = dict(seen["headers"])
        assert seen["path"] == "/headers?x=1"  # asked under the prefix
        assert "authorization" not in headers and "x-api-key" not in headers
        assert headers["cookie"] == "theirs=ok"
        assert "x-hop" not in headers and headers["x-mine"] == "kept"
        assert headers["x-forwarded-prefix"] == f"/apps/{tid}"
        # the app's base path is in its environment
        page = http.get(f"/apps/{tid}/")
        assert f'<p id="base">/apps/{tid}/</p>' in page.text
        # on the platform's own origin a page runs sandboxed (an opaque origin)
        csp = page.headers["content-security-policy"]
        assert csp.startswith("sandbox ") and "allow-same-origin" not in csp

        go = http.get(f"/apps/{tid}/go")
        assert go.status_code == 302 and go.headers["location"] == f"/apps/{tid}/headers?from=go"
        cookie = http.get(f"/apps/{tid}/cookie").headers["set-cookie"]
        assert cookie == f"mine=1; Path=/apps/{tid}/"
        assert http.get(f"/apps/{tid}", follow_redirects=False).headers["location"] == (
            f"/apps/{tid}/"
        )
        missing = http.get(f"/apps/{tid}/nothing")
        assert missing.status_code == 404 and missing.json()["detail"] == "no page /nothing"

    # no sign-in: 401, before any body is read; a viewer of the team: the page
    anonymous = httpx.post(f"{world.server.url}/apps/{tid}/upload", content=b"x" * MB)
    assert anonymous.status_code == 401
    assert f"Not signed in to the page of task {tid}" in anonymous.json()["error"]["message"]
    viewer = world.member("page-viewer", "viewer")
    token = viewer.http.headers["Authorization"].split()[1]
    with _http(env, token) as http:
        assert http.get(f"/apps/{tid}/headers").status_code == 200
    other = world.admin.ok("POST", "/teams", json={"name": "other-team-page"})
    world.admin.ok("POST", "/users", json={"login": "stranger-page"})
    world.admin.ok(
        "POST", f"/teams/{other['id']}/members", json={"login": "stranger-page", "role": "admin"}
    )
    uid = next(u["id"] for u in world.admin.ok("GET", "/users") if u["login"] == "stranger-page")
    stranger = world.admin.ok("POST", "/tokens", json={"name": "s", "user_id": uid})["token"]
    with _http(env, stranger) as http:
        raw = http.get(f"/apps/{tid}/")
        assert raw.status_code == 404 and f"Task {tid} not found" in raw.text
        assert http.post(f"/api/v1/tasks/{tid}/app-page").status_code == 404
    with _http(env, env.agent_token) as http:
        assert http.get(f"/apps/{tid}/").status_code == 403

    # the web UI's way in: a ticket, turned into the page's cookie
    link = Client(world.server.url, token).ok("POST", f"/tasks/{tid}/app-page")
    assert link["task_id"] == tid and link["expires_in_s"] > 0
    assert link["url"].startswith(f"http://{tid}.apps.localhost:{world.server.port}/apps/{tid}/?")
    ticket_path = link["url"].split(str(world.server.port), 1)[1]
    with httpx.Client(base_url=world.server.url, timeout=30) as browser:
        host = {"Host": f"{tid}.apps.localhost:{world.server.port}"}
        entered = browser.get(ticket_path, headers=host)
        assert entered.status_code == 303 and entered.headers["location"] == f"/apps/{tid}/"
        set_cookie = entered.headers["set-cookie"]
        assert f"Path=/apps/{tid}/" in set_cookie and "HttpOnly" in set_cookie
        cookie = set_cookie.split(";")[0]
        page = browser.get(f"/apps/{tid}/headers", headers={**host, "Cookie": cookie})
        assert page.status_code == 200 and "cookie" not in dict(page.json()["headers"])
        # on its own origin the page needs no sandbox; the platform is not served there
        assert "content-security-policy" not in page.headers
        assert browser.get("/api/v1/health", headers=host).status_code == 404
        assert browser.get("/", headers=host).status_code == 404
        # the cookie opens this page only, and not with a forged signature
        assert browser.get("/api/v1/users/me", headers={"Cookie": cookie}).status_code == 401
        forged = cookie[:-4] + "0000"
        assert browser.get(f"/apps/{tid}/", headers={**host, "Cookie": forged}).status_code == 401


def test_a_dead_app_a_stopped_session_and_a_lost_tunnel(env: Env) -> None:
    api, world = env.api, env.world
    tid = _page_session(env)
    with _http(env) as http:
        # a session whose app does not serve HTTP: 502 naming it
        worker = env.api.app.start(
            agent_id=env.agent_id,
            module_id=world.admin.publish(PAGE_APP)["module_id"],
            workspace_id=world.workspace_id,
            params={"listen": False},
        ).task_id
        assert api.task.wait(worker, S.STARTED, 60, 1) == S.STARTED
        dead = http.get(f"/apps/{worker}/")
        assert dead.status_code == 502, dead.text
        assert dead.json()["error"]["code"] == "app_unreachable"
        assert f"The app of task {worker} does not answer on its port" in dead.text

        api.app.stop(worker)
        api.task.wait(worker, S.STOPPED, 60, 1)
        ended = http.get(f"/apps/{worker}/")
        assert ended.status_code == 409 and ended.json()["error"]["code"] == "not_running"
        assert f"The page of task {worker} is not there: the session has ended" in ended.text

        env.agent.kill9()
        down = http.get(f"/apps/{tid}/")
        assert down.status_code == 503 and down.json()["error"]["code"] == "tunnel_down"
        assert f"Cannot reach task {tid}: agent {env.agent_id} has no tunnel" in down.text


# -- the page's own websockets ------------------------------------------------------------------


def _ws(env: Env, path: str, token: str | None = None, **kw: Any) -> ClientConnection:
    """A websocket to ``path`` on the server (``/apps/<id>/...``), signed in with a token."""
    headers = {"Authorization": f"Bearer {token or env.api._core.token}"}
    return ws_connect(
        f"ws://127.0.0.1:{env.world.server.port}{path}",
        additional_headers={**headers, **kw.pop("headers", {})},
        open_timeout=30,
        close_timeout=5,
        max_size=4 * MB,
        proxy=None,
        legacy=True,
        **kw,
    )


def _ws_on_page_origin(env: Env, tid: int, headers: dict[str, str]) -> ClientConnection:
    """A websocket to the page's own origin (``<id>.apps.localhost``) as a browser opens it:
    no token, ``headers`` (a cookie, an origin) sent as they are."""
    port = env.world.server.port
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ws_connect(
        f"ws://{tid}.apps.localhost:{port}/apps/{tid}/ws/echo",
        sock=sock,
        additional_headers=headers,
        open_timeout=10,
        proxy=None,
        legacy=True,
    )


def _closed(conn: ClientConnection, timeout: float = 20) -> tuple[int | None, str]:
    """Read until the server closes the websocket: its close code and reason (never a hang)."""
    with pytest.raises(ConnectionClosed) as caught:
        while True:
            conn.recv(timeout=timeout)
    rcvd = caught.value.rcvd
    return (rcvd.code, rcvd.reason) if rcvd is not None else (None, "")


def test_websocket_echo_close_and_subprotocol(env: Env) -> None:
    """Text and binary messages keep their kind both ways (a message of many tunnel chunks
    too), the app's subprotocol is the client's, the platform's credentials do not reach the
    app, and close codes and reasons pass through both ways."""
    tid = _page_session(env)
    with _ws(env, f"/apps/{tid}/ws/echo?x=1", subprotocols=[Subprotocol("echo.v1")]) as conn:
        assert conn.subprotocol == "echo.v1"
        conn.send("hello")
        assert conn.recv(timeout=10) == "hello"
        conn.send(b"\x00\x01binary")
        assert conn.recv(timeout=10) == b"\x00\x01binary"
        big = os.urandom(MB - 7)  # 16 chunks of the tunnel
        conn.send(big)
        assert conn.recv(timeout=30) == big
        conn.send("é" * 1000)  # text of many bytes per character
        assert conn.recv(timeout=10) == "é" * 1000
        conn.send("")
        assert conn.recv(timeout=10) == ""
        for i in range(50):  # many in flight at once, in order
            conn.send(f"m{i}")
        assert [conn.recv(timeout=10) for _ in range(50)] == [f"m{i}" for i in range(50)]
        conn.send("headers")
        seen = json.loads(conn.recv(timeout=10))
        headers = dict(seen["headers"])
        assert seen["path"] == "/ws/echo?x=1"
        assert "authorization" not in headers and "x-api-key" not in headers
        assert headers["x-forwarded-prefix"] == f"/apps/{tid}"
        assert headers["x-forwarded-proto"] == "http"
        # the app closes: its code and reason reach the client
        conn.send("close:4321:bye from the app")
        assert _closed(conn) == (4321, "bye from the app")

    # the client closes: its code and reason reach the app
    with _ws(env, f"/apps/{tid}/ws/echo") as conn:
        conn.send("ping")
        assert conn.recv(timeout=10) == "ping"
        conn.close(4000, "the client is done")
    with _http(env) as http:
        deadline = time.monotonic() + 10
        while (last := http.get(f"/apps/{tid}/ws/last-close").json()) != {
            "code": 4000,
            "reason": "the client is done",
        }:
            assert time.monotonic() < deadline, last
            time.sleep(0.05)

    # a websocket is counted among the session's streams, and gives its place back on close
    conns = [_ws(env, f"/apps/{tid}/ws/echo") for _ in range(16)]
    try:
        with _ws(env, f"/apps/{tid}/ws/echo") as extra:
            code, reason = _closed(extra)
            assert code == 4429 and f"task {tid}: too many" in reason
    finally:
        for c in conns:
            c.close()
    with _ws(env, f"/apps/{tid}/ws/echo") as conn:
        conn.send("again")
        assert conn.recv(timeout=10) == "again"


def test_websocket_messages_over_the_cap_are_refused(env: Env) -> None:
    """A message over APPYARD_MAX_WS_MESSAGE_BYTES (1 MiB), either way, closes the websocket
    with 1009 and a reason naming the setting; the app is told too."""
    tid = _page_session(env)
    with _ws(env, f"/apps/{tid}/ws/echo") as conn:
        conn.send(b"x" * MB)  # at the cap: fine
        assert len(conn.recv(timeout=30)) == MB
        conn.send(b"x" * (MB + 1))
        code, reason = _closed(conn)
        assert code == 1009 and "APPYARD_MAX_WS_MESSAGE_BYTES" in reason, reason
        assert f"task {tid}" in reason
    with _http(env) as http:
        deadline = time.monotonic() + 10
        while http.get(f"/apps/{tid}/ws/last-close").json().get("code") != 1009:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    with _ws(env, f"/apps/{tid}/ws/echo") as conn:
        conn.send(f"big:{MB + 1}")  # the app's message over the cap
        code, reason = _closed(conn)
        assert code == 1009 and "APPYARD_MAX_WS_MESSAGE_BYTES" in reason, reason
        assert reason.startswith(f"task {tid}: the app sent a message over")


def test_websocket_sign_in_before_the_upgrade(env: Env) -> None:
    """No sign-in, another team, an agent token: refused before the upgrade, as plain HTTP
    answers; a viewer of the team may; the page's cookie works from its own origin only."""
    world = env.world
    tid = _page_session(env)
    url = f"ws://127.0.0.1:{world.server.port}/apps/{tid}/ws/echo"
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(url, open_timeout=10, proxy=None, legacy=True)
    assert refused.value.response.status_code == 401
    assert f"Not signed in to the page of task {tid}".encode() in refused.value.response.body

    other = world.admin.ok("POST", "/teams", json={"name": "other-team-ws"})
    world.admin.ok("POST", "/users", json={"login": "stranger-ws"})
    world.admin.ok(
        "POST", f"/teams/{other['id']}/members", json={"login": "stranger-ws", "role": "admin"}
    )
    uid = next(u["id"] for u in world.admin.ok("GET", "/users") if u["login"] == "stranger-ws")
    stranger = world.admin.ok("POST", "/tokens", json={"name": "s", "user_id": uid})["token"]
    with pytest.raises(InvalidStatus) as hidden:
        _ws(env, f"/apps/{tid}/ws/echo", stranger)
    assert hidden.value.response.status_code == 404
    assert f"Task {tid} not found".encode() in hidden.value.response.body
    with pytest.raises(InvalidStatus) as agent:
        _ws(env, f"/apps/{tid}/ws/echo", env.agent_token)
    assert agent.value.response.status_code == 403

    world.member("ws-viewer", "viewer")
    viewer_id = next(u["id"] for u in world.admin.ok("GET", "/users") if u["login"] == "ws-viewer")
    made = world.admin.ok("POST", "/tokens", json={"name": "browser", "user_id": viewer_id})
    token = made["token"]
    with _ws(env, f"/apps/{tid}/ws/echo", token) as conn:
        conn.send("viewer")
        assert conn.recv(timeout=10) == "viewer"

    # the browser's way: the page's cookie, from the page's own origin only
    link = Client(world.server.url, token).ok("POST", f"/tasks/{tid}/app-page")
    host = f"{tid}.apps.localhost:{world.server.port}"
    with httpx.Client(base_url=world.server.url, timeout=30) as browser:
        entered = browser.get(
            link["url"].split(str(world.server.port), 1)[1], headers={"Host": host}
        )
        cookie = entered.headers["set-cookie"].split(";")[0]
    own = {"Origin": f"http://{host}", "Cookie": f"{cookie}; theirs=1"}
    with _ws_on_page_origin(env, tid, own) as conn:
        conn.send("headers")
        headers = dict(json.loads(conn.recv(timeout=10))["headers"])
        assert headers["cookie"] == "theirs=1"  # the page's cookie is not the app's to see
    sibling = {**own, "Origin": f"http://{tid + 1}.apps.localhost:{world.server.port}"}
    with pytest.raises(InvalidStatus) as cross:
        _ws_on_page_origin(env, tid, sibling)
    assert cross.value.response.status_code == 403
    assert b"only from its own origin" in cross.value.response.body

    # sign-out (the token the cookie was made from revoked) closes the page's websockets
    with _ws_on_page_origin(env, tid, own) as conn:
        conn.send("still here")
        assert conn.recv(timeout=10) == "still here"
        world.admin.ok("DELETE", f"/tokens/{made['id']}")
        code, reason = _closed(conn)
        assert code == 4401 and f"task {tid}: signed out" in reason, (code, reason)


def test_websocket_to_an_app_without_one_and_when_the_session_stops(env: Env) -> None:
    """Every way a page's websocket cannot open, or stops, is a close with a code and a reason
    naming the task: nothing hangs."""
    api, world = env.api, env.world
    tid = _page_session(env)
    with _ws(env, f"/apps/{tid}/ws/none") as conn:  # the app answers 404 to the handshake
        code, reason = _closed(conn)
        assert code == 4400 and f"task {tid}:" in reason and "HTTP 404" in reason, reason
    dead = api.app.start(
        agent_id=env.agent_id,
        module_id=world.admin.publish(PAGE_APP)["module_id"],
        workspace_id=world.workspace_id,
        params={"listen": False},
    ).task_id
    assert api.task.wait(dead, S.STARTED, 60, 1) == S.STARTED
    with _ws(env, f"/apps/{dead}/ws/echo") as conn:
        code, reason = _closed(conn)
        assert code == 4502 and f"task {dead}: nothing answers on the app's port" in reason
    api.app.stop(dead)

    # the session stopped while a websocket is open: closed, naming the session
    with _ws(env, f"/apps/{tid}/ws/echo") as conn:
        conn.send("before")
        assert conn.recv(timeout=10) == "before"
        started = time.monotonic()
        api.app.stop(tid)
        code, reason = _closed(conn)
        assert code == 4409 and f"task {tid}: the session is" in reason, (code, reason)
        assert time.monotonic() - started < 10
    api.task.wait(tid, S.STOPPED, 60, 1)
    with _ws(env, f"/apps/{tid}/ws/echo") as conn:  # and after it ended
        code, reason = _closed(conn)
        assert code == 4409 and "the session is stopped" in reason, reason


def test_websocket_when_the_tunnel_is_lost(env: Env) -> None:
    """The agent killed while a websocket is open: the client gets a close naming the task and
    the agent at once (no hang); a new one is refused with the tunnel's code."""
    tid = _page_session(env)
    with _ws(env, f"/apps/{tid}/ws/echo") as conn:
        conn.send("before")
        assert conn.recv(timeout=10) == "before"
        started = time.monotonic()
        env.agent.kill9()
        code, reason = _closed(conn)
        assert code == 4503, (code, reason)
        assert f"task {tid}: the tunnel of agent {env.agent_id} closed" in reason
        assert time.monotonic() - started < 10
    with _ws(env, f"/apps/{tid}/ws/echo") as conn:
        code, reason = _closed(conn)
        assert code == 4503 and f"agent {env.agent_id} has no tunnel" in reason, reason


def test_a_websocket_that_is_not_read_stalls_only_itself(env: Env) -> None:
    """An app floods a client that reads nothing: the flood stops at the stream's window (the
    server's memory stays flat, and the app's sends wait: 27 of 200 left it here), another
    websocket of the same session echoes meanwhile, and the flood then arrives whole and in
    order once the client reads."""
    tid = _page_session(env)
    server = env.world.server.proc
    assert server is not None
    count, size = 200, 512 * 1024  # 100 MiB
    with _ws(env, f"/apps/{tid}/ws/echo") as warm:  # routes, threads
        warm.send(b"w" * size)
        warm.recv(timeout=10)
    before = _rss_kb(server.pid)
    # a client that reads nothing (and a small socket buffer: the kernel's own buffers could
    # hold tens of MiB whatever the platform does)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.connect(("127.0.0.1", env.world.server.port))
    with _ws(env, f"/apps/{tid}/ws/echo", max_queue=2, sock=sock) as slow:
        slow.send(f"flood:{count}:{size}")
        time.sleep(1.0)  # the flood runs into the window; nothing reads it
        with _ws(env, f"/apps/{tid}/ws/echo") as other:
            for i in range(20):
                other.send(f"other {i}")
                assert other.recv(timeout=5) == f"other {i}"
        grown_mb = (_rss_kb(server.pid) - before) / 1024
        assert grown_mb < FLAT_MB, f"the server grew by {grown_mb:.1f} MiB"
        with _http(env) as http:  # the app is held up: its sends wait for the client
            sent = http.get(f"/apps/{tid}/ws/flood").json()["sent"]
        assert sent < count // 2, f"{sent} of {count} messages left the app unread"
        for i in range(count):
            message = slow.recv(timeout=30)
            assert isinstance(message, bytes) and len(message) == size
            assert int.from_bytes(message[:4], "big") == i
