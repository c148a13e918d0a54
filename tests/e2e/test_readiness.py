"""Readiness as the reference has it, end to end (a real server, agent and serving app).

A serving app stays ``started`` while it serves, so code that waits for ``started`` and lists
sessions by ``started`` finds it; that it is ready for calls is a separate flag on the task
(``ready``), set by the app's ``session.ready()``, read by ``is_ready_for_api_calls`` and
waited for, pushed, by ``wait_until_ready_for_api_calls``. The test app holds its readiness
behind a marker file the test creates (``tests/e2e/apps/serving``).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import appyard as ay
from appyard.errors import ApiError
from tests.e2e.conftest import Env

S = ay.Status
SERVING = Path(__file__).parent / "apps" / "serving"


def _held(env: Env) -> tuple[int, int, Path, Path]:
    """A started session of the serving app, not ready until ``ready`` exists; it exits with
    the code written into ``exit`` if that comes first. Both are in the app's own work folder
    (its cwd: a sandboxed app sees no other). (module id, task id, ready, exit)"""
    module_id = env.world.admin.publish(SERVING)["module_id"]
    session = env.api.app.start(
        agent_id=env.agent_id,
        module_id=module_id,
        workspace_id=env.world.workspace_id,
        params={"ready_marker": "ready-now", "exit_marker": "exit-now"},
    )
    # the documented way: wait until it is started
    assert env.api.app.wait(session.task_id, S.STARTED, 60, 1) == S.STARTED
    work = env.agent.work_dir / "tasks" / str(session.task_id) / "work"
    return module_id, session.task_id, work / "ready-now", work / "exit-now"


def _cli(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appyard.cli", "app", *args],
        env=env.world.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _sessions(env: Env, module_id: int) -> list[int]:
    found = env.api.app.get_sessions(env.world.team_id, module_id, statuses=[S.STARTED])
    return [s.task_id for s in found]


async def _async_readiness(env: Env, task_id: int) -> tuple[bool, bool]:
    token = env.world.admin.http.headers["Authorization"].split()[1]
    async with ay.AsyncApi(env.world.server.url, token) as api:
        return (
            await api.task.is_ready_for_api_calls(task_id),
            await api.app.wait_until_ready_for_api_calls(task_id, 60, 1),
        )


def test_a_serving_app_stays_started_and_says_when_it_is_ready(env: Env) -> None:
    api = env.api
    module_id, tid, ready, _ = _held(env)

    # started, serving its handlers, not ready yet
    assert api.app.get_status(tid) == S.STARTED
    assert _sessions(env, module_id) == [tid]
    assert not api.task.is_ready_for_api_calls(tid)
    assert not api.app.is_ready_for_api_calls(tid)
    info = api.task.get(tid)
    assert not info.ready and info.ready_at is None
    with pytest.raises(ApiError) as refused:
        api.task.send_request(tid, "echo", {})
    assert refused.value.status_code == 409 and refused.value.code == "not_ready"
    assert f"api.app.wait_until_ready_for_api_calls({tid})" in refused.value.message
    # a budget that runs out first: False, as the reference answers (1 attempt of 0.2 s)
    assert api.app.wait_until_ready_for_api_calls(tid, 1, 0.2) is False
    waited = env.world.admin.ok(
        "GET", f"/tasks/{tid}/wait", params={"until": "ready", "timeout": 0}
    )
    assert waited["timed_out"] and not waited["task"]["ready"]

    cli = _cli(env, "wait", str(tid), "--ready", "--timeout", "0.2")
    assert cli.returncode == 124, cli.stderr
    assert f"Task {tid} is not ready for calls after 0.2 s." in cli.stderr
    refused = _cli(env, "wait", str(tid), "--status", "deployed")
    assert refused.returncode == 2 and "--ready" in refused.stderr, refused.stderr

    # a wait in flight is answered once the app says it is ready
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(api.app.wait_until_ready_for_api_calls, tid, 60, 1)
        ready.touch()
        assert waiting.result() is True
    cli = _cli(env, "wait", str(tid), "--ready")
    assert cli.returncode == 0 and f"Task {tid}: started ready" in cli.stdout, cli.stderr
    listed = _cli(env, "sessions", "--status", "started")
    assert listed.returncode == 0 and "ready" in listed.stdout, listed.stdout  # beside started

    # still started (what code that polls for started sees), and ready for calls
    assert api.app.get_status(tid) == S.STARTED
    assert _sessions(env, module_id) == [tid]
    assert api.task.is_ready_for_api_calls(tid) and api.app.is_ready_for_api_calls(tid)
    assert api.task.wait_until_ready_for_api_calls(tid, 1, 1) is True
    info = api.task.get(tid)
    assert info.ready and info.ready_at is not None and info.started_at is not None
    assert info.ready_at >= info.started_at
    assert api.task.send_request(tid, "echo", {"x": 1})["state"] == {"x": 1}
    assert asyncio.run(_async_readiness(env, tid)) == (True, True)
    waited = env.world.admin.ok(
        "GET", f"/tasks/{tid}/wait", params={"until": "ready", "timeout": 0}
    )
    assert not waited["timed_out"] and waited["task"]["ready"]

    # stopped: no longer ready for calls; when it was stays on the task
    assert api.app.stop(tid) == S.TERMINATING
    assert api.task.wait(tid) == S.STOPPED
    info = api.task.get(tid)
    assert not info.ready and info.ready_at is not None
    assert not api.task.is_ready_for_api_calls(tid)
    assert api.app.wait_until_ready_for_api_calls(tid, 60, 1) is False


@pytest.mark.parametrize(("end", "code"), [(S.FINISHED, "0"), (S.ERROR, "3"), (S.STOPPED, None)])
def test_a_session_that_ends_without_being_ready(
    env: Env, end: ay.Status, code: str | None
) -> None:
    """The wait answers False with the end (or the stop), as the reference's answers once its
    attempts are spent: it never raises, an app in error included."""
    api = env.api
    _, tid, _, exit_ = _held(env)
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(api.app.wait_until_ready_for_api_calls, tid, 600, 1)
        if code is None:
            api.app.stop(tid)
        else:  # whole, at once: the app reads it the moment it is there
            exit_.with_name("exit.tmp").write_text(code)
            exit_.with_name("exit.tmp").replace(exit_)
        assert waiting.result() is False
    if end is S.ERROR:
        with pytest.raises(ay.TaskFinishedWithError):
            api.task.wait(tid)
    else:
        assert api.task.wait(tid) == end
    assert api.task.get_status(tid) == end
    assert not api.task.is_ready_for_api_calls(tid)
    assert api.task.get(tid).ready_at is None


def test_readiness_of_a_task_not_found_is_false(env: Env) -> None:
    assert env.api.task.is_ready_for_api_calls(987_654_321) is False
    assert env.api.app.wait_until_ready_for_api_calls(987_654_321, 60, 1) is False
    # the server's wait names the condition it takes beside the statuses
    r = env.world.admin.http.get("/tasks/1/wait", params={"until": "readyy", "timeout": 0})
    assert r.status_code == 422 and "'ready'" in r.json()["error"]["message"]


def test_no_wait_for_deployed(env: Env) -> None:
    """No session becomes ``deployed`` (the reference's plugin status): a wait for it would
    never return before the end, so it is refused at once with what to wait for instead."""
    tid = env.start_worker(lines=1)
    with pytest.raises(ValueError, match="wait_until_ready_for_api_calls"):
        env.api.app.wait(tid, S.DEPLOYED)
    assert env.api.task.wait(tid) == S.FINISHED
