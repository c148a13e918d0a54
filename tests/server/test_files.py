"""Team files over HTTP: the round trip, every way out of the team's root refused, roles,
file-versus-folder conflicts, and uploads that fail leaving nothing behind."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import Client, ServerProc, World, wait_for


def _error(r: httpx.Response) -> dict[str, Any]:
    body = r.json()
    assert "error" in body, body
    err: dict[str, Any] = body["error"]
    return err


def _root(world: World) -> Path:
    return world.server.home / "files" / str(world.team_id)


def _disk(world: World) -> list[str]:
    """Everything under the server's files folder (all teams), as relative paths."""
    base = world.server.home / "files"
    return sorted(p.relative_to(base).as_posix() for p in base.rglob("*")) if base.exists() else []


def _put(client: Client, team_id: int, path: str, data: bytes) -> httpx.Response:
    return client.http.put(f"/teams/{team_id}/files/content", params={"path": path}, content=data)


def _files(world: World) -> str:
    return f"/teams/{world.team_id}/files"


def test_round_trip(world: World) -> None:
    admin, files = world.admin, _files(world)
    data = os.urandom(3 * 1024 * 1024 + 17)  # more than one write piece on the server
    info = admin.ok(
        "PUT", f"{files}/content", params={"path": "exports//run 1/data.bin"}, content=data
    )
    assert (info["path"], info["name"], info["is_dir"], info["size"]) == (
        "/exports/run 1/data.bin",
        "data.bin",
        False,
        len(data),
    )
    assert (_root(world) / "exports" / "run 1" / "data.bin").read_bytes() == data
    r = admin.http.get(f"{files}/content", params={"path": "/exports/run 1/data.bin"})
    assert r.status_code == 200 and r.content == data
    assert 'filename="data.bin"' in r.headers["content-disposition"]
    # replacing a file: the new content, all of it
    admin.ok("PUT", f"{files}/content", params={"path": "/exports/run 1/data.bin"}, content=b"v2")
    r = admin.http.get(f"{files}/content", params={"path": "/exports/run 1/data.bin"})
    assert r.content == b"v2"

    folder = admin.ok("POST", f"{files}/folders", json={"path": "/empty/inner/"})
    assert folder["path"] == "/empty/inner" and folder["is_dir"] and folder["size"] == 0
    again = admin.ok("POST", f"{files}/folders", json={"path": "/empty/inner"})  # mkdir -p
    assert again["path"] == "/empty/inner"

    top = admin.ok("GET", files)
    assert [(e["path"], e["is_dir"]) for e in top] == [("/empty", True), ("/exports", True)]
    everything = admin.ok("GET", files, params={"path": "/", "recursive": "true"})
    assert [e["path"] for e in everything] == [
        "/empty",
        "/empty/inner",
        "/exports",
        "/exports/run 1",
        "/exports/run 1/data.bin",
    ]
    inner = admin.ok("GET", files, params={"path": "/exports/run 1"})
    assert [(e["name"], e["size"]) for e in inner] == [("data.bin", 2)]
    root = admin.ok("GET", f"{files}/info", params={"path": "/"})
    assert root["path"] == "/" and root["is_dir"]
    info = admin.ok("GET", f"{files}/info", params={"path": "/exports/run 1/data.bin"})
    assert info["size"] == 2 and not info["is_dir"]

    r = admin.http.delete(files, params={"path": "/exports/run 1/data.bin"})
    assert r.status_code == 204
    r = admin.http.get(f"{files}/info", params={"path": "/exports/run 1/data.bin"})
    assert r.status_code == 404 and _error(r)["field"] == "path"
    r = admin.http.delete(files, params={"path": "/empty/inner"})  # an empty folder
    assert r.status_code == 204
    r = admin.http.delete(files, params={"path": "/exports", "recursive": "true"})
    assert r.status_code == 204
    assert [e["path"] for e in admin.ok("GET", files)] == ["/empty"]
    assert _disk(world) == [f"{world.team_id}", f"{world.team_id}/empty"]


