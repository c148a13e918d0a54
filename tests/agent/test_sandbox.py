"""Apps run sandboxed (bubblewrap): what an app can see and reach, and what it leaves behind.

A real server and agent, a real app (``apps/probe``) that tries what a hostile app would:
read the agent's and ``up``'s secrets, another task's folder, the server's data; start a
daemon that outlives it; connect out when its manifest says ``network: false``.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.agent.test_agent_server import _agent, _logs, _start, _wait
from tests.support import World, processes_mentioning, wait_for

PROBE = Path(__file__).parent / "apps" / "probe"


@pytest.fixture(autouse=True)
def _sandbox_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every agent of this file runs as an agent does by default (sandbox on)."""
    monkeypatch.delenv("APPYARD_AGENT_SANDBOX", raising=False)


def _said(world: World, task_id: int) -> list[dict[str, Any]]:
    """The probe's JSON lines."""
    out = []
    for line in _logs(world, task_id):
        try:
            out.append(json.loads(line["text"]))
        except ValueError:
            continue
    return out


def _try_paths(
    world: World, module_id: int, agent_id: int, paths: list[str]
) -> tuple[int, list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Run the probe on ``paths`` to its end: its task id, its lines, and its try of each path."""
    tid = _start(world, module_id, agent_id, paths=paths, output=True)
    task = _wait(world, tid)
    assert task["status"] == "finished", task
    said = _said(world, tid)
    seen = {s["path"]: s for s in said if "path" in s}
    assert set(seen) == set(paths)
    return tid, said, seen


def _isolation(world: World, agent_id: int) -> Any:
    agents = world.admin.ok("GET", f"/teams/{world.team_id}/agents")
    return next(a["isolation"] for a in agents if a["id"] == agent_id)


def test_an_app_reads_nothing_of_the_agent_the_server_or_other_tasks(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the agent's HOME as `appyard up` leaves it: admin token, env file, up.json
    home = tmp_path / "home"
    (home / ".appyard").mkdir(parents=True)
    secrets = {
        home / ".appyard" / "admin-token": "admin-secret",
        home / ".appyard" / "up.json": '{"agent_token": "agent-secret"}',
        home / "appyard.env": "API_TOKEN=env-secret",
    }
    for path, text in secrets.items():
        path.write_text(text)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("APPYARD_HOME", str(home / ".appyard"))
    agent_id, _, agent = _agent(world)
    assert _isolation(world, agent_id) == "sandboxed"
    module_id = world.admin.publish(PROBE)["module_id"]

    # another task, still running, with a file in its folder
    other = _start(world, module_id, agent_id, sleep_s=60)
    _wait(world, other, until="started")
    other_work = agent.work_dir / "tasks" / str(other) / "work"
    wait_for(other_work.is_dir, 15, "the other task's folder")
    (other_work / "result.txt").write_text("other-secret")

    paths = [
        *map(str, secrets),
        str(home),
        str(other_work / "result.txt"),
        str(other_work),
        str(agent.work_dir / "identity.json"),
        str(agent.work_dir / "tasks"),
        str(world.server.home),
        "/proc/1/environ",
    ]
    tid, said, seen = _try_paths(world, module_id, agent_id, paths)
    # of the agent's tasks folder, only the way to its own
    assert seen.pop(str(agent.work_dir / "tasks")) == {
        "path": str(agent.work_dir / "tasks"),
        "seen": [str(tid)],
    }
    leaked = {p: s for p, s in seen.items() if p != "/proc/1/environ" and "error" not in s}
    assert leaked == {}, leaked
    # /proc is the sandbox's own: its pid 1 is bubblewrap's, with the app's environment at most
    proc1 = seen["/proc/1/environ"]
    assert "secret" not in json.dumps(proc1)
    (me,) = [s for s in said if "home" in s]
    assert me == {"home": "/home/app", "has_token": True, "cwd": me["cwd"]}
    assert me["cwd"].endswith(f"/tasks/{tid}/work")
    # and it still talks to the server with its own token
    assert world.admin.ok("GET", f"/tasks/{tid}")["outputs"] == {"reached": True}
    world.admin.ok("POST", f"/tasks/{other}/stop")
    assert _wait(world, other)["status"] == "stopped"


def test_a_daemon_dies_with_a_stopped_app(world: World) -> None:
    agent_id, _, _ = _agent(world)
    module_id = world.admin.publish(PROBE)["module_id"]
    marker = f"sandbox-daemon-{os.getpid()}-stop"
    tid = _start(world, module_id, agent_id, daemon=marker, sleep_s=60)
    wait_for(lambda: {"daemon": "started"} in _said(world, tid), 30, "the daemon")
    assert processes_mentioning(marker)
    world.admin.ok("POST", f"/tasks/{tid}/stop")
    assert _wait(world, tid)["status"] == "stopped"
    wait_for(lambda: not processes_mentioning(marker), 15, f"{marker} to be gone")


def test_a_daemon_dies_with_its_killed_supervisor(world: World) -> None:
    agent_id, _, agent = _agent(world)
    module_id = world.admin.publish(PROBE)["module_id"]
    marker = f"sandbox-daemon-{os.getpid()}-oom"
    tid = _start(world, module_id, agent_id, daemon=marker, sleep_s=60)
    wait_for(lambda: {"daemon": "started"} in _said(world, tid), 30, "the daemon")
    pids = json.loads((agent.work_dir / "tasks" / str(tid) / "pids.json").read_text())
    # what the OOM killer does to a supervisor
    os.kill(pids["supervisor_pid"], signal.SIGKILL)
    wait_for(lambda: not processes_mentioning(marker), 15, f"{marker} to be gone")
    task = _wait(world, tid)
    assert task["status"] == "error" and "vanished" in task["error"], task


def test_the_stop_protocol_reaches_a_sandboxed_app(world: World) -> None:
    agent_id, _, _ = _agent(world)
    module_id = world.admin.publish(PROBE)["module_id"]
    tid = _start(world, module_id, agent_id, on_term=True, sleep_s=60)
    wait_for(lambda: any("home" in s for s in _said(world, tid)), 30, "the app to run")
    world.admin.ok("POST", f"/tasks/{tid}/stop")
    task = _wait(world, tid)
    # its SIGTERM handler ran and it left on its own, well within the grace period
    assert task["status"] == "stopped" and task["exit_code"] == 0, task
    assert {"event": "sigterm"} in _said(world, tid)


def test_a_killed_sandboxed_app_is_reported_with_its_signal(world: World) -> None:
    agent_id, _, _ = _agent(world)
    module_id = world.admin.publish(PROBE)["module_id"]
    tid = _start(world, module_id, agent_id, sleep_s=60)
    wait_for(lambda: any("home" in s for s in _said(world, tid)), 30, "the app to run")
    world.admin.ok("POST", f"/tasks/{tid}/stop")  # no handler: SIGTERM ends it
    task = _wait(world, tid)
    assert task["status"] == "stopped" and task["exit_code"] == -signal.SIGTERM, task


def test_network_false_means_no_way_out(world: World) -> None:
    agent_id, _, _ = _agent(world)
    online = world.admin.publish(PROBE)["module_id"]
    offline = world.admin.publish(PROBE, version="offline", sandbox={"network": False})["module_id"]
    assert online == offline  # one module, two releases
    body: dict[str, Any] = {
        "workspace_id": world.workspace_id,
        "module_id": online,
        "agent_id": agent_id,
        "params": {"state": {"connect": "yes"}},
    }
    tid = int(world.admin.ok("POST", "/tasks", json={**body, "version": "r1"})["task_id"])
    assert _wait(world, tid)["status"] == "finished"
    assert {"connect": "ok"} in _said(world, tid)
    body["version"] = "offline"
    tid = int(world.admin.ok("POST", "/tasks", json=body)["task_id"])
    assert _wait(world, tid)["status"] == "finished"
    (said,) = [s for s in _said(world, tid) if "connect" in s]
    assert said["connect"] != "ok", said


def test_read_only_paths_only_where_the_agent_allows(world: World, tmp_path: Path) -> None:
    shared = tmp_path / "models"
    shared.mkdir()
    (shared / "weights.txt").write_text("w")
    agent_id, _, _ = _agent(world, extra_args=["--app-path", str(shared)])
    ok = world.admin.publish(PROBE, version="shared", sandbox={"read_only_paths": [str(shared)]})
    tid = _start(world, ok["module_id"], agent_id, paths=[str(shared / "weights.txt")])
    assert _wait(world, tid)["status"] == "finished"
    assert {"path": str(shared / "weights.txt"), "seen": "w"} in _said(world, tid)
    bad = world.admin.publish(PROBE, version="home", sandbox={"read_only_paths": [str(tmp_path)]})
    tid = _start(world, bad["module_id"], agent_id)
    task = _wait(world, tid)
    assert task["status"] == "error" and "does not give apps" in task["error"], task


def test_without_bubblewrap_the_agent_says_apps_are_not_sandboxed(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    agent_id, _, agent = _agent(world)
    assert _isolation(world, agent_id) == "none"
    assert "apps are NOT sandboxed: no bwrap on PATH" in agent.log_text


def test_with_no_sandbox_the_agent_says_so(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPYARD_AGENT_SANDBOX", "0")
    agent_id, _, agent = _agent(world, name="plain")
    assert _isolation(world, agent_id) == "none"
    assert "apps are NOT sandboxed: the agent runs with --no-sandbox" in agent.log_text


def test_the_sandbox_etc_is_one_copy_made_again_when_a_file_changes(tmp_path: Path) -> None:
    from appyard.agent.sandbox import EtcSnapshot

    source = tmp_path / "etc"
    (source / "ssl" / "certs").mkdir(parents=True)
    (source / "hosts").write_text("127.0.0.1 localhost\n")
    (source / "ssl" / "certs" / "ca.pem").write_text("CERT")
    (source / "ssl" / "certs" / "link.pem").symlink_to("ca.pem")
    (source / "shadow").write_text("root:secret")
    (tmp_path / "real-resolv.conf").write_text("nameserver 10.0.0.1\n")
    (source / "resolv.conf").symlink_to(tmp_path / "real-resolv.conf")
    names = ("hosts", "ssl", "resolv.conf", "missing")

    snap = EtcSnapshot(tmp_path / "state", source=str(source), names=names)
    first = Path(snap.path())
    assert sorted(p.name for p in first.iterdir()) == ["hosts", "resolv.conf", "ssl"]
    # a link at the top is read through; links inside stay links
    assert not (first / "resolv.conf").is_symlink()
    assert (first / "resolv.conf").read_text() == "nameserver 10.0.0.1\n"
    assert os.readlink(first / "ssl" / "certs" / "link.pem") == "ca.pem"
    assert snap.path() == str(first)  # nothing changed: the same copy
    # another agent of the same home makes the same copy, not a second one
    assert EtcSnapshot(tmp_path / "state", source=str(source), names=names).path() == str(first)

    (source / "hosts").write_text("127.0.0.1 localhost\n10.0.0.2 db\n")
    second = Path(snap.path())
    assert second != first and "db" in (second / "hosts").read_text()
    # the old copy stays as it was: a running app may have it as its /etc
    assert "db" not in (first / "hosts").read_text()
