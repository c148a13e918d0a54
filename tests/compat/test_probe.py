"""The reference's session/task/team/workspace/user/agent calls, made the way real scripts make
them, through ``appyard.compat`` against a live server and a real agent."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import appyard.compat as sly
from appyard.agent.inventory import INVENTORY_FILE_ENV
from appyard.compat.api.agent_api import AgentApi, AgentNotFound
from appyard.compat.api.file_api import FileInfo
from appyard.compat.api.task_api import TaskApi
from appyard.errors import (
    AuthenticationError,
    ConflictError,
    InvalidArgumentsError,
    NotFoundError,
)
from tests.e2e.conftest import Env
from tests.support import wait_for


@pytest.fixture
def api(env: Env) -> Iterator[sly.Api]:
    token = env.world.admin.http.headers["Authorization"].split()[1]
    client = sly.Api(env.world.server.url, token)
    yield client
    client.close()


def test_tenancy_calls_answer_in_the_reference_shapes(env: Env, api: sly.Api) -> None:
    team_id, workspace_id = env.world.team_id, env.world.workspace_id
    team = api.team.get_info_by_id(team_id)
    assert isinstance(team, sly.TeamInfo) and team.id == team_id and team.role == "admin"
    assert api.team.get_info_by_name(team.name) == team
    assert api.team.get_info_by_id(10**9) is None
    with pytest.raises(KeyError):
        api.team.get_info_by_id(10**9, raise_error=True)
    assert [
        t.id
        for t in api.team.get_list(filters=[{"field": "id", "operator": "=", "value": team_id}])
    ] == [team_id]

    ws = api.workspace.get_info_by_id(id=workspace_id)
    assert isinstance(ws, sly.WorkspaceInfo) and ws.team_id == team_id and ws.name == "main"
    assert api.workspace.get_info_by_name(team_id, "main") == ws
    again = api.workspace.create(team_id, "main", change_name_if_conflict=True)
    assert again.name == "main_001"
    assert [
        w.id
        for w in api.workspace.get_list(
            team_id, filters=[{"field": "name", "operator": "in", "value": ["main_001"]}]
        )
    ] == [again.id]
    with pytest.raises(sly.NotSupportedError):
        api.workspace.create(team_id, "hidden", hidden=True)

    me = api.user.get_my_info()
    assert isinstance(me, sly.UserInfo) and me.role == "admin"
    assert api.user.get_info_by_login(me.login) == me
    assert api.user.get_info_by_id(me.id) == me
    assert [u.login for u in api.user.get_team_members(team_id)] == [me.login]


def test_agent_calls_use_the_reference_statuses(env: Env, api: sly.Api) -> None:
    agent = api.agent.get_info_by_id(env.agent_id)
    assert isinstance(agent, sly.AgentInfo) and agent.status == "running" and agent.slots == 2
    assert api.agent.get_status(env.agent_id) is AgentApi.Status.RUNNING
    assert [a.id for a in api.agent.get_list_available(env.world.team_id)] == [env.agent_id]
    assert api.agent.get_info_by_name(env.world.team_id, agent.name) == agent
    assert api.agent.get_info_by_id(2**31 - 1) is None
    with pytest.raises(AgentNotFound):
        api.agent.get_status(2**31 - 1)
    with pytest.raises(sly.NotSupportedError, match="driver"):
        api.agent.get_list_available(env.world.team_id, min_nvidia_driver_version="535")


def test_agents_with_gpus(env: Env, api: sly.Api, tmp_path: Path) -> None:
    """``get_list_available(has_gpu=True)``: the running agents with at least one GPU, as
    each reported its machine (a test inventory file stands for NVML here)."""
    team_id = env.world.team_id
    made = {}
    for name, gpus in (("gpu-box", 2), ("cpu-box", 0)):
        spec = tmp_path / f"{name}.json"
        spec.write_text(
            json.dumps(
                {
                    "gpus": [
                        {"index": i, "uuid": f"GPU-{name}-{i}", "name": "Test GPU", "memory_mb": 8}
                        for i in range(gpus)
                    ]
                }
            )
        )
        agent_id, token = env.world.new_agent_token(name)
        env.world.start_agent(token, name=name, extra_env={INVENTORY_FILE_ENV: str(spec)})
        made[name] = agent_id
    wait_for(
        lambda: {a.id for a in api.agent.get_list_available(team_id)} >= set(made.values()),
        30,
        "the GPU and CPU agents online",
    )
    running = api.agent.get_list_available(team_id)
    with_gpu = api.agent.get_list_available(team_id, has_gpu=True)
    assert made["gpu-box"] in [a.id for a in with_gpu]
    assert made["cpu-box"] not in [a.id for a in with_gpu]
    assert [a.id for a in with_gpu] == [a.id for a in running if a.gpus]
    gpu_box = next(a for a in with_gpu if a.id == made["gpu-box"])
    assert gpu_box.gpu_info == {
        "is_available": True,
        "device_count": 2,
        "device_names": ["Test GPU", "Test GPU"],
    }
    # an offline agent with GPUs is not available, but listed with show_only_running=False
    env.world.agents[-2].stop()
    wait_for(
        lambda: made["gpu-box"] not in [a.id for a in api.agent.get_list_available(team_id)],
        30,
        "the GPU agent offline",
    )
    assert made["gpu-box"] not in [
        a.id for a in api.agent.get_list_available(team_id, has_gpu=True)
    ]
    everyone = api.agent.get_list_available(team_id, show_only_running=False, has_gpu=True)
    assert made["gpu-box"] in [a.id for a in everyone]


def test_task_record_calls_and_refusals(env: Env, api: sly.Api) -> None:
    team_id, workspace_id = env.world.team_id, env.world.workspace_id
    started = api.task.start(
        env.agent_id, module_id=env.worker_id, workspace_id=workspace_id, params={"lines": 2}
    )
    assert set(started) >= {"taskId", "id", "userId", "moduleId", "appId"}
    task_id = started["taskId"]
    assert api.task.wait(id=task_id, target_status=TaskApi.Status.FINISHED) == "finished"
    api.task.raise_for_status(api.task.get_status(task_id=task_id))

    info = api.task.get_info_by_id(id=task_id)
    assert isinstance(info, sly.TaskInfo) and isinstance(info, dict)
    assert info["status"] == "finished" and info["workspaceId"] == workspace_id
    assert info["teamId"] == team_id and info["agentId"] == env.agent_id
    assert info["agentName"] == "agent" and info["userLogin"]
    meta = info["meta"]
    assert meta["app"] == {
        "id": started["appId"],
        "moduleId": env.worker_id,
        "name": "Test worker",
        "slug": "tests/worker",
        "version": info["version"],
        "isBranch": False,
    }
    assert meta["name"] == "pythonSpawned" and meta["params"]["state"]["lines"] == 2
    assert meta["output"] == {} and meta["sessionToken"] == str(task_id)
    assert info["workspace_id"] == workspace_id  # ours beside

    context = api.task.get_context(id=task_id)
    assert context["team"]["id"] == team_id and context["workspace"]["name"] == "main"
    listed = api.task.get_list(
        workspace_id, filters=[{"field": "id", "operator": "=", "value": task_id}]
    )
    assert [t["id"] for t in listed] == [task_id]
    other_ws = api.workspace.create(team_id, "empty")
    assert api.task.get_list(other_ws.id) == []

    (app,) = api.app.get_list(
        team_id, filter=[{"field": "moduleId", "operator": "=", "value": env.worker_id}]
    )
    assert isinstance(app, sly.AppInfo) and app.id == started["appId"] and app.name == "Test worker"
    assert api.app.get_info_by_id(app.id).module_id == env.worker_id
    assert api.app.find_module_id_by_app_name("Test worker") == env.worker_id
    (session,) = api.app.get_sessions(team_id, env.worker_id)
    assert session.details["meta"]["app"]["id"] == app.id and session.details["id"] == task_id

    # the reference's keywords: done, or refused with our error (never a TypeError)
    again = api.app.start(
        agent_id=env.agent_id, app_id=app.id, workspace_id=workspace_id, params={"lines": 1}
    )
    assert api.app.wait(id=again.task_id, target_status=api.task.Status.FINISHED) == "finished"
    for kwargs in (
        {"is_branch": True},
        {"kubernetes_settings": {"cpu": 1}},
        {"multi_user_session": True},
        {"restart_policy": "on_error"},
        {"users_id": 10**6},
    ):
        with pytest.raises(sly.NotSupportedError):
            api.app.start(
                env.agent_id, module_id=env.worker_id, workspace_id=workspace_id, **kwargs
            )
    with pytest.raises(ValueError, match="Only one of the arguments"):
        api.app.start(env.agent_id, app_id=app.id, module_id=env.worker_id)
    with pytest.raises(sly.NotSupportedError):
        api.task.update_status(task_id, api.task.Status.FINISHED)
    with pytest.raises(sly.NotSupportedError):
        api.task.submit_logs([{"message": "x"}])
    # a file id that is no file of the caller's teams: appyard's NotFoundError, nothing written
    with pytest.raises(NotFoundError) as caught:
        api.task.set_output_archive(task_id, 2**31 - 1, "a.tar")
    assert caught.value.field == "file_id"
    with pytest.raises(InvalidArgumentsError):
        api.task.set_output_archive(task_id, "not/a/path", "a.tar")
    assert api.app.is_ready_for_api_calls(task_id) is False


def test_an_app_reports_in_the_reference_style(env: Env, api: sly.Api) -> None:
    """An app that writes its outputs through appyard.compat: the record shows them as the
    reference's output block, and the fields read back."""
    module_id = env.world.admin.publish(Path(__file__).parent / "apps" / "ref-outputs")["module_id"]
    session = api.app.start(env.agent_id, module_id=module_id, workspace_id=env.world.workspace_id)
    api.app.wait(session.task_id, target_status=api.task.Status.FINISHED)
    info = api.task.get_info_by_id(session.task_id)
    general = info["meta"]["output"]["general"]
    assert general["title"] == "result.txt" and general["download"] is True
    assert general["titleUrl"].endswith("/files/content?path=/compat/result.txt")
    assert api.task.get_field(session.task_id, "data.count") == 3
    assert api.task.get_fields(session.task_id, ["data.items"]) == {"data.items": [1, 2]}

    # the file the app uploaded and named by its id, in the reference's FileInfo
    team_id = env.world.team_id
    uploaded = api.file.get_info_by_path(team_id, "/compat/result.txt")
    assert uploaded is not None and isinstance(uploaded.id, int)
    ref = api.file.get_info_by_id(uploaded.id)
    assert isinstance(ref, FileInfo)
    assert (ref.id, ref.team_id, ref.path, ref.name, ref.sizeb, ref.ext, ref.is_dir) == (
        uploaded.id,
        team_id,
        "/compat/result.txt",
        "result.txt",
        4,
        "txt",
        False,
    )
    assert ref.hash == hashlib.sha256(b"done").hexdigest() and ref.mime == "text/plain"
    assert ref.storage_path == ref.full_storage_url == general["titleUrl"]
    assert api.file.get_info_by_id(2**31 - 1) is None
    assert api.file.get_info_by_id(id=uploaded.id) == ref  # the reference's keyword