def test_a_new_team_has_an_empty_root(world: World) -> None:
    assert world.admin.ok("GET", _files(world)) == []
    assert world.admin.ok("GET", _files(world), params={"recursive": "true"}) == []


ESCAPES = [
    "../x",
    "/../x",
    "/a/../../x",
    "a/..",
    "/a/./b",
    "..",
    "a\\b",
    "..\\x",
    "a\x00b",
    "/a\nb",
    "",
    "/" + "x" * 256,
    "/a" * 600,
    "/.appyard-upload-x.part",
]


@pytest.mark.parametrize("path", ESCAPES)
def test_escapes_are_refused_and_nothing_is_written(world: World, path: str) -> None:
    admin, files = world.admin, _files(world)
    before = _disk(world)
    for method, url, kw in [
        ("PUT", f"{files}/content", {"params": {"path": path}, "content": b"x"}),
        ("GET", f"{files}/content", {"params": {"path": path}}),
        ("GET", f"{files}/info", {"params": {"path": path}}),
        ("GET", files, {"params": {"path": path}}),
        ("DELETE", files, {"params": {"path": path, "recursive": "true"}}),
    ]:
        r = admin.http.request(method, url, **kw)
        assert r.status_code == 422, (method, path, r.text)
        assert _error(r)["field"] == "path", r.text
    r = admin.http.post(f"{files}/folders", json={"path": path})
    assert r.status_code == 422 and _error(r)["field"] == "path", r.text
    assert _disk(world) == before
    assert (
        not (world.server.home / "x").exists() and not (world.server.home / "files" / "x").exists()
    )


def test_percent_encoded_dots_are_dots(world: World) -> None:
    files = _files(world)
    for query in (
        "path=%2e%2e%2fx",
        "path=%2E%2E/x",
        "path=/a/%2e%2e/%2e%2e/x",
        "path=a%5cb",
        "path=a%00b",
    ):
        for method in ("GET", "PUT"):
            r = world.admin.http.request(method, f"{files}/content?{query}", content=b"x")
            assert r.status_code == 422 and _error(r)["field"] == "path", (query, r.text)
    assert not (world.server.home / "files" / "x").exists()
    # a name that merely looks encoded once decoded is an ordinary name inside the root
    r = world.admin.http.put(f"{files}/content?path=%252e%252e", content=b"ok")
    assert r.status_code == 200 and r.json()["path"] == "/%2e%2e"
    assert (_root(world) / "%2e%2e").read_bytes() == b"ok"


def test_symbolic_links_are_never_followed(world: World) -> None:
    admin, files = world.admin, _files(world)
    outside = Path(tempfile.mkdtemp(dir=world.tmp))
    (outside / "secret.txt").write_text("secret")
    admin.ok("PUT", f"{files}/content", params={"path": "/ok.txt"}, content=b"ok")
    root = _root(world)
    os.symlink(outside, root / "link")
    os.symlink(outside / "secret.txt", root / "secret-link")
    (root / "deep").mkdir()
    os.symlink("../..", root / "deep" / "up")  # a relative link out of the root
    before = sorted(p.name for p in outside.iterdir())

    for path in ("/link", "/link/secret.txt", "/secret-link", "/deep/up", "/deep/up/1"):
        for method, url, kw in [
            ("GET", f"{files}/content", {"params": {"path": path}}),
            ("GET", f"{files}/info", {"params": {"path": path}}),
            ("GET", files, {"params": {"path": path}}),
            ("PUT", f"{files}/content", {"params": {"path": path}, "content": b"pwned"}),
            ("PUT", f"{files}/content", {"params": {"path": path + "/new"}, "content": b"x"}),
            ("DELETE", files, {"params": {"path": path, "recursive": "true"}}),
        ]:
            r = admin.http.request(method, url, **kw)
            assert r.status_code == 422, (method, path, r.text)
            assert _error(r)["field"] == "path" and "symbolic link" in _error(r)["message"]
        r = admin.http.post(f"{files}/folders", json={"path": path + "/sub"})
        assert r.status_code == 422 and "symbolic link" in _error(r)["message"]

    assert sorted(p.name for p in outside.iterdir()) == before
    assert (outside / "secret.txt").read_text() == "secret"
    # listings leave the links out, and a recursive one does not walk through them
    listed = [e["path"] for e in admin.ok("GET", files, params={"recursive": "true"})]
    assert listed == ["/deep", "/ok.txt"]
    # removing the folder holding a link removes the link, not what it points to
    r = admin.http.delete(files, params={"path": "/deep", "recursive": "true"})
    assert r.status_code == 204
    assert (world.server.home / "files").exists() and (outside / "secret.txt").exists()


