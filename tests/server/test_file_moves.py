"""Moving team files over HTTP (``PATCH /files/{id}``): the id, content and hash go with the
file; a taken or bad destination, a viewer, another team's file and a file gone are refused
with nothing moved. On SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import appyard as ay
from tests.server.test_file_ids import _error, _put
from tests.support import Client, World


def _paths(world: World) -> dict[str, int | None]:
    """Every entry of the team's files: path -> id."""
    listed = world.admin.ok("GET", f"/teams/{world.team_id}/files", params={"recursive": "true"})
    return {e["path"]: e["id"] for e in listed}


def _root(world: World) -> Path:
    return world.server.home / "files" / str(world.team_id)


def test_a_moved_file_keeps_its_id_content_and_hash(world: World) -> None:
    admin, team = world.admin, world.team_id
    first = _put(admin, team, "/in/report.txt", b"report")
    file_id = first["id"]

    # renamed in its folder, then moved into folders made for it
    renamed = admin.ok("PATCH", f"/files/{file_id}", json={"path": "/in/renamed.txt"})
    assert (renamed["id"], renamed["path"], renamed["name"]) == (
        file_id,
        "/in/renamed.txt",
        "renamed.txt",
    )
    moved = admin.ok("PATCH", f"/files/{file_id}", json={"path": "out//deep/final.txt/"})
    assert (moved["id"], moved["path"], moved["size"], moved["team_id"]) == (
        file_id,
        "/out/deep/final.txt",
        6,
        team,
    )
    assert moved["hash"] == hashlib.sha256(b"report").hexdigest() == first["hash"]
    assert moved["created_at"] == first["created_at"]
    assert moved["updated_at"] >= first["updated_at"]

    got = admin.ok("GET", f"/files/{file_id}")
    assert (got["path"], got["hash"]) == ("/out/deep/final.txt", first["hash"])
    assert _paths(world) == {
        "/in": None,
        "/out": None,
        "/out/deep": None,
        "/out/deep/final.txt": file_id,
    }
    r = admin.http.get(f"/teams/{team}/files/info", params={"path": "/in/report.txt"})
    assert r.status_code == 404
    content = admin.http.get(f"/teams/{team}/files/content", params={"path": moved["path"]})
    assert content.content == b"report"

    # to where it is: answered as it is, nothing changes
    same = admin.ok("PATCH", f"/files/{file_id}", json={"path": "/out/deep/final.txt"})
    assert (same["id"], same["path"], same["hash"]) == (file_id, moved["path"], moved["hash"])

    # the old path is free again: a new upload there is a new file
    again = _put(admin, team, "/in/report.txt", b"new")
    assert again["id"] != file_id


def test_a_taken_or_bad_destination_moves_nothing(world: World) -> None:
    admin, team = world.admin, world.team_id
    src = _put(admin, team, "/a.txt", b"a")
    other = _put(admin, team, "/b.txt", b"b")
    admin.ok("POST", f"/teams/{team}/files/folders", json={"path": "/folder"})
    (_root(world) / "elsewhere").mkdir()
    (_root(world) / "link").symlink_to(_root(world) / "elsewhere")
    before = _paths(world)

    def refused(body: Any, status: int, field: str) -> dict[str, Any]:
        r = admin.http.patch(f"/files/{src['id']}", json=body)
        assert r.status_code == status, (body, r.text)
        err = _error(r)
        assert err["field"] == field, (body, err)
        return err

    # taken: by a file, by a folder; under a file
    assert "taken" in refused({"path": "/b.txt"}, 409, "path")["message"]
    assert "taken" in refused({"path": "/folder"}, 409, "path")["message"]
    refused({"path": "/b.txt/inside.txt"}, 409, "path")
    # bad paths: a 422 naming the field, never a 500
    for bad in ("/../x.txt", "", "/", "a\\b.txt", "/x\u0000y", "/.appyard-x", "x" * 1025):
        refused({"path": bad}, 422, "path")
    refused({"path": "/link/x.txt"}, 422, "path")  # a symbolic link on the way
    refused({"path": 5}, 422, "path")
    refused({}, 422, "path")
    refused({"path": "/c.txt", "team_id": 1}, 422, "team_id")  # it stays in its team

    assert _paths(world) == before  # nothing moved, no folder made
    assert admin.ok("GET", f"/files/{src['id']}")["path"] == "/a.txt"
    got = admin.http.get(f"/teams/{team}/files/content", params={"path": "/b.txt"})
    assert got.content == b"b" and admin.ok("GET", f"/files/{other['id']}")["path"] == "/b.txt"


