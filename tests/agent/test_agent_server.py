"""The agent against a real server (SQLite and PostgreSQL): what is particular to the agent.

The session life cycle as a user sees it (wait, stop, re-adoption, server restart) is in
tests/e2e; these look at the agent's own duties: the app's environment, log volume and
order, venvs, start failures, exit with or without the apps, and resuming its log offset.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from appyard.agent.exit_codes import RET_CONFIG
from appyard.agent.state import TaskDir
from tests.agent.test_runner_and_cache import make_wheel
from tests.support import APPS, AgentProc, World, alive, app_pids, wait_for

HERE = Path(__file__).parent
ENVDUMP = HERE / "apps" / "envdump"
TERMINAL = "finished,error,stopped"


def _online(world: World, agent_id: int) -> bool:
    agents = world.admin.ok("GET", f"/teams/{world.team_id}/agents")
    return any(a["id"] == agent_id and a["status"] == "online" for a in agents)


def _agent(world: World, name: str = "agent", **kw: Any) -> tuple[int, str, AgentProc]:
    agent_id, token = world.new_agent_token(name)
    proc = world.start_agent(token, name=name, **kw)
    wait_for(lambda: _online(world, agent_id), 30, f"agent online:\n{proc.log_text}")
    return agent_id, token, proc


def _start(world: World, module_id: int, agent_id: int, **state: Any) -> int:
    body = {
        "workspace_id": world.workspace_id,
        "module_id": module_id,
        "agent_id": agent_id,
        "params": {"state": state},
    }
    return int(world.admin.ok("POST", "/tasks", json=body)["task_id"])


def _wait(world: World, task_id: int, until: str = TERMINAL, timeout: float = 60) -> dict[str, Any]:
    def reached() -> Any:
        r = world.admin.ok("GET", f"/tasks/{task_id}/wait", params={"until": until, "timeout": 5})
        return None if r["timed_out"] else r["task"]

    return wait_for(reached, timeout, f"task {task_id} to reach {until}")


def _logs(world: World, task_id: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after = 0
    while True:
        page = world.admin.ok(
            "GET", f"/tasks/{task_id}/logs", params={"after": after, "limit": 1000}
        )
        out += page["items"]
        if not page["items"]:
            return out
        after = page["next_seq"]


def test_app_env_and_a_burst_of_lines(world: World) -> None:
    agent_id, _, agent = _agent(world)
    module_id = world.admin.publish(ENVDUMP)["module_id"]
    project_id = world.admin.ok(
        "POST", "/projects", json={"workspace_id": world.workspace_id, "name": "env"}
    )["id"]
    tid = _start(world, module_id, agent_id, lines=3000, projectId=project_id)
    task = _wait(world, tid)
    assert task["status"] == "finished", task
    lines = _logs(world, tid)
    info = json.loads(lines[0]["text"])
    assert info["TASK_ID"] == str(tid) and info["AGENT_ID"] == str(agent_id)
    assert info["TEAM_ID"] == str(world.team_id)
    assert info["WORKSPACE_ID"] == str(world.workspace_id)
    assert info["SERVER_ADDRESS"] == world.server.url and info["has_token"]
    assert info["PROJECT_ID"] == str(project_id)
    assert info["modal.state.projectId"] == str(project_id)
    assert info["context.teamId"] == str(world.team_id)
    assert info["APP_NAME"] == "Env dump" and info["PYTHONUNBUFFERED"] == "1"
    assert int(info["APP_PORT"]) > 0
    assert info["python"] == sys.executable  # the agent's own interpreter, not a PATH shim
    work = agent.work_dir / "tasks" / str(tid) / "work"
    assert Path(info["cwd"]) == work
    assert [x["text"] for x in lines[1:]] == [f"n {i}" for i in range(3000)]
    state = json.loads((work.parent / "state.json").read_text())
    assert state["reported"] and state["log_offset"] == (work.parent / "log.jsonl").stat().st_size


def test_requirements_get_a_venv(world: World, tmp_path: Path) -> None:
    agent_id, _, _ = _agent(world)
    wheel = make_wheel(tmp_path, "agenttinypkg", "2.5")
    module_id = world.admin.publish(ENVDUMP, requirements=[str(wheel)])["module_id"]
    tid = _start(world, module_id, agent_id, **{"import": "agenttinypkg"})
    task = _wait(world, tid)
    assert task["status"] == "finished", task
    info = json.loads(_logs(world, tid)[0]["text"])
    assert info["imported"] == "2.5" and info["python"] != sys.executable


def test_stop_while_preparing_never_runs_the_app(world: World, tmp_path: Path) -> None:
    agent_id, _, agent = _agent(world)
    wheel = make_wheel(tmp_path, "slowtinypkg", "1.0")  # a venv to build: time to stop it
    module_id = world.admin.publish(ENVDUMP, requirements=[str(wheel)])["module_id"]
    tid = _start(world, module_id, agent_id)
    _wait(world, tid, until="consumed")
    assert world.admin.ok("POST", f"/tasks/{tid}/stop")["status"] == "stopped"
    td = TaskDir(agent.work_dir / "tasks" / str(tid), tid)
    wait_for(
        # (the stop may come before the agent has made the task's folder: not there yet)
        lambda: td.state_file.exists() and json.loads(td.state_file.read_text()).get("reported"),
        60,
        "the agent to drop it",
    )
    assert not td.pids_file.exists()  # no app process was ever started
    task = world.admin.ok("GET", f"/tasks/{tid}")
    assert task["status"] == "stopped" and task["started_at"] is None
    assert "stopped before the app started" in agent.log_text


def test_a_program_that_cannot_start_fails_the_task(world: World) -> None:
    agent_id, _, _ = _agent(world)
    module_id = world.admin.publish(ENVDUMP, entrypoint="/no/such/program --x")["module_id"]
    tid = _start(world, module_id, agent_id)
    task = _wait(world, tid)
    assert task["status"] == "error" and "cannot execute /no/such/program" in task["error"]
    assert task["started_at"] is None
    bad_req = ["/no/such/pkg-1.0-py3-none-any.whl"]
    module_id = world.admin.publish(ENVDUMP, requirements=bad_req)["module_id"]
    task = _wait(world, _start(world, module_id, agent_id))
    assert task["status"] == "error" and "install the requirements" in task["error"], task


def test_sigterm_leaves_apps_running_for_the_next_agent(world: World, tmp_path: Path) -> None:
    agent_id, token, agent = _agent(world)
    worker = world.admin.publish(APPS / "worker")["module_id"]
    tid = _start(world, worker, agent_id, sleep_s=3, lines=2)
    _wait(world, tid, until="started")
    pids = app_pids(tid, world.server.url)
    assert agent.proc is not None
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.proc.wait(15) == 0
    assert all(alive(p) for p in pids)
    assert world.admin.ok("GET", f"/tasks/{tid}")["status"] == "started"
    again = world.start_agent(token)
    task = _wait(world, tid)
    assert task["status"] == "finished" and task["exit_code"] == 0
    assert [x["text"] for x in _logs(world, tid)] == ["line 0", "line 1", "bye"]
    assert "re-adopted" in again.log_text


def test_stop_apps_on_exit(world: World, tmp_path: Path) -> None:
    agent_id, _, agent = _agent(world, extra_args=["--stop-apps-on-exit"])
    worker = world.admin.publish(APPS / "worker")["module_id"]
    tid = _start(world, worker, agent_id, sleep_s=60, ignore_sigterm=True)
    # its lines come after it ignores SIGTERM
    wait_for(lambda: _logs(world, tid), 30, "the app's first line")
    pids = app_pids(tid, world.server.url)
    assert agent.proc is not None
    agent.proc.send_signal(signal.SIGINT)  # Ctrl-C of `appyard up`
    assert agent.proc.wait(30) == 0
    assert not any(alive(p) for p in pids)
    task = world.admin.ok("GET", f"/tasks/{tid}")
    # the agent stopped it by itself (killed by SIGKILL after the grace period) and said so:
    # the task ends stopped, as if the stop had been asked through the API, before it exits
    assert task["status"] == "stopped" and task["exit_code"] == -signal.SIGKILL, task
    assert task["terminating_at"] is not None and task["error"] is None


def test_log_offset_not_written_down_is_resumed(world: World, tmp_path: Path) -> None:
    """An ack the agent did not persist before it died: the server says where to go on."""
    agent_id, token, agent = _agent(world)
    worker = world.admin.publish(APPS / "worker")["module_id"]
    tid = _start(world, worker, agent_id, lines=20, sleep_s=2)
    td = TaskDir(agent.work_dir / "tasks" / str(tid), tid)
    wait_for(lambda: len(_logs(world, tid)) == 20, 30, "the first lines to reach the server")
    agent.kill9()
    state = json.loads(td.state_file.read_text())
    assert state["log_offset"] > 0
    state["log_offset"] = 0
    td.state_file.write_text(json.dumps(state))
    world.start_agent(token)
    task = _wait(world, tid)
    assert task["status"] == "finished"
    assert [x["text"] for x in _logs(world, tid)] == [f"line {i}" for i in range(20)] + ["bye"]


def test_log_offset_not_written_down_is_resumed_after_the_end(world: World, tmp_path: Path) -> None:
    """The same, the app having ended while no agent ran: the end report carries the log's
    last batch, which the server refuses (it has more); the two then go apart, as ever."""
    agent_id, token, agent = _agent(world)
    worker = world.admin.publish(APPS / "worker")["module_id"]
    tid = _start(world, worker, agent_id, lines=20, sleep_s=1)
    td = TaskDir(agent.work_dir / "tasks" / str(tid), tid)
    wait_for(lambda: len(_logs(world, tid)) == 20, 30, "the first lines to reach the server")
    agent.kill9()
    wait_for(td.exit_file.exists, 30, "the app to end while no agent runs")
    state = json.loads(td.state_file.read_text())
    state["log_offset"] = 0
    td.state_file.write_text(json.dumps(state))
    world.start_agent(token)
    task = _wait(world, tid)
    assert task["status"] == "finished"
    assert [x["text"] for x in _logs(world, tid)] == [f"line {i}" for i in range(20)] + ["bye"]


def test_default_work_dir_is_found_again_and_locked(world: World, tmp_path: Path) -> None:
    agent_id, token = world.new_agent_token("homeless")
    home = tmp_path / "home"
    env = {**os.environ, "APPYARD_HOME": str(home)}
    cmd = [sys.executable, "-m", "appyard.agent", "--server", world.server.url, "--token", token]
    runs = iter(range(1, 10))

    def run() -> tuple[subprocess.Popen[bytes], Path]:
        log = tmp_path / f"run{next(runs)}.log"
        with open(log, "wb") as f:
            return subprocess.Popen(cmd, env=env, stderr=f), log

    def online(log: Path) -> bool:
        return f"agent {agent_id} of team" in log.read_text()

    first, log1 = run()
    try:
        wait_for(lambda: online(log1), 30, "the agent online")
        folder = home / f"agent-{agent_id}"
        ident = json.loads((folder / "agent.json").read_text())
        assert ident["agent_id"] == agent_id and token not in json.dumps(ident)
        second, log2 = run()  # same token: finds the same folder, which is taken
        assert second.wait(30) == RET_CONFIG
        assert "another agent" in log2.read_text()
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(15) == 0
    third, log3 = run()
    try:
        wait_for(lambda: online(log3), 30, "the agent online again")
        # one work folder (beside the sandboxes' /etc that the home's agents share)
        folders = sorted(p.name for p in home.iterdir() if p.name != "sandbox")
        assert folders == [f"agent-{agent_id}"]
    finally:
        third.send_signal(signal.SIGTERM)
        assert third.wait(15) == 0


def test_bad_token_exits_with_a_message(world: World) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "appyard.agent",
            "--server",
            world.server.url,
            "--token",
            "nope",
            "--work-dir",
            "/tmp/appyard-agent-bad-token-test",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 3 and "refused" in r.stderr


@pytest.fixture(autouse=True)
def _no_stray_agents(world: World) -> Any:
    yield
    for a in world.agents:
        a.stop()
