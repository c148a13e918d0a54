"""The SDK against a real server (subprocess), with a scripted agent at the HTTP seam."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import appyard as ay
from appyard.domain.status import Status
from appyard.errors import NotFoundError
from appyard.sdk import Api, AppSession, AsyncApi
from tests.sdk.helpers import FakeAgent, Tenant
from tests.support import ServerProc, wait_for

REPO = Path(__file__).resolve().parents[2]


def target_project(tenant: Tenant) -> int:
    """The tenant's images project the sessions start on (a start needs a real one)."""
    found = tenant.api.project.get_info_by_name(tenant.workspace_id, "target")
    return (found or tenant.api.project.create(tenant.workspace_id, "target")).id


def start(tenant: Tenant, **kwargs: Any) -> int:
    project_id = target_project(tenant)
    session = tenant.api.app.start(
        agent_id=tenant.agent_id,
        module_id=tenant.module_id,
        workspace_id=tenant.workspace_id,
        params={
            "pascalContourThickness": 3,
            "trainSplitCoef": 0.8,
            "projectId": project_id,
            **kwargs,
        },
    )
    return session.task_id


class Waiter(threading.Thread):
    """``api.task.wait`` in a thread, recording when it returned and what."""

    def __init__(self, fn: Any) -> None:
        super().__init__(daemon=True)
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None
        self.returned_at = 0.0
        self.start()

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:
            self.error = exc
        self.returned_at = time.monotonic()


