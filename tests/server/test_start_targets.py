"""A start names a target that exists in the task's team, or it is refused (422) with nothing
queued: an images project or dataset of the team, a folder or file of the team's files.
Another team's project or dataset looks exactly like a missing one."""

from __future__ import annotations

from typing import Any

from tests.support import APPS, World


def _err(r, status: int):  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    return r.json()["error"]


def _task_count(world: World) -> int:
    return len(
        world.admin.ok("GET", "/tasks", params={"team_id": world.team_id, "limit": 500})["items"]
    )


def _app(world: World, *targets: str) -> int:
    """The worker test app, started from ``targets``."""
    slug = "tests/targets-" + "-".join(t.replace("_", "") for t in targets)
    published = world.admin.publish(
        APPS / "worker", slug=slug, context_menu={"target": list(targets)}
    )
    return int(published["module_id"])


def _start(world: World, module_id: int, **state: Any):  # type: ignore[no-untyped-def]
    body = {"workspace_id": world.workspace_id, "module_id": module_id, "params": state}
    return world.admin.http.post("/tasks", json=body)


def _refused(world: World, module_id: int, field: str, **state: Any) -> dict[str, Any]:
    """The start is a 422 on ``field`` and no task was made."""
    before = _task_count(world)
    e: dict[str, Any] = _err(_start(world, module_id, **state), 422)
    assert e["field"] == field, e
    assert e["message"].startswith(f"{field}: "), e
    assert _task_count(world) == before
    return e


def _masked(error: dict[str, Any], target_id: int) -> str:
    """The message with the target's id (not the team's) replaced: to compare two refusals."""
    return str(error["message"]).replace(f" {target_id} in team ", " N in team ")


def _project(world: World, workspace_id: int, name: str) -> int:
    body = {"workspace_id": workspace_id, "name": name}
    return int(world.admin.ok("POST", "/projects", json=body)["id"])


def _dataset(world: World, project_id: int, name: str = "ds") -> int:
    body = {"project_id": project_id, "name": name}
    return int(world.admin.ok("POST", "/datasets", json=body)["id"])


def _other_team_workspace(world: World) -> int:
    team = world.admin.ok("POST", "/teams", json={"name": f"other-of-{world.team_id}"})
    ws = world.admin.ok("POST", f"/teams/{team['id']}/workspaces", json={"name": "theirs"})
    return int(ws["id"])


def _upload(world: World, path: str, data: bytes = b"x") -> None:
    world.admin.ok(
        "PUT", f"/teams/{world.team_id}/files/content", params={"path": path}, content=data
    )


def test_a_missing_project_is_refused(world: World) -> None:
    mid = _app(world, "images_project")
    e = _refused(world, mid, "params.state.projectId", projectId=999999)
    assert f"there is no images project 999999 in team {world.team_id}" in e["message"]
    assert "api.project.get_list(workspace_id)" in e["message"]
    # a real one of the team is queued
    pid = _project(world, world.workspace_id, "mine")
    before = _task_count(world)
    r = _start(world, mid, projectId=pid)
    assert r.status_code == 201, r.text
    assert _task_count(world) == before + 1


def test_another_teams_project_looks_missing(world: World) -> None:
    mid = _app(world, "images_project")
    theirs = _project(world, _other_team_workspace(world), "theirs")
    missing = theirs + 1000
    foreign = _refused(world, mid, "params.state.projectId", projectId=theirs)
    absent = _refused(world, mid, "params.state.projectId", projectId=missing)
    assert _masked(foreign, theirs) == _masked(absent, missing)
    assert {k: v for k, v in foreign.items() if k != "message"} == {
        k: v for k, v in absent.items() if k != "message"
    }


def test_a_dataset_of_another_team_is_refused(world: World) -> None:
    mid = _app(world, "images_dataset")
    theirs = _dataset(world, _project(world, _other_team_workspace(world), "theirs"))
    e = _refused(world, mid, "params.state.datasetId", datasetId=theirs)
    assert f"there is no images dataset {theirs} in team {world.team_id}" in e["message"]
    assert "api.dataset.get_list(project_id)" in e["message"]
    missing = _refused(world, mid, "params.state.datasetId", datasetId=theirs + 1000)
    assert e["message"].replace(f"dataset {theirs} ", "dataset N ") == missing["message"].replace(
        f"dataset {theirs + 1000} ", "dataset N "
    )
    ours = _dataset(world, _project(world, world.workspace_id, "ours"))
    r = _start(world, mid, datasetId=ours)
    assert r.status_code == 201, r.text


def test_a_missing_folder_is_refused(world: World) -> None:
    mid = _app(world, "files_folder")
    e = _refused(world, mid, "params.state.folder", folder="/nope/deeper")
    assert f"there is no folder '/nope/deeper' in team {world.team_id}'s files" in e["message"]
    # an existing one is queued, its path normalized
    _upload(world, "/data/in/a.txt")
    r = _start(world, mid, folder="data//in/")
    assert r.status_code == 201, r.text
    task = world.admin.ok("GET", f"/tasks/{r.json()['task_id']}")
    assert task["params"]["state"]["folder"] == "/data/in"
    assert _start(world, mid, folder="/").status_code == 201  # the team's root is a folder


def test_a_file_given_for_a_folder_target_is_refused(world: World) -> None:
    _upload(world, "/data/a.txt")
    folder_app = _app(world, "files_folder")
    e = _refused(world, folder_app, "params.state.folder", folder="/data/a.txt")
    assert "'/data/a.txt' is a file" in e["message"] and "not a folder" in e["message"]
    file_app = _app(world, "files_file")
    e = _refused(world, file_app, "params.state.file", file="/data")
    assert "'/data' is a folder" in e["message"] and "not a file" in e["message"]
    e = _refused(world, file_app, "params.state.file", file="/data/b.txt")
    assert f"there is no file '/data/b.txt' in team {world.team_id}'s files" in e["message"]
    r = _start(world, file_app, file="/data/a.txt")
    assert r.status_code == 201, r.text


def test_an_escaping_path_is_refused(world: World) -> None:
    folder_app = _app(world, "files_folder")
    file_app = _app(world, "files_file")
    for bad in ("/../../etc", "../etc", "/data/./x", "a\\b", "/x\x00y"):
        _refused(world, folder_app, "params.state.folder", folder=bad)
        _refused(world, file_app, "params.state.file", file=bad)
    # a symbolic link in the team's files (made on the server's disk) is not followed
    root = world.server.home / "files" / str(world.team_id)
    root.mkdir(parents=True, exist_ok=True)
    (root / "link").symlink_to("/etc")
    e = _refused(world, folder_app, "params.state.folder", folder="/link")
    assert "symbolic link" in e["message"]
    e = _refused(world, file_app, "params.state.file", file="/link/passwd")
    assert "symbolic link" in e["message"]