def test_roles_and_tenancy(world: World) -> None:
    files = _files(world)
    world.admin.ok("PUT", f"{files}/content", params={"path": "/shared.txt"}, content=b"hi")
    viewer = world.member(f"files-viewer-{world.team_id}", "viewer")
    developer = world.member(f"files-dev-{world.team_id}", "developer")

    # a viewer reads
    assert [e["path"] for e in viewer.ok("GET", files)] == ["/shared.txt"]
    assert viewer.ok("GET", f"{files}/info", params={"path": "/shared.txt"})["size"] == 2
    assert viewer.http.get(f"{files}/content", params={"path": "/shared.txt"}).content == b"hi"
    # ... and writes nothing
    for method, url, kw in [
        ("PUT", f"{files}/content", {"params": {"path": "/v.txt"}, "content": b"x"}),
        ("POST", f"{files}/folders", {"json": {"path": "/v"}}),
        ("DELETE", files, {"params": {"path": "/shared.txt"}}),
    ]:
        r = viewer.http.request(method, url, **kw)
        assert r.status_code == 403, (method, r.text)
        assert "developer" in _error(r)["message"]
    assert sorted(p.name for p in _root(world).iterdir()) == ["shared.txt"]

    # a developer writes
    assert developer.ok("PUT", f"{files}/content", params={"path": "/d.txt"}, content=b"d")
    r = developer.http.delete(files, params={"path": "/d.txt"})
    assert r.status_code == 204

    # a member of another team, and an agent token, see no such team
    login = f"files-stranger-{world.team_id}"
    uid = world.admin.ok("POST", "/users", json={"login": login})["id"]
    stranger = Client(
        world.server.url,
        world.admin.ok("POST", "/tokens", json={"name": login, "user_id": uid})["token"],
    )
    other_team = stranger.ok("POST", "/teams", json={"name": f"other-{world.team_id}"})
    stranger.ok(
        "PUT", f"/teams/{other_team['id']}/files/content", params={"path": "/s"}, content=b"s"
    )
    _, agent_token = world.new_agent_token("files-agent")
    agent = Client(world.server.url, agent_token)
    for client, team in [
        (stranger, world.team_id),
        (developer, other_team["id"]),
        (agent, world.team_id),
    ]:
        base = f"/teams/{team}/files"
        for method, url, kw in [
            ("GET", base, {}),
            ("GET", f"{base}/info", {"params": {"path": "/shared.txt"}}),
            ("GET", f"{base}/content", {"params": {"path": "/s"}}),
            ("PUT", f"{base}/content", {"params": {"path": "/x.txt"}, "content": b"x"}),
            ("POST", f"{base}/folders", {"json": {"path": "/x"}}),
            ("DELETE", base, {"params": {"path": "/s"}}),
        ]:
            r = client.http.request(method, url, **kw)
            assert r.status_code == 404, (method, url, r.text)
            assert _error(r)["field"] == "team_id"
    assert sorted(p.name for p in _root(world).iterdir()) == ["shared.txt"]
    other_root = world.server.home / "files" / str(other_team["id"])
    assert sorted(p.name for p in other_root.iterdir()) == ["s"]
    r = Client(world.server.url, None).http.get(files)
    assert r.status_code == 401