def test_the_tutorial_runs(server: ServerProc, tenant: Tenant, tmp_path: Path) -> None:
    project_id = target_project(tenant)

    def play_agent() -> None:
        fake = FakeAgent(server.url, tenant.agent_token)
        task = fake.take(30)
        assert task.state["trainSplitCoef"] == 0.7 and task.state["projectId"] == project_id
        fake.started(task.task_id)
        fake.log(task.task_id, "exporting", "done")
        fake.exited(task.task_id, 0)
        fake.close()

    agent_thread = threading.Thread(target=play_agent, daemon=True)
    agent_thread.start()
    env = {
        **os.environ,
        "HOME": str(tmp_path),  # no ~/appyard.env of the developer's
        "SERVER_ADDRESS": server.url.removeprefix("http://"),
        "API_TOKEN": server.admin_token,
        "TEAM_ID": str(tenant.team_id),
        "WORKSPACE_ID": str(tenant.workspace_id),
        "AGENT_ID": str(tenant.agent_id),
        "PROJECT_ID": str(project_id),
    }
    out = subprocess.run(
        [sys.executable, str(REPO / "examples" / "start_stop_app.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    agent_thread.join(10)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "Start app:  Export to Pascal VOC"
    assert "images_project : Context menu of images project. Target value is project id." in lines
    task_line = next(line for line in lines if line.startswith("App is started, task_id =  "))
    task_id = int(task_line.split()[-1])
    assert f"SessionInfo(task_id={task_id}, user_id=1, module_id={tenant.module_id}" in out.stdout
    assert "details={})" in out.stdout
    assert "Task status:  finished" in lines
    assert lines[-1].startswith(f"SessionInfo(task_id={task_id}, ")
    assert "'status': 'finished'" in lines[-1]


def test_wait_is_pushed(tenant: Tenant, agent: FakeAgent) -> None:
    task_id = start(tenant)
    # a budget shorter than the server's 2 s long-poll: only an answer pushed on the change
    # (not one at the end of a poll) can meet it
    waiter = Waiter(
        lambda: tenant.api.task.wait(
            task_id, Status.STARTED, wait_attempts=1, wait_attempt_timeout_sec=1.5
        )
    )
    assignment = agent.take()
    agent.started(assignment.task_id)
    waiter.join(10)
    assert waiter.error is None and waiter.result is Status.STARTED
    agent.exited(task_id, 0)
    assert tenant.api.app.wait(task_id, Status.FINISHED) is Status.FINISHED
    assert tenant.api.task.wait(task_id) is Status.FINISHED  # no target: works too


def test_error_carries_its_text_and_log_tail(tenant: Tenant, agent: FakeAgent) -> None:
    task_id = start(tenant)
    agent.take()
    agent.started(task_id)
    agent.log(task_id, "Traceback (most recent call last):", "ZeroDivisionError: boom")
    agent.exited(task_id, 1)
    with pytest.raises(ay.TaskFinishedWithError) as info:
        tenant.api.app.wait(task_id, Status.FINISHED)
    message = str(info.value)
    assert message.startswith("Task finished with status error")
    assert "exited with code 1" in message
    assert "ZeroDivisionError: boom" in message
    assert info.value.task_id == task_id


def test_wait_runs_out_of_budget(tenant: Tenant) -> None:
    task_id = start(tenant)
    began = time.monotonic()
    with pytest.raises(ay.WaitingTimeExceeded) as info:
        tenant.api.app.wait(task_id, Status.FINISHED, attempts=3, attempt_delay_sec=0.2)
    assert time.monotonic() - began > 0.55, "it gave up before its budget ran out"
    assert str(info.value) == (
        "Waiting time exceeded: total waiting time 0 seconds, i.e. 3 attempts for 0.2 seconds each"
    )
    assert tenant.api.app.stop(task_id) is Status.STOPPED  # never consumed: straight to stopped


def test_stop_of_a_running_app(tenant: Tenant, agent: FakeAgent) -> None:
    task_id = start(tenant)
    agent.take()
    agent.started(task_id)
    assert tenant.api.app.stop(task_id) is Status.TERMINATING
    assert tenant.api.app.get_status(task_id) is Status.TERMINATING
    waiter = Waiter(lambda: tenant.api.task.wait(task_id))
    waiter.join(0.2)  # it must not return while the task is terminating
    assert waiter.is_alive()  # terminating keeps waiting
    agent.exited(task_id, -15)
    waiter.join(10)
    assert waiter.result is Status.STOPPED


def test_unknown_task(tenant: Tenant) -> None:
    with pytest.raises(NotFoundError):
        tenant.api.app.get_status(10**9)


def test_sessions_newest_first_filtered_and_paged(tenant: Tenant, agent: FakeAgent) -> None:
    ids = [start(tenant) for _ in range(3)]
    for _ in ids:
        agent.take()
    agent.started(ids[0])
    agent.exited(ids[0], 0)
    sessions = tenant.api.app.get_sessions(tenant.team_id, tenant.module_id)
    assert [s.task_id for s in sessions] == ids[::-1]
    assert all(s.details["id"] == s.task_id for s in sessions)
    finished = tenant.api.app.get_sessions(
        tenant.team_id, tenant.module_id, statuses=[Status.FINISHED]
    )
    assert [s.task_id for s in finished] == [ids[0]]
    paged = list(tenant.api.task.iter_list(tenant.team_id, tenant.module_id, page_size=2))
    assert [t.id for t in paged] == ids[::-1]


def test_follow_logs_streams_until_the_end(tenant: Tenant, agent: FakeAgent) -> None:
    task_id = start(tenant)
    agent.take()
    agent.started(task_id)
    agent.log(task_id, "one", "two")
    got: list[str] = []
    reader = Waiter(
        lambda: [got.append(line.text) for line in tenant.api.task.follow_logs(task_id)]
    )
    wait_for(lambda: len(got) == 2, 10, "the first lines")
    agent.log(task_id, "three", level="error")
    wait_for(lambda: len(got) == 3, 10, "a live line")
    agent.exited(task_id, 0)
    reader.join(10)
    assert not reader.is_alive() and reader.error is None
    assert got == ["one", "two", "three"]
    lines = tenant.api.task.logs(task_id)
    assert [(line.seq, line.text) for line in lines] == [(1, "one"), (2, "two"), (3, "three")]
    assert [line.text for line in tenant.api.task.follow_logs(task_id, after=2)] == ["three"]


def test_app_session_inside_an_app(
    server: ServerProc, tenant: Tenant, agent: FakeAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    project_id = target_project(tenant)
    task_id = start(tenant)
    assignment = agent.take()
    agent.started(task_id)
    monkeypatch.setenv("TASK_ID", str(task_id))
    monkeypatch.setenv("SERVER_ADDRESS", server.url)
    monkeypatch.setenv("API_TOKEN", assignment.token)
    monkeypatch.setenv("APP_PORT", "8123")
    monkeypatch.setenv("MODAL_STATE", json.dumps(assignment.state))
    session = AppSession.from_env()
    assert session.task_id == task_id and session.port == 8123
    assert session.target == ("images_project", project_id)
    assert session.state["pascalContourThickness"] == 3

    from pydantic import BaseModel

    class Options(BaseModel):
        pascalContourThickness: int
        trainSplitCoef: float

    assert session.state_as(Options).trainSplitCoef == 0.8

    for i in range(1, 301):  # a tight loop: the throttle (tests/sdk/test_sdk_rules.py) sends
        session.progress(i, 1000, "working")  # at most 10 a second, and always the last
    session.flush()
    progress = tenant.api.task.get(task_id).progress
    assert progress is not None and (progress.current, progress.total) == (300, 1000)

    for _ in session.track(range(4), message="tracking"):
        pass
    progress = tenant.api.task.get(task_id).progress
    assert progress is not None
    assert (progress.current, progress.total, progress.message) == (4, 4, "tracking")

    session.set_output("archive", "/exports/1.tar")
    session.set_outputs({"images": 10})
    assert tenant.api.task.get(task_id).outputs == {"archive": "/exports/1.tar", "images": 10}
    assert not tenant.api.task.is_ready_for_api_calls(task_id)
    session.ready("http://127.0.0.1:8123/")
    session.ready("http://127.0.0.1:8123/")  # said again: the same answer
    assert tenant.api.app.get_status(task_id) is Status.STARTED  # a serving app stays started
    assert tenant.api.task.is_ready_for_api_calls(task_id)
    assert tenant.api.app.wait_until_ready_for_api_calls(task_id, 1, 1)
    session.api.close()


def test_async_api(tenant: Tenant, agent: FakeAgent, server: ServerProc) -> None:
    dataset_id = tenant.api.dataset.create(target_project(tenant), "ds").id

    async def main() -> None:
        async with AsyncApi(server.url, server.admin_token) as api:
            module_id = await api.app.get_ecosystem_module_id("appyard/export-to-pascal-voc")
            info = await api.app.get_ecosystem_module_info(module_id)
            session = await api.app.start(
                agent_id=tenant.agent_id,
                module_id=module_id,
                workspace_id=tenant.workspace_id,
                params=info.get_arguments(images_dataset=dataset_id),
            )
            waiting = asyncio.create_task(api.app.wait(session.task_id, Status.STARTED))
            await asyncio.to_thread(agent.take)
            await asyncio.to_thread(agent.started, session.task_id)
            assert await asyncio.wait_for(waiting, 10) is Status.STARTED
            assert await api.app.stop(session.task_id) is Status.TERMINATING
            await asyncio.to_thread(agent.exited, session.task_id, 0)
            assert await api.task.wait(session.task_id) is Status.STOPPED
            assert await api.app.get_status(session.task_id) is Status.STOPPED
            sessions = await api.app.get_sessions(tenant.team_id, module_id)
            assert sessions[0].task_id == session.task_id

    asyncio.run(main())


def test_wait_rides_out_a_server_restart(server: ServerProc, tenant: Tenant) -> None:
    task_id = start(tenant)
    api = Api(server.url, server.admin_token)
    waiter = Waiter(lambda: api.task.wait(task_id, Status.FINISHED))
    waiter.join(0.3)  # parked in its long-poll (it must not return)
    server.stop()
    waiter.join(1.0)  # reconnecting with backoff meanwhile: a dead server must not end it
    assert waiter.is_alive()
    server.start()
    fake = FakeAgent(server.url, tenant.agent_token)
    fake.take()
    fake.started(task_id)
    fake.exited(task_id, 0)
    waiter.join(15)
    assert waiter.error is None, waiter.error
    assert waiter.result is Status.FINISHED
    fake.close()
    api.close()
