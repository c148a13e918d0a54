"""Agent and server restarts: apps live on, ends are reported, nothing is lost."""

from __future__ import annotations

import threading
from pathlib import Path

import appyard as ay
from tests.e2e.conftest import Env
from tests.support import alive, app_pids, wait_for

S = ay.Status


def test_agent_kill9_then_readopted(env: Env, tmp_path: Path) -> None:
    tid = env.start_worker(sleep_s=4, lines=2)
    pids = app_pids(tid, env.world.server.url)
    env.agent.kill9()
    assert all(alive(p) for p in pids), "the app must survive its agent"
    # a new agent with the same token (and work folder) re-adopts it
    again = env.world.start_agent(env.agent_token, name="agent")
    assert env.api.task.wait(tid) == S.FINISHED
    info = env.api.task.get_info_by_id(tid)
    assert info["exit_code"] == 0 and info["attempt"] == 1
    assert [line.text for line in env.api.task.logs(tid)] == ["line 0", "line 1", "bye"]
    assert again.proc is not None and again.proc.poll() is None


def test_app_ends_while_the_agent_is_down(env: Env, tmp_path: Path) -> None:
    tid = env.start_worker(sleep_s=0.5, exit_code=5)
    pids = app_pids(tid, env.world.server.url)
    env.agent.kill9()
    wait_for(lambda: not any(alive(p) for p in pids), 30, "the app to end")
    env.world.start_agent(env.agent_token, name="agent")
    status = env.api.task.get(tid)
    wait_for(lambda: env.api.task.get(tid).status is S.ERROR, 30, "its end to be reported")
    info = env.api.task.get(tid)
    assert info.exit_code == 5, info
    assert "code 5" in (info.error or "") and status is not None


def test_agent_that_never_comes_back(env: Env) -> None:
    tid = env.start_worker(sleep_s=60)
    env.api.app.wait(tid, target_status=S.STARTED)
    env.agent.kill9()
    # the server's agent TTL is 4 s in the tests
    wait_for(lambda: env.api.task.get(tid).status is S.ERROR, 30, "the task to be marked lost")
    info = env.api.task.get(tid)
    assert info.error is not None and "agent lost" in info.error
    agents = env.api.agent.get_list(env.world.team_id)
    assert [a.status for a in agents if a.id == env.agent_id] == ["offline"]
    # when it does come back, the orphaned app is stopped, not left running
    env.world.start_agent(env.agent_token, name="agent")
    wait_for(env.agent_online, 30, "the agent back online")


def test_server_restart_loses_nothing(env: Env) -> None:
    tid = env.start_worker(sleep_s=3, lines=5)
    env.api.app.wait(tid, target_status=S.STARTED)
    result: dict[str, object] = {}

    def waiter() -> None:
        try:
            result["status"] = env.api.task.wait(tid)
        except Exception as exc:  # the test reads it below
            result["error"] = exc

    thread = threading.Thread(target=waiter)
    thread.start()
    env.world.server.kill()
    env.world.server.start()
    thread.join(60)
    assert result.get("status") == S.FINISHED, result
    assert [line.text for line in env.api.task.logs(tid)] == [f"line {i}" for i in range(5)] + [
        "bye"
    ]
    wait_for(env.agent_online, 30, "the agent to reconnect")


def test_a_readopted_app_stops_when_asked(env: Env) -> None:
    """Stop, the way a user stops any session, reaches an app its new agent re-adopted: it
    ends ``stopped`` with all its processes gone (the new agent did not start it)."""
    tid = env.start_worker(sleep_s=600)
    env.api.app.wait(tid, target_status=S.STARTED)
    pids = app_pids(tid, env.world.server.url)
    env.agent.kill9()
    again = env.world.start_agent(env.agent_token, name="agent")
    wait_for(env.agent_online, 30, "the agent back online")
    env.api.app.stop(tid)
    assert env.api.app.wait(tid, target_status=S.STOPPED) is S.STOPPED, again.log_text
    wait_for(lambda: not any(alive(p) for p in pids), 30, "the app's processes to end")