def test_file_and_folder_conflicts(world: World) -> None:
    admin, files = world.admin, _files(world)
    admin.ok("PUT", f"{files}/content", params={"path": "/dir/a.txt"}, content=b"a")
    admin.ok("PUT", f"{files}/content", params={"path": "/file.txt"}, content=b"f")

    def refused(method: str, url: str, status: int, **kw: Any) -> str:
        r = admin.http.request(method, url, **kw)
        assert r.status_code == status, (method, url, kw, r.text)
        assert _error(r)["field"] == "path"
        return str(_error(r)["message"])

    # a file where a folder is, and things under a file
    assert "is a folder" in refused(
        "PUT", f"{files}/content", 409, params={"path": "/dir"}, content=b"x"
    )
    assert "'/file.txt' is a file" in refused(
        "PUT", f"{files}/content", 409, params={"path": "/file.txt/x/y"}, content=b"x"
    )
    assert "is a file" in refused("POST", f"{files}/folders", 409, json={"path": "/file.txt"})
    assert "'/file.txt' is a file" in refused(
        "POST", f"{files}/folders", 409, json={"path": "/file.txt/sub"}
    )
    # reading the wrong kind
    assert "is a folder" in refused("GET", f"{files}/content", 409, params={"path": "/dir"})
    assert "is a file" in refused("GET", files, 409, params={"path": "/file.txt"})
    # what is not there
    refused("GET", f"{files}/info", 404, params={"path": "/file.txt/x"})
    refused("GET", f"{files}/info", 404, params={"path": "/nope"})
    refused("GET", f"{files}/content", 404, params={"path": "/nope"})
    refused("GET", files, 404, params={"path": "/nope"})
    refused("DELETE", files, 404, params={"path": "/nope"})
    # a folder with something in it needs recursive; the root cannot go
    assert "not empty" in refused("DELETE", files, 409, params={"path": "/dir"})
    assert "root" in refused("DELETE", files, 422, params={"path": "/", "recursive": "true"})
    assert "root" in refused("PUT", f"{files}/content", 422, params={"path": "/"}, content=b"x")
    # nothing moved
    assert (_root(world) / "dir" / "a.txt").read_bytes() == b"a"
    assert (_root(world) / "file.txt").read_bytes() == b"f"
    assert sorted(p.name for p in _root(world).iterdir()) == ["dir", "file.txt"]


def test_an_aborted_upload_leaves_nothing(world: World) -> None:
    files = _files(world)
    world.admin.ok("PUT", f"{files}/content", params={"path": "/up/keep.txt"}, content=b"k")
    root = _root(world)
    token = world.admin.http.headers["Authorization"].split()[1]
    head = (
        f"PUT /api/v1{files}/content?path=/up/new/deeper/big.bin HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Length: {64 * 1024 * 1024}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", world.server.port)) as sock:
        sock.sendall(head + os.urandom(3 * 1024 * 1024))  # some of it, then the client is gone
        wait_for(lambda: list(root.rglob(".appyard-upload-*")), 20, "the upload to begin")
        # meanwhile a listing does not show the file being written
        listed = world.admin.ok("GET", files, params={"recursive": "true"})
        assert [e["path"] for e in listed] == ["/up", "/up/keep.txt", "/up/new", "/up/new/deeper"]
    wait_for(lambda: not (root / "up" / "new").exists(), 20, "the aborted upload to be removed")
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == ["up", "up/keep.txt"]
    # the server is fine afterwards
    assert [e["path"] for e in world.admin.ok("GET", files, params={"path": "/up"})] == [
        "/up/keep.txt"
    ]


