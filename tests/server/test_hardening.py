"""Issue 10 (points 2 and 7): one request cannot exhaust the server, and failures a client can
act on are answered as such (413, 422, 503 with Retry-After, 507), on a connection that stays
usable."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import (
    APPS,
    TEST_ENV,
    Client,
    ServerProc,
    World,
    config_tar,
    free_port,
    pack,
    wait_for,
)

MiB = 1024 * 1024
API = "/api/v1"


def _rss(pid: int) -> int:
    """Resident memory of ``pid`` in bytes, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def _pid(server: ServerProc) -> int:
    assert server.proc is not None
    return server.proc.pid


def _err(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error: dict[str, Any] = r.json()["error"]
    return error


def _raw(
    server: ServerProc,
    method: str,
    path: str,
    headers: dict[str, str],
    declared: int | None,
    send_bytes: int,
) -> tuple[int, dict[str, str], bytes]:
    """Send a request head (``declared`` Content-Length, or chunked when None) and up to
    ``send_bytes`` of body, then read the answer: what an attacker's client would do."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    head = [f"{method} {API}{path} HTTP/1.1", "Host: x", "Content-Type: application/json"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    head.append(
        f"Content-Length: {declared}" if declared is not None else "Transfer-Encoding: chunked"
    )
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    piece = b"[" + b" " * (MiB - 1)
    sent = 0
    try:
        while sent < send_bytes:
            if declared is None:
                sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
            else:
                sock.sendall(piece)
            sent += len(piece)
    except OSError:
        pass  # the server answered and closed: what the test is for
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head_text, _, body = data.partition(b"\r\n\r\n")
    lines = head_text.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    got = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(got.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    sock.close()
    return status, got, body


def test_a_big_body_with_a_made_up_token_is_refused_unread(server: ServerProc) -> None:
    """300 MB declared to POST /teams with a made-up token: a 401 before the body is read, and
    four at once do not grow the server by the bodies' size (they grew it by 2.3 GB)."""
    pid = _pid(server)
    before = _rss(pid)
    answers: list[tuple[int, dict[str, str], bytes]] = []

    def attack() -> None:
        answers.append(
            _raw(
                server,
                "POST",
                "/teams",
                {"Authorization": "Bearer ayu_made-up"},
                300 * MiB,
                64 * MiB,
            )
        )

    threads = [threading.Thread(target=attack) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(answers) == 4
    for status, headers, body in answers:
        assert status == 401, body
        assert json.loads(body)["error"]["code"] == "unauthenticated"
        assert headers.get("connection") == "close"
    # a chunked body (no length to judge by) with a made-up token: the same
    status, _, body = _raw(
        server, "POST", "/teams", {"Authorization": "Bearer ayu_made-up"}, None, 64 * MiB
    )
    assert status == 401, body
    # no token at all: a 401 unread
    status, _, body = _raw(server, "POST", "/teams", {}, 300 * MiB, 16 * MiB)
    assert status == 401, body
    grown = _rss(pid) - before
    assert grown < 40 * MiB, f"the server grew by {grown / MiB:.0f} MiB"


def test_every_body_is_capped(server: ServerProc) -> None:
    """A valid token does not buy an unbounded body: declared over the cap, a 413 unread;
    streamed (chunked) past it, a 413 at the cap; the server does not grow by the body."""
    pid = _pid(server)
    token = server.admin_token
    auth = {"Authorization": f"Bearer {token}"}
    before = _rss(pid)
    status, _, body = _raw(server, "POST", "/teams", auth, 300 * MiB, 64 * MiB)
    assert status == 413, body
    error = json.loads(body)["error"]
    assert error["field"] == "body" and error["code"] == "too_large"
    assert "16 MiB" in error["message"] and "APPYARD_MAX_BODY_BYTES" in error["message"]
    status, _, body = _raw(server, "POST", "/teams", auth, None, 64 * MiB)
    assert status == 413, body
    # a 100 MB param: refused as a body over the cap, never parsed
    status, _, body = _raw(server, "POST", "/tasks", auth, 100 * MiB, 100 * MiB)
    assert status == 413, body
    grown = _rss(pid) - before
    assert grown < 40 * MiB, f"the server grew by {grown / MiB:.0f} MiB"
    # the login (no token needed) reads at most a small body
    status, _, body = _raw(server, "POST", "/auth/login", {}, 300 * MiB, 0)
    assert status == 413, body


def test_fields_have_caps_naming_the_field(world: World) -> None:
    """Params, outputs, names and descriptions over their caps: a 422 naming the field, and
    nothing is written."""
    c = world.admin
    mid = c.publish(APPS / "worker")["module_id"]
    before = c.ok("GET", "/tasks", params={"team_id": world.team_id})["items"]
    big = {"blob": "x" * (256 * 1024)}
    e = _err(
        c.http.post(
            "/tasks",
            json={"workspace_id": world.workspace_id, "module_id": mid, "params": big},
        ),
        422,
    )
    assert e["field"] == "params" and "limit is 262144 bytes" in e["message"], e
    assert c.ok("GET", "/tasks", params={"team_id": world.team_id})["items"] == before
    e = _err(c.http.post("/tasks/1/outputs", json={"outputs": big}), 422)
    assert e["field"] == "outputs", e
    e = _err(c.http.post("/teams", json={"name": "n" * 201}), 422)
    assert e["field"] == "name", e
    e = _err(
        c.http.post(
            f"/teams/{world.team_id}/workspaces", json={"name": "w", "description": "d" * 5001}
        ),
        422,
    )
    assert e["field"] == "description", e
    e = _err(c.http.post("/tasks/1/progress", json={"current": 1, "message": "m" * 501}), 422)
    assert e["field"] == "message", e
    e = _err(
        c.http.post(
            "/tasks",
            json={"workspace_id": world.workspace_id, "module_id": mid, "task_name": "t" * 201},
        ),
        422,
    )
    assert e["field"] == "task_name", e
    # a manifest field over its cap names config.<key>
    e = _err(
        c.http.post(
            "/modules",
            files={
                "archive": (
                    "a.tar.gz",
                    config_tar({"name": "N" * 201, "slug": "t/long", "main_script": "main.py"}),
                )
            },
        ),
        422,
    )
    assert e["field"] == "config.name" and "at most 200" in e["message"], e


def test_a_nul_character_is_a_422_naming_the_field(server: ServerProc, world: World) -> None:
    """PostgreSQL cannot store or look up a NUL: it was a 500 (unauthenticated login too)."""
    anonymous = httpx.Client(base_url=f"{server.url}{API}", timeout=30)
    e = _err(anonymous.post("/auth/login", json={"login": "ad\x00min", "password": "x"}), 422)
    assert e["field"] == "login" and "NUL" in e["message"], e
    e = _err(anonymous.post("/auth/login", json={"login": "admin", "password": "p\x00"}), 422)
    assert e["field"] == "password", e
    c = world.admin
    e = _err(c.http.post("/teams", json={"name": "a\x00b"}), 422)
    assert e["field"] == "name", e
    e = _err(c.http.post("/users", json={"login": "u", "password": "12345678\x00"}), 422)
    assert e["field"] == "password", e
    e = _err(
        c.http.post(
            f"/teams/{world.team_id}/workspaces", json={"name": "w", "description": "\x00"}
        ),
        422,
    )
    assert e["field"] == "description", e
    e = _err(c.http.post(f"/teams/{world.team_id}/agents", json={"name": "a\x00"}), 422)
    assert e["field"] == "name", e
    mid = c.publish(APPS / "worker")["module_id"]
    e = _err(
        c.http.post(
            "/tasks",
            json={"workspace_id": world.workspace_id, "module_id": mid, "task_name": "t\x00"},
        ),
        422,
    )
    assert e["field"] == "task_name", e
    # a NUL in a query parameter that reaches the database: a 422 naming it (or no match)
    for path, params in (("/modules", {"q": "a\x00"}), ("/modules/lookup", {"slug": "a/\x00"})):
        r = c.http.get(path, params=params)
        assert r.status_code in (200, 404, 422), r.text
        if r.status_code == 422:
            assert r.json()["error"]["field"] == next(iter(params)), r.text
    r = c.http.get(f"/modules/{mid}", params={"version": "1\x00"})
    assert r.status_code in (404, 422), r.text


def test_an_agent_report_keeps_what_it_can_of_a_nul(world: World) -> None:
    """An app's output is not the agent's to fix: a NUL in a log line is replaced, not a 422
    the agent would retry forever."""
    from appyard.schemas.agents import LogRecord, TaskEvent

    line = LogRecord.model_validate({"t": "2024-01-01T00:00:00Z", "text": "a\x00b"})
    assert line.text == "a\ufffdb"
    event = TaskEvent.model_validate({"kind": "failed", "error": "e" * 100_000 + "\x00"})
    assert event.error is not None and len(event.error) == 65536 and "\x00" not in event.error


# -- a busy database and a full disk: 503 and 507 ---------------------------------------------


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[ServerProc]:
    """A SQLite server of this test's own (its database file is held from outside), that
    waits 2 s for SQLite's write lock (30 s by default: the same path, sooner)."""
    proc = ServerProc(tmp_path / "home", extra_env={"APPYARD_DB_LOCK_TIMEOUT_S": "2"}).start()
    yield proc
    proc.stop()


def test_a_held_write_lock_is_a_503_with_retry_after(own_server: ServerProc) -> None:
    """Another process holding SQLite's write lock past the busy timeout: a 503 with
    Retry-After (it was a 500), and the connection serves the next request."""
    db = sqlite3.connect(own_server.home / "appyard.db", timeout=5, isolation_level=None)
    http = httpx.Client(
        base_url=f"{own_server.url}{API}",
        headers={"Authorization": f"Bearer {own_server.admin_token}"},
        timeout=90,
    )
    http.get("/teams").raise_for_status()  # the connection is open before the lock is taken
    db.execute("BEGIN IMMEDIATE")
    try:
        r = http.post("/teams", json={"name": "blocked"})
    finally:
        db.execute("ROLLBACK")
        db.close()
    e = _err(r, 503)
    assert e["code"] == "busy" and r.headers["retry-after"].isdigit(), r.text
    assert r.headers.get("connection") != "close"
    # the same connection goes on: a write now succeeds
    r = http.post("/teams", json={"name": "after"})
    assert r.status_code == 201, r.text
    pool = http._transport._pool  # type: ignore[attr-defined]
    assert len(pool.connections) == 1


def _tmpfs_server(home: Path, size_mb: int) -> tuple[subprocess.Popen[bytes], str]:
    """A server whose home is a small tmpfs of its own (mounted in a private mount namespace:
    no privilege needed where user namespaces are allowed)."""
    home.mkdir(parents=True)
    port = free_port()
    env = {
        **os.environ,
        **TEST_ENV,
        "APPYARD_HOME": str(home),
        "APPYARD_ADMIN_TOKEN_FILE": str(home / "admin.token"),
    }
    env.pop("APPYARD_DATABASE_URL", None)
    script = 'mount -t tmpfs -o size="$1" tmpfs "$2" && shift 2 && exec "$@"'
    log = open(home.parent / "server.log", "ab")  # noqa: SIM115 - owned by the process
    proc = subprocess.Popen(
        [
            "unshare",
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            script,
            "sh",
            f"{size_mb}m",
            str(home),
            sys.executable,
            "-m",
            "appyard.server",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError((home.parent / "server.log").read_text())
        try:
            return httpx.get(f"{url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(healthy, 30, "the server on a tmpfs to answer")
    return proc, url


def test_a_full_disk_is_a_507(tmp_path: Path) -> None:
    """The disk of the database and of releases full: database writes and publish are a 507
    (they were 500s), nothing is written, and the connection serves the next request."""
    proc, url = _tmpfs_server(tmp_path / "home", 24)
    try:
        inside = Path(f"/proc/{proc.pid}/root") / str(tmp_path / "home").lstrip("/")
        token = (inside / "admin.token").read_text().strip()
        c = Client(url, token)
        filler = inside / "filler"
        with open(filler, "wb", buffering=0) as f:  # fill the disk to the last block
            for piece in (MiB, 4096):
                try:
                    while True:
                        f.write(b"\0" * piece)
                except OSError:
                    pass
        archive = pack(APPS / "worker")
        e = _err(c.http.post("/modules", files={"archive": ("a.tar.gz", archive)}), 507)
        assert e["code"] == "storage_full", e
        r = c.http.post("/teams", json={"name": "t" * 200})
        for _ in range(200):  # the database's own pages fill last: write until one is refused
            if r.status_code != 201:
                break
            r = c.http.post("/teams", json={"name": "t" * 200})
        e = _err(r, 507)
        assert e["code"] == "storage_full", e
        # space again: the same connection goes on
        filler.unlink()
        c.ok("POST", "/teams", json={"name": "after"})
        assert len(c.http._transport._pool.connections) == 1
    finally:
        proc.terminate()
        proc.wait(15)