def test_who_may_move_a_file(world: World) -> None:
    admin, team = world.admin, world.team_id
    file_id = _put(admin, team, "/mine.txt", b"m")["id"]

    viewer = world.member(f"viewer-moves-{team}", "viewer")
    r = viewer.http.patch(f"/files/{file_id}", json={"path": "/viewer.txt"})
    assert r.status_code == 403, r.text
    developer = world.member(f"dev-moves-{team}", "developer")
    assert developer.ok("PATCH", f"/files/{file_id}", json={"path": "/dev.txt"})["id"] == file_id

    # a user of another team only: the same 404 as for an id that never was
    login = f"outsider-moves-{team}"
    admin.ok("POST", "/users", json={"login": login})
    uid = next(u["id"] for u in admin.ok("GET", "/users") if u["login"] == login)
    outsider = Client(
        world.server.url,
        admin.ok("POST", "/tokens", json={"name": "o", "user_id": uid})["token"],
    )
    other_team = outsider.ok("POST", "/teams", json={"name": f"other-moves-{team}"})["id"]
    theirs = _put(outsider, other_team, "/theirs.txt", b"t")["id"]
    r = outsider.http.patch(f"/files/{file_id}", json={"path": "/stolen.txt"})
    never = outsider.http.patch(f"/files/{2**31 - 1}", json={"path": "/stolen.txt"})
    assert r.status_code == never.status_code == 404
    assert _error(r)["field"] == _error(never)["field"] == "file_id"
    assert developer.http.patch(f"/files/{theirs}", json={"path": "/x.txt"}).status_code == 404
    _, agent_token = world.new_agent_token(f"moves-{team}")
    agent = Client(world.server.url, agent_token)
    assert agent.http.patch(f"/files/{file_id}", json={"path": "/a.txt"}).status_code == 404
    anon = Client(world.server.url, None)
    assert anon.http.patch(f"/files/{file_id}", json={"path": "/a.txt"}).status_code == 401
    for bad in ("0", "-1", str(2**63), "abc"):
        r = admin.http.patch(f"/files/{bad}", json={"path": "/a.txt"})
        assert r.status_code == 422 and "file_id" in r.text, (bad, r.text)

    assert admin.ok("GET", f"/files/{file_id}")["path"] == "/dev.txt"
    assert outsider.ok("GET", f"/files/{theirs}")["path"] == "/theirs.txt"


def test_moves_mend_rows_left_by_the_disk(world: World) -> None:
    admin, team, root = world.admin, world.team_id, _root(world)
    gone = _put(admin, team, "/gone.txt", b"g")["id"]
    (root / "gone.txt").unlink()  # removed by other means: the id is a 404
    r = admin.http.patch(f"/files/{gone}", json={"path": "/back.txt"})
    assert r.status_code == 404 and _error(r)["field"] == "file_id"
    assert not (root / "back.txt").exists()

    # a row left at the destination by a file removed by hand goes; the moved file takes it
    stale = _put(admin, team, "/dst.txt", b"old")["id"]
    (root / "dst.txt").unlink()
    file_id = _put(admin, team, "/src.txt", b"src")["id"]
    moved = admin.ok("PATCH", f"/files/{file_id}", json={"path": "/dst.txt"})
    assert (moved["id"], moved["path"]) == (file_id, "/dst.txt")
    assert admin.http.get(f"/files/{stale}").status_code == 404
    assert _paths(world) == {"/dst.txt": file_id}
    assert (root / "dst.txt").read_bytes() == b"src" and not (root / "src.txt").exists()


def _move_at(start: threading.Barrier, admin: Client, file_id: int, path: str) -> int:
    start.wait()  # all at once
    return admin.http.patch(f"/files/{file_id}", json={"path": path}).status_code


def test_racing_moves_of_one_file_leave_it_at_one_place(world: World) -> None:
    """Eight moves of one file to eight paths at once: each is a 200 (it moved the file from
    where it was) or the file's 404 (a racing move took it from under it), and the file ends
    at one of those paths only, where its row says (it was left at several)."""
    admin, team, root = world.admin, world.team_id, _root(world)
    for round_ in range(3):
        file_id = _put(admin, team, f"/race-{round_}.txt", b"raced")["id"]
        start = threading.Barrier(8)
        paths = [f"/to-{round_}/{i}.txt" for i in range(8)]
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(_move_at, [start] * 8, [admin] * 8, [file_id] * 8, paths))
        assert set(codes) <= {200, 404} and 200 in codes, codes
        now = admin.ok("GET", f"/files/{file_id}")["path"]
        assert now in paths and codes[paths.index(now)] == 200, (now, codes)
        on_disk = sorted(p.name for p in (root / f"to-{round_}").iterdir())
        assert on_disk == [now.rsplit("/", 1)[1]], (on_disk, now, codes)
        assert not (root / f"race-{round_}.txt").exists()
        assert [p for p, i in _paths(world).items() if i == file_id] == [now]
        assert (root / now.lstrip("/")).read_bytes() == b"raced"