def test_uploads_over_the_limit_are_refused(tmp_path: Path) -> None:
    limit = 1024 * 1024
    server = ServerProc(tmp_path / "home", extra_env={"APPYARD_MAX_FILE_BYTES": str(limit)}).start()
    try:
        admin = Client(server.url, server.admin_token)
        team = admin.ok("POST", "/teams", json={"name": "small"})["id"]
        url = f"/teams/{team}/files/content"
        assert (
            admin.ok("PUT", url, params={"path": "/fits.bin"}, content=b"x" * limit)["size"]
            == limit
        )

        r = admin.http.put(url, params={"path": "/a/declared.bin"}, content=b"x" * (limit + 1))
        assert r.status_code == 413 and _error(r)["field"] == "body", r.text

        def chunks() -> Any:  # no Content-Length: the server counts as it goes
            for _ in range(3):
                yield b"y" * (limit // 2)

        r = admin.http.put(url, params={"path": "/b/streamed.bin"}, content=chunks())
        assert r.status_code == 413 and _error(r)["code"] == "too_large", r.text
        root = server.home / "files" / str(team)
        assert sorted(p.name for p in root.iterdir()) == ["fits.bin"]
    finally:
        server.stop()


def _slow_upload(
    client: Client, team_id: int, path: str, go: threading.Event
) -> tuple[threading.Thread, list[httpx.Response]]:
    """A PUT whose body sends one piece, then waits for ``go`` before sending the rest."""
    answers: list[httpx.Response] = []

    def body() -> Iterator[bytes]:
        yield b"first piece "
        assert go.wait(30), "the test never let the upload finish"
        yield b"and the rest"

    def run() -> None:
        answers.append(
            client.http.put(
                f"/teams/{team_id}/files/content", params={"path": path}, content=body()
            )
        )

    thread = threading.Thread(target=run)
    thread.start()
    return thread, answers


@pytest.mark.parametrize("folder_existed", [True, False])
def test_a_folder_removed_during_an_upload_is_a_conflict(
    world: World, folder_existed: bool
) -> None:
    admin, files, root = world.admin, _files(world), _root(world)
    admin.ok("PUT", f"{files}/content", params={"path": "/keep.txt"}, content=b"k")
    if folder_existed:
        admin.ok("PUT", f"{files}/content", params={"path": "/x/y/old.txt"}, content=b"o")
    go = threading.Event()
    thread, answers = _slow_upload(admin, world.team_id, "/x/y/f.bin", go)
    try:
        wait_for(lambda: list(root.rglob(".appyard-upload-*")), 20, "the upload to begin")
        r = admin.http.delete(files, params={"path": "/x", "recursive": "true"})
        assert r.status_code == 204, r.text
    finally:
        go.set()
        thread.join(30)
    assert not thread.is_alive()
    [r] = answers
    assert r.status_code == 409, r.text
    assert _error(r)["field"] == "path"
    assert "removed during the upload; nothing was written" in _error(r)["message"]
    # nothing was written, and no temporary file is left anywhere
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == ["keep.txt"]
    assert [e["path"] for e in admin.ok("GET", files, params={"recursive": "true"})] == [
        "/keep.txt"
    ]


def test_a_folder_made_again_during_an_upload_is_not_written_into(world: World) -> None:
    admin, files, root = world.admin, _files(world), _root(world)
    go = threading.Event()
    thread, answers = _slow_upload(admin, world.team_id, "/x/y/f.bin", go)
    try:
        wait_for(lambda: list(root.rglob(".appyard-upload-*")), 20, "the upload to begin")
        r = admin.http.delete(files, params={"path": "/x", "recursive": "true"})
        assert r.status_code == 204, r.text
        admin.ok("POST", f"{files}/folders", json={"path": "/x/y"})  # someone else's now
    finally:
        go.set()
        thread.join(30)
    [r] = answers
    assert r.status_code == 409, r.text
    assert "removed during the upload" in _error(r)["message"]
    # the folders made again are left alone, and hold nothing of the failed upload
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == ["x", "x/y"]


def test_making_folders_while_they_are_removed_is_never_a_server_error(world: World) -> None:
    """mkdir -p and uploads race recursive deletes of their top folder, many times over: each
    answer is a success, a 404 or a 409, never a 5xx, and nothing half-made stays behind."""
    admin, files, root = world.admin, _files(world), _root(world)
    deep = "/m/" + "/".join(f"d{i}" for i in range(30))
    calls = {
        "mkdir": ("POST", f"{files}/folders", {"json": {"path": deep}}),
        "upload": (
            "PUT",
            f"{files}/content",
            {"params": {"path": deep + "/f.bin"}, "content": b"x"},
        ),
        "delete": ("DELETE", files, {"params": {"path": "/m", "recursive": "true"}}),
    }
    expected = {"mkdir": {201, 409}, "upload": {200, 409}, "delete": {204, 404}}
    answers: list[tuple[str, int, str]] = []

    def call(kind: str, barrier: threading.Barrier) -> None:
        method, url, kw = calls[kind]
        barrier.wait()
        r = admin.http.request(method, url, **kw)
        answers.append((kind, r.status_code, r.text))

    kinds = ["mkdir", "upload", "delete", "delete"]
    with ThreadPoolExecutor(max_workers=len(kinds)) as pool:
        for _ in range(80):
            barrier = threading.Barrier(len(kinds))
            for job in [pool.submit(call, kind, barrier) for kind in kinds]:
                job.result(timeout=60)
    unexpected = [a for a in answers if a[1] not in expected[a[0]]]
    assert not unexpected, unexpected[:5]
    seen = {(kind, status) for kind, status, _ in answers}
    assert {("mkdir", 201), ("upload", 200), ("delete", 204)} <= seen, seen
    # whatever is left is whole: folders, maybe the uploaded file, no temporary files
    left = [e["path"] for e in admin.ok("GET", files, params={"recursive": "true"})]
    on_disk = sorted("/" + p.relative_to(root).as_posix() for p in root.rglob("*"))
    assert left == on_disk
    assert all(".appyard-" not in p for p in on_disk), on_disk


def test_downloads_racing_deletes_are_whole_or_not_found(world: World) -> None:
    """A download racing a delete of its file answers the whole file or a 404, never a 5xx;
    one that already began is not cut by the delete."""
    admin, files = world.admin, _files(world)
    data = os.urandom(2 * 1024 * 1024 + 3)
    admin.ok("PUT", f"{files}/content", params={"path": "/r/f.bin"}, content=data)
    with admin.http.stream("GET", f"{files}/content", params={"path": "/r/f.bin"}) as r:
        assert r.status_code == 200
        assert r.headers["content-length"] == str(len(data))
        pieces = r.iter_bytes()
        first = next(pieces)
        assert (
            admin.http.delete(files, params={"path": "/r", "recursive": "true"}).status_code == 204
        )
        assert first + b"".join(pieces) == data

    answers: list[tuple[str, int, bytes]] = []

    def call(kind: str, barrier: threading.Barrier) -> None:
        barrier.wait()
        if kind == "get":
            r = admin.http.get(f"{files}/content", params={"path": "/r/f.bin"})
        else:
            r = admin.http.delete(files, params={"path": "/r/f.bin"})
        answers.append((kind, r.status_code, r.content))

    with ThreadPoolExecutor(max_workers=3) as pool:
        for _ in range(60):
            admin.ok("PUT", f"{files}/content", params={"path": "/r/f.bin"}, content=data[:5000])
            barrier = threading.Barrier(3)
            for job in [pool.submit(call, kind, barrier) for kind in ("get", "get", "delete")]:
                job.result(timeout=60)
    unexpected = [
        (k, s) for k, s, body in answers if s >= 500 or (s == 200 and body != data[:5000])
    ]
    assert not unexpected, unexpected[:5]
    assert {("get", 200), ("delete", 204)} <= {(k, s) for k, s, _ in answers}
