"""Sessions end to end: a real server, a real agent, real app processes and signals."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import appyard as ay
from appyard.errors import TaskFinishedWithError, WaitingTimeExceeded
from tests.e2e.conftest import Env, online_agent
from tests.support import alive, app_pids

S = ay.Status


def test_wait_reaches_the_target(env: Env) -> None:
    tid = env.start_worker(lines=3)
    assert env.api.app.wait(tid, target_status=S.FINISHED) == S.FINISHED
    info = env.api.task.get_info_by_id(tid)
    assert info["status"] == "finished" and info["exit_code"] == 0
    assert info["started_at"] and info["ended_at"] and info["agent_id"] == env.agent_id
    lines = [line.text for line in env.api.task.logs(tid)]
    assert lines == ["line 0", "line 1", "line 2", "bye"]


def test_wait_without_a_target_waits_for_the_end(env: Env) -> None:
    tid = env.start_worker(sleep_s=0.5)
    assert env.api.task.wait(tid) == S.FINISHED


def test_wait_times_out_with_the_reference_message(env: Env) -> None:
    tid = env.start_worker(sleep_s=60)
    with pytest.raises(WaitingTimeExceeded) as caught:
        env.api.app.wait(tid, target_status=S.FINISHED, attempts=2, attempt_delay_sec=0.5)
    assert str(caught.value) == (
        "Waiting time exceeded: total waiting time 1 seconds, i.e. 2 attempts for 0.5 seconds each"
    )
    assert env.api.app.stop(tid) == S.TERMINATING
    assert env.api.task.wait(tid) == S.STOPPED


def test_wait_raises_on_error_with_the_log_tail(env: Env) -> None:
    tid = env.start_worker(exit_code=3, lines=2)
    with pytest.raises(TaskFinishedWithError) as caught:
        env.api.app.wait(tid, target_status=S.FINISHED)
    message = str(caught.value)
    assert message.startswith("Task finished with status error")
    assert "exited with code 3" in message and "line 1" in message and "bye" in message
    assert env.api.app.get_status(tid) == S.ERROR


def test_wait_returns_stopped_when_stopped(env: Env) -> None:
    tid = env.start_worker(sleep_s=60)
    env.api.app.wait(tid, target_status=S.STARTED)
    env.api.app.stop(tid)
    assert env.api.app.wait(tid, target_status=S.FINISHED) == S.STOPPED


def test_stop_of_a_queued_task(env: Env) -> None:
    """No agent free: the task waits queued (not an error); a stop ends it at once."""
    busy = env.start_worker(sleep_s=60)
    busy2 = env.start_worker(sleep_s=60)  # the agent has 2 slots: now it is full
    env.api.app.wait(busy, target_status=S.STARTED)
    env.api.app.wait(busy2, target_status=S.STARTED)
    queued = env.start_worker()
    assert env.api.app.get_status(queued) == S.QUEUED
    assert env.api.app.stop(queued) == S.STOPPED
    assert env.api.task.get_info_by_id(queued)["started_at"] is None
    for tid in (busy, busy2):
        env.api.app.stop(tid)
        assert env.api.task.wait(tid) == S.STOPPED


def test_stop_of_a_running_app_leaves_nothing(env: Env, tmp_path: Path) -> None:
    tid = env.start_worker(sleep_s=60, spawn_child=False)
    pids = app_pids(tid, env.world.server.url)
    assert all(alive(p) for p in pids)
    # its process runs before its agent has reported it started: a stop then stops a task
    # that is still "consumed"; here it is to stop a running one
    assert env.api.task.wait(tid, S.STARTED) == S.STARTED
    assert env.api.app.stop(tid) == S.TERMINATING
    assert env.api.task.wait(tid) == S.STOPPED
    assert not any(alive(p) for p in pids)


def test_stop_of_an_app_that_ignores_sigterm(env: Env, tmp_path: Path) -> None:
    """SIGTERM ignored by the app and its child: both are killed after the grace period."""
    tid = env.start_worker(sleep_s=60, ignore_sigterm=True, spawn_child=True)
    pids = app_pids(tid, env.world.server.url, mentioning="signal.SIG_IGN); time.sleep(600)")
    assert len(pids) >= 2 and all(alive(p) for p in pids)
    t0 = time.monotonic()
    env.api.app.stop(tid)
    assert env.api.task.wait(tid) == S.STOPPED
    elapsed = time.monotonic() - t0
    assert elapsed >= 1.4, f"stopped after {elapsed:.2f} s, before the 1.5 s grace period"
    assert not any(alive(p) for p in pids)


def test_progress_and_outputs_reach_the_task(env: Env) -> None:
    hello = Path(ay.__file__).parent / "ecosystem" / "hello"
    module_id = env.world.admin.publish(hello)["module_id"]
    info = env.api.app.get_ecosystem_module_info(module_id)
    params = info.get_arguments()
    params.update(name="tests", count=3, delay_s=0.01)
    session = env.api.app.start(
        agent_id=env.agent_id,
        module_id=module_id,
        workspace_id=env.world.workspace_id,
        params=params,
    )
    assert env.api.app.wait(session.task_id, target_status=S.FINISHED) == S.FINISHED
    task = env.api.task.get_info_by_id(session.task_id)
    assert task["outputs"] == {"greeting": "Hello, tests!"}
    assert task["progress"]["current"] == 3 and task["progress"]["total"] == 3


def test_follow_logs_streams_until_the_end(env: Env) -> None:
    tid = env.start_worker(lines=50, sleep_s=0.3)
    texts = [line.text for line in env.api.task.follow_logs(tid)]
    assert texts == [f"line {i}" for i in range(50)] + ["bye"]
    assert env.api.app.get_status(tid) == S.FINISHED


def test_any_agent_and_slots(env: Env) -> None:
    """agent_id=None runs on any online agent of the team with a free slot."""
    tids = [env.start_worker(agent_id=None, sleep_s=0.3) for _ in range(3)]
    for tid in tids:
        assert env.api.task.wait(tid) == S.FINISHED
        assert env.api.task.get_info_by_id(tid)["agent_id"] == env.agent_id


def test_a_long_lived_app_reports_ready(env: Env) -> None:
    tid = env.start_worker(ready=True, sleep_s=60)
    assert env.api.app.wait_until_ready_for_api_calls(tid, 60, 1)
    assert env.api.app.get_status(tid) == S.STARTED  # a serving app stays started
    env.api.app.stop(tid)
    assert env.api.task.wait(tid) == S.STOPPED


def test_get_sessions_filters_on_the_server(env: Env) -> None:
    done = env.start_worker()
    env.api.task.wait(done)
    failed = env.start_worker(exit_code=1)
    with pytest.raises(TaskFinishedWithError):
        env.api.task.wait(failed)
    finished = env.api.app.get_sessions(
        env.world.team_id, module_id=env.worker_id, statuses=[S.FINISHED]
    )
    assert [s.task_id for s in finished] == [done]
    assert finished[0].details["status"] == "finished"
    both = env.api.app.get_sessions(env.world.team_id, module_id=env.worker_id)
    assert [s.task_id for s in both] == [failed, done]  # newest first


def test_two_agents_racing_run_each_task_once(env: Env, tmp_path: Path) -> None:
    second_id, _, _ = online_agent(env.world, "second", slots=2)
    # each run appends its task id to runs.txt in its own task folder (a sandboxed app writes
    # no other), on whichever agent ran it
    tids = [env.start_worker(agent_id=None, record="runs.txt", lines=1) for _ in range(12)]
    for tid in tids:
        assert env.api.task.wait(tid) == S.FINISHED
    runs = [
        r
        for p in env.world.tmp.glob("agent-*/tasks/*/work/runs.txt")
        for r in p.read_text().split()
    ]
    assert sorted(map(int, runs)) == sorted(tids), "each task ran exactly once"
    used = {env.api.task.get_info_by_id(t)["agent_id"] for t in tids}
    assert used <= {env.agent_id, second_id}


def test_a_stale_folder_of_the_same_task_id_is_moved_aside(env: Env) -> None:
    """After a database reset ids start again: an old folder must not leak into a new task."""
    first = env.start_worker(lines=1)
    env.api.task.wait(first)
    next_id = first + 1  # this module's server hands out ids in order; nobody else starts one
    stale = env.agent.work_dir / "tasks" / str(next_id)
    stale.mkdir(parents=True)
    (stale / "log.jsonl").write_text('{"t": "2020-01-01T00:00:00Z", "text": "old life"}\n')
    (stale / "exit.json").write_text('{"exit_code": 9}')
    tid = env.start_worker(lines=1)
    assert tid == next_id
    assert env.api.task.wait(tid) == S.FINISHED
    assert [line.text for line in env.api.task.logs(tid)] == ["line 0", "bye"]
    assert list((env.agent.work_dir / "tasks").glob(f"{next_id}.old-*"))
