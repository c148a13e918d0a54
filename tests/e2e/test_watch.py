"""Watching a task: its changes are pushed (server-sent events), coalesced, until it ends."""

from __future__ import annotations

from pathlib import Path

import pytest

import appyard as ay
from appyard.schemas.tasks import TaskInfo
from tests.e2e.conftest import Env

S = ay.Status
HELLO = Path(ay.__file__).parent / "ecosystem" / "hello"


def test_watch_follows_progress_and_status_to_the_end(env: Env) -> None:
    module_id = env.api.module.publish(HELLO).module_id
    session = env.api.app.start(
        agent_id=env.agent_id,
        module_id=module_id,
        workspace_id=env.world.workspace_id,
        params={"count": 8, "delay_s": 0.1},
    )
    seen = list(env.api.task.watch(session.task_id))
    assert seen, "the watch yields the task at least once"
    order = [S.QUEUED, S.CONSUMED, S.STARTED, S.FINISHED]
    ranks = [order.index(t.status) for t in seen]
    assert ranks == sorted(ranks), [t.status for t in seen]  # never backwards
    assert seen[-1].status is S.FINISHED
    done = [t.progress.current for t in seen if t.progress is not None]
    assert done == sorted(done) and done[-1] == 8
    assert seen[-1].progress is not None and seen[-1].progress.total == 8
    assert seen[-1].outputs == {"greeting": "Hello, world!"}
    # no two answers alike: only changes are sent
    dumps = [t.model_dump_json() for t in seen]
    assert len(set(dumps)) == len(dumps)


def test_watch_of_an_ended_task_answers_once_and_ends(env: Env) -> None:
    tid = env.start_worker(lines=1)
    env.api.app.wait(tid, target_status=S.FINISHED)
    seen = list(env.api.task.watch(tid))
    assert [t.status for t in seen] == [S.FINISHED]


def test_watch_sees_a_stop_through(env: Env) -> None:
    tid = env.start_worker(ready=True, sleep_s=120)
    statuses = []
    for t in env.api.task.watch(tid):
        statuses.append(t.status)
        if t.ready:
            assert t.status is S.STARTED
            env.api.app.stop(tid)
    assert statuses[-1] is S.STOPPED
    assert S.STARTED in statuses and S.TERMINATING in statuses


def test_wait_watching_sees_each_progress_and_raises_on_error(env: Env) -> None:
    module_id = env.api.module.publish(HELLO).module_id
    session = env.api.app.start(
        agent_id=env.agent_id,
        module_id=module_id,
        workspace_id=env.world.workspace_id,
        params={"count": 5, "delay_s": 0.1},
    )
    seen: list[TaskInfo] = []
    status = env.api.task.wait_watching(session.task_id, S.FINISHED, on_update=seen.append)
    assert status is S.FINISHED
    done = [t.progress.current for t in seen if t.progress is not None]
    assert done == sorted(done) and done[-1] == 5

    failing = env.start_worker(exit_code=3)
    with pytest.raises(ay.TaskFinishedWithError) as caught:
        env.api.task.wait_watching(failing, S.FINISHED)
    assert "bye" in str(caught.value)  # the log's tail comes with the error
