"""``api.file``, task outputs that point into team files, and ``appyard files``: all against a
real server (and, for the app, a real agent running a real app process)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import appyard as ay
from appyard.cli.main import cli
from appyard.errors import (
    BadRequestError,
    ConfigurationError,
    ConflictError,
    InvalidArgumentsError,
    NotFoundError,
)
from appyard.sdk import AppSession
from tests.e2e.conftest import online_agent
from tests.sdk.helpers import FakeAgent, Tenant
from tests.support import APPS, ServerProc, World

CLIENT_VARS = ("SERVER_ADDRESS", "API_TOKEN", "TEAM_ID", "WORKSPACE_ID", "AGENT_ID", "TASK_ID")


def _tree(folder: Path) -> dict[str, bytes | None]:
    """Relative path -> content (None for a folder)."""
    return {
        p.relative_to(folder).as_posix(): (None if p.is_dir() else p.read_bytes())
        for p in sorted(folder.rglob("*"))
    }


def test_file_round_trip(tenant: Tenant, tmp_path: Path) -> None:
    api, team = tenant.api, tenant.team_id
    src = tmp_path / "data.bin"
    data = os.urandom(5 * 1024 * 1024 + 3)  # several pieces each way
    src.write_bytes(data)

    info = api.file.upload(team, src, "/exports/data.bin")
    assert (info.path, info.name, info.size, info.is_dir) == (
        "/exports/data.bin",
        "data.bin",
        len(data),
        False,
    )
    assert api.file.exists(team, "/exports/data.bin")
    assert not api.file.dir_exists(team, "/exports/data.bin")
    assert api.file.dir_exists(team, "/exports") and api.file.dir_exists(team, "/")
    assert not api.file.exists(team, "/exports")
    assert not api.file.exists(team, "/nope") and not api.file.dir_exists(team, "/nope")
    assert api.file.get_info_by_path(team, "/nope") is None
    got = api.file.get_info_by_path(team, "exports//data.bin")
    assert got is not None and got.path == "/exports/data.bin" and got.size == len(data)

    dst = tmp_path / "out" / "copy.bin"
    api.file.download(team, "/exports/data.bin", dst)
    assert dst.read_bytes() == data
    # a failed download leaves no local file (not even a partial one)
    with pytest.raises(NotFoundError):
        api.file.download(team, "/nope.bin", tmp_path / "out" / "nope.bin")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["copy.bin"]
    # replacing a file, then removing it
    src.write_bytes(b"small")
    assert api.file.upload(team, src, "/exports/data.bin").size == 5
    api.file.download(team, "/exports/data.bin", dst)
    assert dst.read_bytes() == b"small"

    folder = api.file.mkdir(team, "/a/b/c")
    assert folder.is_dir and folder.path == "/a/b/c"
    assert api.file.mkdir(team, "/a/b/c").path == "/a/b/c"  # already there: fine
    assert [f.path for f in api.file.list(team)] == ["/a", "/exports"]
    assert [f.path for f in api.file.list(team, "/a", recursive=True)] == ["/a/b", "/a/b/c"]
    with pytest.raises(ConflictError):
        api.file.remove(team, "/a")  # not empty
    api.file.remove(team, "/a", recursive=True)
    api.file.remove(team, "/exports/data.bin")
    assert [f.path for f in api.file.list(team, recursive=True)] == ["/exports"]
    with pytest.raises(NotFoundError):
        api.file.remove(team, "/exports/data.bin")

    with pytest.raises(BadRequestError) as caught:
        api.file.upload(team, src, "/../escape.bin")
    assert caught.value.field == "path"
    # a team that is not yours is an error, not "no such file"
    with pytest.raises(NotFoundError) as missing:
        api.file.get_info_by_path(team + 10_000, "/x")
    assert missing.value.field == "team_id"


def test_files_by_id(server: ServerProc, tenant: Tenant, tmp_path: Path) -> None:
    api, team = tenant.api, tenant.team_id
    src = tmp_path / "by-id.txt"
    src.write_bytes(b"first")
    uploaded = api.file.upload(team, src, "/ids/by-id.txt")
    assert isinstance(uploaded.id, int) and uploaded.team_id == team
    got = api.file.get_info_by_id(uploaded.id)
    assert (got.id, got.path, got.size, got.hash) == (
        uploaded.id,
        "/ids/by-id.txt",
        5,
        hashlib.sha256(b"first").hexdigest(),
    )
    # listed with the same id; replaced, still the same file
    (listed,) = api.file.list(team, "/ids")
    assert listed.id == uploaded.id
    src.write_bytes(b"second")
    assert api.file.upload(team, src, "/ids/by-id.txt").id == uploaded.id
    assert api.file.get_info_by_id(uploaded.id).size == 6
    folder = api.file.get_info_by_path(team, "/ids")
    assert folder is not None and folder.is_dir and folder.id is None

    file_id = uploaded.id

    async def from_async() -> int | None:
        async with ay.AsyncApi(server.url, server.admin_token) as aapi:
            return (await aapi.file.get_info_by_id(file_id)).id

    assert asyncio.run(from_async()) == file_id
    api.file.remove(team, "/ids", recursive=True)
    with pytest.raises(NotFoundError) as gone:
        api.file.get_info_by_id(uploaded.id)
    assert gone.value.field == "file_id" and str(uploaded.id) in str(gone.value)


def test_files_move(server: ServerProc, tenant: Tenant, tmp_path: Path) -> None:
    api, team = tenant.api, tenant.team_id
    src = tmp_path / "move.txt"
    src.write_bytes(b"move me")
    uploaded = api.file.upload(team, src, "/from/move.txt")

    moved = api.file.move(team, "from//move.txt", "/to/sub/moved.txt")
    assert (moved.id, moved.path, moved.name, moved.size, moved.hash) == (
        uploaded.id,
        "/to/sub/moved.txt",
        "moved.txt",
        7,
        uploaded.hash,
    )
    assert api.file.get_info_by_path(team, "/from/move.txt") is None
    assert api.file.get_info_by_id(uploaded.id).path == "/to/sub/moved.txt"
    assert api.file.move_by_id(uploaded.id, "/to/sub/moved.txt").path == "/to/sub/moved.txt"

    # refusals: a taken path, a bad one, no such file, a folder; nothing moves
    api.file.upload(team, src, "/taken.txt")
    with pytest.raises(ConflictError) as taken:
        api.file.move(team, "/to/sub/moved.txt", "/taken.txt")
    assert taken.value.field == "path" and "taken" in str(taken.value)
    with pytest.raises(BadRequestError) as bad:
        api.file.move_by_id(uploaded.id, "/../escape.txt")
    assert bad.value.field == "path"
    with pytest.raises(BadRequestError) as empty:
        api.file.move_by_id(uploaded.id, "")
    assert empty.value.field == "path"
    with pytest.raises(NotFoundError) as missing:
        api.file.move(team, "/nope.txt", "/x.txt")
    assert missing.value.field == "path"
    # a folder moves with what is in it, ids staying; not into itself
    assert api.file.move(team, "/to", "/elsewhere").path == "/elsewhere"
    assert api.file.get_info_by_id(uploaded.id).path == "/elsewhere/sub/moved.txt"
    with pytest.raises(BadRequestError) as inside:
        api.file.move(team, "/elsewhere", "/elsewhere/sub/x")
    assert inside.value.field == "dst"
    api.file.move(team, "/elsewhere", "/to")
    assert api.file.get_info_by_id(uploaded.id).path == "/to/sub/moved.txt"

    file_id = uploaded.id

    async def from_async() -> tuple[str, str]:
        async with ay.AsyncApi(server.url, server.admin_token) as aapi:
            first = await aapi.file.move(team, "/to/sub/moved.txt", "/async.txt")
            second = await aapi.file.move_by_id(file_id, "/back.txt")
            return first.path, second.path

    assert asyncio.run(from_async()) == ("/async.txt", "/back.txt")
    assert api.file.get_info_by_id(file_id).path == "/back.txt"


def test_downloads_are_ordinary_files(tenant: Tenant, tmp_path: Path) -> None:
    """A downloaded file gets the mode any new file gets here: 0666 less the umask."""
    api, team = tenant.api, tenant.team_id
    src = tmp_path / "src.txt"
    src.write_text("hello")
    api.file.upload(team, src, "/m/src.txt")
    for umask, mode in ((0o022, 0o644), (0o002, 0o664), (0o077, 0o600)):
        dst = tmp_path / f"down-{umask:o}" / "src.txt"
        old = os.umask(umask)
        try:
            api.file.download(team, "/m/src.txt", dst)
        finally:
            os.umask(old)
        assert dst.read_text() == "hello"
        assert oct(dst.stat().st_mode & 0o777) == oct(mode)
        assert [p.name for p in dst.parent.iterdir()] == ["src.txt"]


def test_directories(tenant: Tenant, tmp_path: Path) -> None:
    api, team = tenant.api, tenant.team_id
    local = tmp_path / "local"
    (local / "sub" / "deeper").mkdir(parents=True)
    (local / "empty").mkdir()
    (local / "top.txt").write_text("top")
    (local / "sub" / "a.bin").write_bytes(os.urandom(70_000))
    (local / "sub" / "deeper" / "b.txt").write_text("b")

    uploaded = api.file.upload_directory(team, local, "/trees/one")
    assert sorted(f.path for f in uploaded) == [
        "/trees/one/sub/a.bin",
        "/trees/one/sub/deeper/b.txt",
        "/trees/one/top.txt",
    ]
    assert [f.path for f in api.file.list(team, "/trees/one", recursive=True)] == [
        "/trees/one/empty",
        "/trees/one/sub",
        "/trees/one/sub/a.bin",
        "/trees/one/sub/deeper",
        "/trees/one/sub/deeper/b.txt",
        "/trees/one/top.txt",
    ]
    back = tmp_path / "back"
    api.file.download_directory(team, "/trees/one", back)
    assert _tree(back) == _tree(local)
    # uploading the same tree again replaces, never duplicates
    api.file.upload_directory(team, local, "/trees/one/")
    assert len(api.file.list(team, "/trees/one", recursive=True)) == 6


def _task_session(
    server: ServerProc, tenant: Tenant, agent: FakeAgent, monkeypatch: pytest.MonkeyPatch
) -> AppSession:
    """An AppSession of a running task (its task token), as an app would have it."""
    project_id = tenant.api.project.create(tenant.workspace_id, "outputs").id
    started = tenant.api.app.start(
        agent_id=tenant.agent_id,
        module_id=tenant.module_id,
        workspace_id=tenant.workspace_id,
        params={"pascalContourThickness": 3, "trainSplitCoef": 0.8, "projectId": project_id},
    )
    assignment = agent.take()
    agent.started(started.task_id)
    monkeypatch.setenv("TASK_ID", str(started.task_id))
    monkeypatch.setenv("SERVER_ADDRESS", server.url)
    monkeypatch.setenv("API_TOKEN", assignment.token)
    monkeypatch.setenv("MODAL_STATE", json.dumps(assignment.state))
    return AppSession.from_env()


def test_team_file_outputs_are_checked(
    server: ServerProc,
    tenant: Tenant,
    agent: FakeAgent,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    session = _task_session(server, tenant, agent, monkeypatch)
    api, team = session.api, tenant.team_id
    src = tmp_path / "result.tar"
    src.write_bytes(b"archive")
    # the task token acts in its team's files...
    assert api.file.upload(team, src, "/exports/result.tar").size == 7
    api.file.mkdir(team, "/exports/folder")
    # ... and in no other team's
    other = tenant.api.team.create(f"other-of-{team}")
    with pytest.raises(NotFoundError):
        api.file.list(other.id)
    tenant.api.file.upload(other.id, src, "/theirs.tar")

    def refused(path: object) -> str:
        with pytest.raises(BadRequestError) as caught:
            api.task.set_outputs(session.task_id, {"archive": {"type": "team_file", "path": path}})
        assert caught.value.field == "outputs.archive.path", caught.value
        return str(caught.value)

    assert "no file '/missing.tar'" in refused("/missing.tar")
    assert "no file '/exports/folder'" in refused("/exports/folder")  # a folder is not a file
    assert "no file '/theirs.tar'" in refused("/theirs.tar")  # another team's file
    assert "'..'" in refused("/exports/../../x")
    assert "backslash" in refused("exports\\result.tar")
    assert "must be a string" in refused(None)
    assert "must be a string" in refused(7)
    root = server.home / "files" / str(team)
    os.symlink(root / "exports" / "result.tar", root / "link.tar")
    assert "symbolic link" in refused("/link.tar")
    assert tenant.api.task.get(session.task_id).outputs == {}  # nothing was half-written

    session.set_output_file("archive", "exports//result.tar")
    session.set_output("note", {"type": "other", "path": "/not/checked"})
    outputs = tenant.api.task.get(session.task_id).outputs
    assert outputs == {
        "archive": {"type": "team_file", "path": "/exports/result.tar"},
        "note": {"type": "other", "path": "/not/checked"},
    }
    info = api.task.set_output_file(session.task_id, "again", "/exports/result.tar")
    assert info.outputs["again"] == {"type": "team_file", "path": "/exports/result.tar"}
    # one bad output refuses the whole update
    with pytest.raises(BadRequestError):
        api.task.set_outputs(
            session.task_id,
            {
                "good": {"type": "team_file", "path": "/exports/result.tar"},
                "bad": {"type": "team_file", "path": "/nope"},
            },
        )
    assert "good" not in tenant.api.task.get(session.task_id).outputs
    # a user's token cannot report outputs, checked or not
    with pytest.raises(ay.AppyardError):
        tenant.api.task.set_output_file(session.task_id, "x", "/exports/result.tar")
    session.api.close()


def test_a_real_app_points_an_output_at_its_file(world: World) -> None:
    api = ay.Api(world.server.url, world.admin.http.headers["Authorization"].split()[1])
    module_id = world.admin.publish(APPS / "file-output")["module_id"]
    agent_id, _, _ = online_agent(world, "files")
    started = api.app.start(
        agent_id=agent_id,
        module_id=module_id,
        workspace_id=world.workspace_id,
        params={"path": "results//run 1/out.txt", "text": "made by the app"},
    )
    assert api.app.wait(started.task_id, target_status=ay.Status.FINISHED) == ay.Status.FINISHED
    lines = [line.text for line in api.task.logs(started.task_id)]
    assert lines == [
        "uploaded /results/run 1/out.txt",
        "refused outputs.missing.path",
        "done",
    ]
    task = api.task.get(started.task_id)
    assert task.outputs == {"result": {"type": "team_file", "path": "/results/run 1/out.txt"}}
    local = world.tmp / "out.txt"
    api.file.download(world.team_id, task.outputs["result"]["path"], local)
    assert local.read_text() == "made by the app"
    api.close()


# -- the command line -----------------------------------------------------------------------------


def appyard(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The real ``appyard`` process (errors as one red line, exit codes)."""
    base = {k: v for k, v in os.environ.items() if k not in CLIENT_VARS}
    base.update({"COLUMNS": "200", "NO_COLOR": "1", "APPYARD_ENV_FILE": "/nonexistent/a.env"})
    return subprocess.run(
        [sys.executable, "-m", "appyard.cli", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_files(server: ServerProc, tenant: Tenant, tmp_path: Path) -> None:
    env = {
        "SERVER_ADDRESS": server.url,
        "API_TOKEN": server.admin_token,
        "TEAM_ID": str(tenant.team_id),
        "APPYARD_ENV_FILE": "/nonexistent/a.env",
        "COLUMNS": "200",
        "NO_COLOR": "1",
    }
    runner = CliRunner()

    def ok(*args: str) -> str:
        # in-process (a process per command costs a second here); the same env vars
        result = runner.invoke(cli, ["files", *args], env=env)
        assert result.exit_code == 0, (args, result.output, result.exception)
        return result.output

    src = tmp_path / "report.txt"
    src.write_text("report")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("a")
    (tree / "sub" / "b.txt").write_text("b")

    assert "Folder /docs is there." in ok("mkdir", "/docs")
    assert "Uploaded /docs/report.txt (6 B)" in ok("upload", str(src), "/docs/")
    assert "Uploaded /renamed.txt" in ok("upload", str(src), "/renamed.txt")
    assert "Uploaded 2 files to /docs/tree" in ok("upload", str(tree), "/docs")

    listing = ok("ls", "/docs")
    assert "/docs/report.txt" in listing and "/docs/tree/" in listing and "6 B" in listing
    assert "/docs/tree/sub/b.txt" not in listing
    assert "/docs/tree/sub/b.txt" in ok("ls", "-r", "/docs")
    # each file's id, a folder's "-"
    report = tenant.api.file.get_info_by_path(tenant.team_id, "/docs/report.txt")
    assert report is not None and report.id is not None
    row = next(line for line in listing.splitlines() if "/docs/report.txt" in line)
    assert row.split("│")[1].strip() == str(report.id)
    row = next(line for line in listing.splitlines() if "/docs/tree/" in line)
    assert row.split("│")[1].strip() == "-"

    # 80 columns: every line fits, a long path wraps whole (never cut)
    long_dir = "/docs/" + "a-rather-long-folder-name-" * 3
    ok("upload", str(src), long_dir + "/")
    narrow = runner.invoke(cli, ["files", "ls", "-r", "/docs"], env={**env, "COLUMNS": "80"})
    assert narrow.exit_code == 0, narrow.output
    lines = narrow.output.splitlines()
    assert lines and max(len(line) for line in lines) <= 80, narrow.output
    cells = [line.split("│")[2].strip() for line in lines if line.count("│") == 6]
    assert long_dir + "/report.txt" in "".join(cells), narrow.output
    assert "…" not in narrow.output
    ok("rm", "-r", "/docs/" + long_dir.split("/")[2])

    # mv: by path, into a folder, by id; the id stays; a taken path is one line, no traceback
    assert "Moved /renamed.txt to /docs/renamed.txt (id " in ok("mv", "/renamed.txt", "/docs/")
    assert f"to /docs/report-2.txt (id {report.id})." in ok(
        "mv", "/docs/report.txt", "/docs/report-2.txt"
    )
    assert f"to /docs/report.txt (id {report.id})." in ok("mv", str(report.id), "/docs/report.txt")
    out = appyard("files", "mv", "/docs/report.txt", "/docs/renamed.txt", env=env)
    assert out.returncode == 1 and "taken" in out.stderr and "Traceback" not in out.stderr
    assert "Removed /docs/renamed.txt." in ok("rm", "/docs/renamed.txt")
    ok("upload", str(src), "/renamed.txt")
    # a folder, with what is in it; the file in it keeps its id
    assert "Moved /docs to /papers." in ok("mv", "/docs", "/papers")
    listed = [line for line in ok("ls", "/papers").splitlines() if "report.txt" in line]
    assert len(listed) == 1 and str(report.id) in listed[0], listed
    assert "Moved /papers to /docs." in ok("mv", "/papers", "/docs")

    down = tmp_path / "down"
    down.mkdir()
    ok("download", "/docs/report.txt", str(down))
    assert (down / "report.txt").read_text() == "report"
    ok("download", "/docs/tree", str(down / "copy"))
    assert _tree(down / "copy") == _tree(tree)

    # the real command: a folder with files in it needs -r, said in one line
    out = appyard("files", "rm", "/docs", env=env)
    assert out.returncode == 1 and "not empty" in out.stderr and "Traceback" not in out.stderr
    assert "Removed /docs." in ok("rm", "-r", "/docs")
    assert "Removed /renamed.txt." in ok("rm", "/renamed.txt")
    top = appyard("files", "ls", env=env)
    assert top.returncode == 0 and "/docs" not in top.stdout and "PATH" in top.stdout

    # --team-id wins over TEAM_ID
    other = tenant.api.team.create(f"cli-other-{tenant.team_id}")
    ok("upload", str(src), "/theirs.txt", "--team-id", str(other.id))
    assert "/theirs.txt" in ok("ls", "--team-id", str(other.id))
    assert "/theirs.txt" not in ok("ls")
    result = runner.invoke(cli, ["files", "ls", "--team-id", str(other.id + 1000)], env=env)
    assert isinstance(result.exception, NotFoundError)
    result = runner.invoke(cli, ["files", "upload", str(tmp_path / "missing"), "/x"], env=env)
    assert isinstance(result.exception, InvalidArgumentsError)
    no_team: dict[str, str | None] = {**env, "TEAM_ID": None}  # None: unset
    result = runner.invoke(cli, ["files", "ls"], env=no_team)
    assert isinstance(result.exception, ConfigurationError)