def test_file_rename_moves_in_the_team_of_the_environment(
    env: Env, api: sly.Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    team_id = env.world.team_id
    src = tmp_path / "a.txt"
    src.write_text("a")
    uploaded = api.file.upload(team_id, src, "/rename/a.txt")
    for key in ("CONTEXT_TEAMID", "context.teamId", "TEAM_ID"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(sly.NotSupportedError, match=r"api\.file\.move"):
        api.file.rename("/rename/a.txt", "/rename/b.txt")
    monkeypatch.setenv("TEAM_ID", str(team_id))
    assert api.file.rename("/rename/a.txt", "/rename/b.txt") is None
    moved = api.file.get_info_by_id(uploaded.id)
    assert moved is not None and moved.path == "/rename/b.txt" and moved.name == "b.txt"
    assert api.file.get_info_by_path(team_id, "/rename/a.txt") is None
    with pytest.raises(ConflictError):
        api.file.rename("/rename/b.txt", "/rename/b.txt/under")
    # appyard's own move, reached through the same object
    assert api.file.move(team_id, "/rename/b.txt", "/rename/c.txt").id == uploaded.id


def test_renames_and_role_changes(env: Env, api: sly.Api) -> None:
    team_id = env.world.team_id
    ws = api.workspace.create(team_id, "to-rename")
    renamed = api.workspace.update(ws.id, name="renamed", description="about it")
    assert isinstance(renamed, sly.WorkspaceInfo)
    assert (renamed.id, renamed.name, renamed.description) == (ws.id, "renamed", "about it")
    assert api.workspace.get_info_by_id(ws.id) == renamed
    assert api.workspace.get_info_by_id(2**31 - 1) is None
    with pytest.raises(KeyError):
        api.workspace.get_info_by_id(2**31 - 1, raise_error=True)
    with pytest.raises(NotFoundError) as unknown:
        api.task.get_list(2**31 - 1)  # a workspace id: its team is looked up by id
    assert unknown.value.field == "workspace_id"
    assert api.workspace.update(ws.id, description="only this").name == "renamed"
    with pytest.raises(ConflictError):
        api.workspace.update(ws.id, name="main")  # the team has one so named
    with pytest.raises(ValueError, match="have to be specified"):
        api.workspace.update(ws.id)

    team = api.team.create(f"probe-rename-{team_id}")
    again = api.team.update(team.id, name=f"probe-renamed-{team_id}")
    assert isinstance(again, sly.TeamInfo) and again.id == team.id
    assert api.team.get_info_by_id(team.id).name == f"probe-renamed-{team_id}"  # type: ignore[union-attr]
    with pytest.raises(sly.NotSupportedError):
        api.team.update(team.id, description="teams keep none")
    with pytest.raises(ValueError, match="have to be specified"):
        api.team.update(team.id)

    login = f"probe-update-{team_id}"
    user = api.user.create(login, "a-long-password")
    assert api.user.update(user.id) is None
    changed = api.user.update(user.id, password="another-long-password", name="Display Name")
    assert isinstance(changed, sly.UserInfo)
    assert (changed.id, changed.login, changed.name) == (user.id, login, "Display Name")
    assert api.appyard.user.login(login, "another-long-password").token
    with pytest.raises(AuthenticationError):
        api.appyard.user.login(login, "a-long-password")

    api.user.add_to_team(user.id, team_id, 4)
    api.user.change_team_role(user.id, team_id, 2)
    assert api.user.get_team_role(user.id, team_id).role == "developer"  # type: ignore[union-attr]
    with pytest.raises(sly.NotSupportedError):
        api.user.change_team_role(user.id, team_id, 3)
    me = api.user.get_my_info()
    with pytest.raises(ConflictError):
        api.user.change_team_role(me.id, team_id, 4)  # the team's last admin


def test_user_create_and_add_to_team_by_role_id(env: Env, api: sly.Api) -> None:
    login = f"probe-{env.agent_id}"
    user = api.user.create(login, "a-long-password")
    assert isinstance(user, sly.UserInfo) and user.login == login
    assert api.user.add_to_team(user.id, env.world.team_id, 4) == {"userId": user.id}
    assert api.user.get_team_role(user.id, env.world.team_id).role == "viewer"  # type: ignore[union-attr]
    with pytest.raises(sly.NotSupportedError):
        api.user.add_to_team(user.id, env.world.team_id, 3)
    with pytest.raises(sly.NotSupportedError):
        api.user.create("restricted", "a-long-password", is_restricted=True)
    assert api.agent.exists(env.world.team_id, "agent")
    assert api.agent.get_free_name(env.world.team_id, "agent") == "agent_001"
