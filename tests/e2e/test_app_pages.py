"""A running app's own web page through the server (``/apps/{task_id}/...``) end to end: a
real server, a real agent and its tunnel, a real app with its own HTTP server
(``tests/e2e/apps/page``). The browser's side (the page's sandbox, the project viewer) is in
``tests/web/test_app_pages.py``."""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx

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
