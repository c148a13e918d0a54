"""Ids of team files over HTTP: an id per file, kept while the file is at its path (a new upload
there included), ``GET /files/{id}``, another team's id answered as a missing one, ids of files
put on the disk by hand, racing uploads sharing one id, and the migration that indexes the
files already there. On SQLite and on PostgreSQL."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from sqlalchemy import create_engine, text

from appyard.server.db.migrate import alembic_config
from tests.support import Client, ServerProc, World, pg_available, pg_database

MAX_ID = 2**31 - 1


def _files(world: World) -> str:
    return f"/teams/{world.team_id}/files"


def _put(client: Client, team_id: int, path: str, data: bytes) -> dict[str, Any]:
    info: dict[str, Any] = client.ok(
        "PUT", f"/teams/{team_id}/files/content", params={"path": path}, content=data
    )
    return info


def _error(r: httpx.Response) -> dict[str, Any]:
    err: dict[str, Any] = r.json()["error"]
    return err


def test_a_file_keeps_its_id_while_it_is_there(world: World) -> None:
    admin, files, team = world.admin, _files(world), world.team_id
    me = admin.ok("GET", "/users/me")
    first = _put(admin, team, "/exports/a.bin", b"one")
    file_id = first["id"]
    assert isinstance(file_id, int) and 1 <= file_id <= MAX_ID
    assert first["team_id"] == team and first["user_id"] == me["id"]
    assert first["hash"] == hashlib.sha256(b"one").hexdigest()
    assert first["created_at"] and first["updated_at"]

    got = admin.ok("GET", f"/files/{file_id}")
    assert (got["path"], got["name"], got["size"], got["is_dir"], got["team_id"]) == (
        "/exports/a.bin",
        "a.bin",
        3,
        False,
        team,
    )
    assert got["hash"] == first["hash"] and got["id"] == file_id

    # listings and the info by path carry it; folders have none
    listed = admin.ok("GET", files, params={"recursive": "true"})
    assert [(e["path"], e["id"]) for e in listed] == [
        ("/exports", None),
        ("/exports/a.bin", file_id),
    ]
    assert admin.ok("GET", f"{files}/info", params={"path": "/exports/a.bin"})["id"] == file_id
    assert admin.ok("GET", f"{files}/info", params={"path": "/exports"})["id"] is None

    # a new upload over it is the same file: same id, new content and hash
    second = _put(admin, team, "/exports//a.bin", b"two!")
    assert second["id"] == file_id and second["hash"] == hashlib.sha256(b"two!").hexdigest()
    assert second["created_at"] == first["created_at"]
    got = admin.ok("GET", f"/files/{file_id}")
    assert (got["size"], got["hash"]) == (4, second["hash"])

    other = _put(admin, team, "/exports/b.bin", b"b")
    assert other["id"] != file_id

    # removed: the id answers 404; a new file at the path is a new file
    assert admin.http.delete(files, params={"path": "/exports/a.bin"}).status_code == 204
    r = admin.http.get(f"/files/{file_id}")
    assert r.status_code == 404 and _error(r)["field"] == "file_id"
    assert "not found" in _error(r)["message"]
    again = _put(admin, team, "/exports/a.bin", b"three")
    assert again["id"] not in (file_id, other["id"])

    # a folder removed with what is in it: every id in it goes
    _put(admin, team, "/exports/deep/c.bin", b"c")
    ids = [e["id"] for e in admin.ok("GET", files, params={"recursive": "true"}) if e["id"]]
    assert len(ids) == 3
    r = admin.http.delete(files, params={"path": "/exports", "recursive": "true"})
    assert r.status_code == 204
    for gone in ids:
        assert admin.http.get(f"/files/{gone}").status_code == 404

    # removing a folder takes the ids below it only: not a name that differs in case, nor one
    # that merely starts the same
    kept = [_put(admin, team, p, b"k")["id"] for p in ("/data/b.txt", "/Data2/c.txt")]
    _put(admin, team, "/Data/a.txt", b"a")
    r = admin.http.delete(files, params={"path": "/Data", "recursive": "true"})
    assert r.status_code == 204
    assert [admin.ok("GET", f"/files/{i}")["id"] for i in kept] == kept


def test_another_teams_file_id_is_not_found(world: World) -> None:
    admin, team = world.admin, world.team_id
    file_id = _put(admin, team, "/secret.txt", b"s")["id"]
    viewer = world.member(f"viewer-ids-{team}", "viewer")
    assert viewer.ok("GET", f"/files/{file_id}")["path"] == "/secret.txt"

    # a user of another team only: the same 404 as for an id that never was
    login = f"outsider-ids-{team}"
    admin.ok("POST", "/users", json={"login": login})
    uid = next(u["id"] for u in admin.ok("GET", "/users") if u["login"] == login)
    outsider = Client(
        world.server.url,
        admin.ok("POST", "/tokens", json={"name": "o", "user_id": uid})["token"],
    )
    other_team = outsider.ok("POST", "/teams", json={"name": f"other-{team}"})["id"]
    theirs = _put(outsider, other_team, "/theirs.txt", b"t")["id"]
    r = outsider.http.get(f"/files/{file_id}")
    never = outsider.http.get(f"/files/{MAX_ID}")
    assert r.status_code == never.status_code == 404
    assert _error(r)["field"] == _error(never)["field"] == "file_id"
    assert str(file_id) in _error(r)["message"]
    assert viewer.http.get(f"/files/{theirs}").status_code == 404

    # an agent's token acts as its agent only
    _, agent_token = world.new_agent_token(f"files-{team}")
    agent = Client(world.server.url, agent_token)
    assert agent.http.get(f"/files/{file_id}").status_code == 404

    # ids are capped like every id: a 422 naming it, never a 500
    for bad in ("0", "-1", str(MAX_ID + 1), str(2**63), "abc", "1.5"):
        r = admin.http.get(f"/files/{bad}")
        assert r.status_code == 422, (bad, r.text)
        assert "file_id" in r.text
    assert Client(world.server.url, None).http.get(f"/files/{file_id}").status_code == 401


def test_files_put_on_the_disk_by_hand_get_ids_when_met(world: World) -> None:
    admin, files = world.admin, _files(world)
    root = world.server.home / "files" / str(world.team_id)
    (root / "by-hand").mkdir(parents=True)
    (root / "by-hand" / "x.txt").write_bytes(b"xx")
    (root / "by-hand" / "y.txt").write_bytes(b"yyy")
    listed = admin.ok("GET", files, params={"path": "/by-hand"})
    ids = {e["name"]: e["id"] for e in listed}
    assert all(isinstance(i, int) for i in ids.values()) and len(set(ids.values())) == 2
    assert all(e["hash"] is None for e in listed)  # nothing wrote it through the API
    # the same ids next time, and by path
    assert {e["name"]: e["id"] for e in admin.ok("GET", files, params={"path": "/by-hand"})} == ids
    info = admin.ok("GET", f"{files}/info", params={"path": "/by-hand/x.txt"})
    assert info["id"] == ids["x.txt"]
    got = admin.ok("GET", f"/files/{ids['y.txt']}")
    assert (got["path"], got["size"], got["hash"]) == ("/by-hand/y.txt", 3, None)

    # removed by hand: its id answers 404 (and is forgotten); a folder there is no file either
    (root / "by-hand" / "y.txt").unlink()
    assert admin.http.get(f"/files/{ids['y.txt']}").status_code == 404
    (root / "by-hand" / "x.txt").unlink()
    (root / "by-hand" / "x.txt").mkdir()
    assert admin.http.get(f"/files/{ids['x.txt']}").status_code == 404
    # a file put back at the path later is a new file
    shutil.rmtree(root / "by-hand" / "x.txt")
    new = _put(admin, world.team_id, "/by-hand/x.txt", b"new")
    assert new["id"] != ids["x.txt"]


def test_racing_uploads_of_one_path_share_one_id(world: World) -> None:
    admin, team = world.admin, world.team_id
    contents = [os.urandom(1000 + i) for i in range(8)]
    barrier = threading.Barrier(len(contents))

    def upload(data: bytes) -> int:
        barrier.wait()
        return int(_put(admin, team, "/race/one.bin", data)["id"])

    with ThreadPoolExecutor(max_workers=len(contents)) as pool:
        ids = set(pool.map(upload, contents))
    assert len(ids) == 1
    (file_id,) = ids
    got = admin.ok("GET", f"/files/{file_id}")
    on_disk = (world.server.home / "files" / str(team) / "race" / "one.bin").read_bytes()
    assert got["size"] == len(on_disk)
    # a hash is said only for the content on disk
    assert got["hash"] in (None, hashlib.sha256(on_disk).hexdigest())
    assert got["hash"] is None or on_disk in contents


def _databases() -> list[str]:
    wanted = os.environ.get("APPYARD_TEST_DATABASES", "sqlite,postgres").split(",")
    return [d for d in wanted if d == "sqlite" or (d == "postgres" and pg_available())]


@pytest.mark.parametrize("database", _databases())
def test_the_migration_gives_the_files_already_there_ids(database: str, tmp_path: Path) -> None:
    """A database at 0009 with team files on disk: the server's start (migration 0010) makes
    a row for each regular file of a team that exists, before anything lists them."""
    with pg_database() if database == "postgres" else contextlib.nullcontext() as pg_url:
        server = ServerProc(tmp_path / "home", database_url=pg_url).start()
        url = pg_url or f"sqlite:///{server.home / 'appyard.db'}"
        try:
            admin = Client(server.url, server.admin_token)
            team = admin.ok("POST", "/teams", json={"name": "old"})["id"]
        finally:
            server.stop()
        engine = create_engine(url)
        try:
            command.downgrade(alembic_config(engine), "0009")
            root = server.home / "files" / str(team)
            (root / "a" / "b").mkdir(parents=True)
            (root / "a" / "b" / "deep.txt").write_bytes(b"deep")
            (root / "top.txt").write_bytes(b"top")
            (root / ".appyard-upload-x.part").write_bytes(b"temporary")
            (root / "link.txt").symlink_to(root / "top.txt")
            (server.home / "files" / "999999").mkdir()  # no such team
            (server.home / "files" / "999999" / "orphan.txt").write_bytes(b"o")
            server.start()
            try:
                with engine.connect() as conn:
                    rows = conn.execute(
                        text("SELECT id, team_id, path, size FROM team_files ORDER BY path")
                    ).all()
                assert [(r.team_id, r.path, r.size) for r in rows] == [
                    (team, "/a/b/deep.txt", 4),
                    (team, "/top.txt", 3),
                ]
                admin = Client(server.url, server.admin_token)
                got = admin.ok("GET", f"/files/{rows[0].id}")
                assert (got["path"], got["size"], got["team_id"]) == ("/a/b/deep.txt", 4, team)
                listed = admin.ok("GET", f"/teams/{team}/files", params={"recursive": "true"})
                assert {e["path"]: e["id"] for e in listed if not e["is_dir"]} == {
                    r.path: r.id for r in rows
                }
                # and a user keeps its name column empty until it is given one
                assert admin.ok("GET", "/users/me")["name"] is None
            finally:
                server.stop()
        finally:
            engine.dispose()