def test_a_folder_moves_with_all_in_it_and_ids_stay(world: World) -> None:
    admin, team, root = world.admin, world.team_id, _root(world)
    a = _put(admin, team, "/data/a.txt", b"a")["id"]
    b = _put(admin, team, "/data/deep/b.txt", b"b")["id"]
    other = _put(admin, team, "/data-other/c.txt", b"c")["id"]  # a name that starts alike
    admin.ok("POST", f"/teams/{team}/files/folders", json={"path": "/data/empty"})
    url = f"/teams/{team}/files/folders/move"

    moved = admin.ok("POST", url, json={"src": "data/", "dst": "/archive//2024"})
    assert (moved["path"], moved["is_dir"], moved["id"]) == ("/archive/2024", True, None)
    assert _paths(world) == {
        "/archive": None,
        "/archive/2024": None,
        "/archive/2024/a.txt": a,
        "/archive/2024/deep": None,
        "/archive/2024/deep/b.txt": b,
        "/archive/2024/empty": None,
        "/data-other": None,
        "/data-other/c.txt": other,
    }
    assert admin.ok("GET", f"/files/{b}")["path"] == "/archive/2024/deep/b.txt"
    assert (root / "archive/2024/deep/b.txt").read_bytes() == b"b"

    # refused, with nothing moved
    def refused(body: dict[str, object], status: int, field: str) -> str:
        r = admin.http.post(url, json=body)
        assert r.status_code == status and _error(r)["field"] == field, r.text
        return str(_error(r)["message"])

    assert "taken" in refused({"src": "/archive/2024", "dst": "/data-other"}, 409, "dst")
    assert "inside" in refused({"src": "/archive", "dst": "/archive/2024/x"}, 422, "dst")
    refused({"src": "/archive", "dst": "/archive"}, 422, "dst")
    refused({"src": "/archive", "dst": "/"}, 422, "dst")
    refused({"src": "/", "dst": "/all"}, 422, "src")
    assert "PATCH /files" in refused({"src": "/data-other/c.txt", "dst": "/c"}, 422, "src")
    refused({"src": "/nothing", "dst": "/x"}, 404, "src")
    refused({"src": "/archive/../etc", "dst": "/x"}, 422, "src")
    refused({"src": "/archive", "dst": ""}, 422, "dst")
    # a file in the way of the new path's folders; a symbolic link on the way
    assert "is a file" in refused({"src": "/archive", "dst": "/data-other/c.txt/x"}, 409, "dst")
    (root / "link").symlink_to(root / "archive")
    assert "symbolic link" in refused({"src": "/link/2024", "dst": "/z"}, 422, "src")
    assert "symbolic link" in refused({"src": "/archive", "dst": "/link/z"}, 422, "dst")
    (root / "link").unlink()
    # hostile bodies: a NUL, the wrong type, too long, a field missing, nested past the parser
    refused({"src": "/archive\x00", "dst": "/x"}, 422, "src")
    refused({"src": ["/archive"], "dst": "/x"}, 422, "src")
    refused({"src": "/archive", "dst": "/" + "d" * 2000}, 422, "dst")
    refused({"src": "/archive"}, 422, "dst")
    deep = admin.http.post(url, content=b'{"src": ' + b"[" * 5000 + b"]" * 5000 + b"}")
    assert deep.status_code == 422 and _error(deep)["field"] == "body", deep.text
    assert admin.ok("GET", f"/files/{a}")["path"] == "/archive/2024/a.txt"
    assert not (root / "x").exists() and not (root / "all").exists()

    # a viewer may not; a developer of another team gets this team's 404, nothing moved
    viewer = world.member("folder-viewer", "viewer")
    r = viewer.http.post(url, json={"src": "/archive", "dst": "/y"})
    assert r.status_code == 403, r.text
    developer = world.member("folder-developer", "developer")
    other_team = admin.ok("POST", "/teams", json={"name": f"other-{team}"})["id"]
    admin.ok("POST", f"/teams/{other_team}/files/folders", json={"path": "/theirs"})
    r = developer.http.post(
        f"/teams/{other_team}/files/folders/move", json={"src": "/theirs", "dst": "/mine"}
    )
    assert r.status_code == 404, r.text
    assert (world.server.home / "files" / str(other_team) / "theirs").is_dir()

    # through the SDK: api.file.move takes a folder too
    with ay.Api(world.server.url, world.server.admin_token) as api:
        back = api.file.move(team, "/archive/2024", "/data")
    assert back.path == "/data" and back.is_dir
    assert admin.ok("GET", f"/files/{a}")["path"] == "/data/a.txt"
    assert _paths(world)["/data/deep/b.txt"] == b
