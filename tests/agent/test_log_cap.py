"""A task's log is capped (manifest ``log_limit``), on the agent and on the server.

Real server, real agent, real apps: an app that prints far past its cap ends ``finished`` with
its stored log cut at the cap and ended by one marker line naming what was left out and where
the whole log is; another task running meanwhile is not held up. The server refuses lines past
a task's cap from an agent that does not keep to it (a hand-made one here). A full disk under
the task folders fails a task saying so, with the path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from appyard.agent.state import TaskDir
from tests.agent.test_agent_server import _agent, _logs, _start, _wait
from tests.support import APPS, World, wait_for

CAP = 1000


def test_a_log_past_its_cap_ends_finished_with_a_marker(world: World) -> None:
    agent_id, _, agent = _agent(world)
    chatty = world.admin.publish(
        APPS / "worker", slug="tests/chatty", name="Chatty", log_limit={"lines": CAP}
    )["module_id"]
    quiet = world.admin.publish(APPS / "worker")["module_id"]
    other = _start(world, quiet, agent_id, lines=50, sleep_s=2)
    tid = _start(world, chatty, agent_id, lines=30_000)

    task = _wait(world, tid)
    stored_at_end = len(_logs(world, tid))
    assert task["status"] == "finished" and task["exit_code"] == 0, task
    assert stored_at_end <= CAP + 1  # the end did not wait for 29,000 lines

    def marked() -> list[dict[str, Any]] | None:
        lines = _logs(world, tid)
        return lines if lines and "log limit reached" in lines[-1]["text"] else None

    lines = wait_for(marked, 30, "the marker line to end the stored log")
    assert len(lines) == CAP + 1
    assert [x["text"] for x in lines[:CAP]] == [f"line {i}" for i in range(CAP)]
    td = TaskDir(agent.work_dir / "tasks" / str(tid), tid)
    marker = lines[-1]["text"]
    assert lines[-1]["level"] == "warning"
    assert "the last 29001 lines" in marker, marker  # 29,000 of stdout and "bye" on stderr
    assert str(td.log) in marker and f"agent {agent_id}" in marker, marker
    kept = td.log.read_text().splitlines()
    assert sum('"line ' in x for x in kept) == 30_000  # the whole log stays on the agent

    other_task = _wait(world, other)
    assert other_task["status"] == "finished", other_task
    assert [x["text"] for x in _logs(world, other)] == [f"line {i}" for i in range(50)] + ["bye"]


def _hand_made_agent(world: World) -> tuple[httpx.Client, int]:
    """An agent that is only HTTP requests: hello, then a poll that claims a task."""
    agent_id, token = world.new_agent_token("by-hand")
    http = httpx.Client(
        base_url=f"{world.server.url}/api/v1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert http.post("/agents/hello", json={"slots": 2}).status_code == 200
    return http, agent_id


def _claim(
    world: World, http: httpx.Client, agent_id: int, module_id: int, held: tuple[int, ...] = ()
) -> int:
    tid = _start(world, module_id, agent_id, lines=1)
    poll = {"free_slots": 1, "running": list(held), "timeout_s": 5}
    got = http.post(f"/agents/{agent_id}/poll", json=poll).json()
    assert [t["task_id"] for t in got["tasks"]] == [tid], got
    return tid


def _batch(offset: int, texts: list[str], width: int = 40) -> dict[str, Any]:
    lines = [{"t": "2026-01-01T00:00:00Z", "level": "info", "text": x} for x in texts]
    return {"offset": offset, "end_offset": offset + width * len(texts), "lines": lines}


def test_the_server_refuses_lines_past_the_cap(world: World) -> None:
    """A hostile agent gets no more than the cap into the database: 413 ``log_full`` naming
    the cap (which a well-behaved agent does not retry), one last line past it at most."""
    http, agent_id = _hand_made_agent(world)
    capped = world.admin.publish(
        APPS / "worker", slug="tests/capped", name="Capped", log_limit={"lines": CAP}
    )["module_id"]
    tid = _claim(world, http, agent_id, capped)
    url = f"/tasks/{tid}/logs"

    # more text than the bytes of log file it says it spans
    r = http.post(url, json=_batch(0, ["x" * 100, "y"], width=10))
    assert r.status_code == 422 and r.json()["error"]["field"] == "lines", r.text

    assert http.post(url, json=_batch(0, [f"n {i}" for i in range(CAP - 1)])).status_code == 200
    at = 40 * (CAP - 1)
    r = http.post(url, json=_batch(at, ["a", "b"]))
    assert r.status_code == 413, r.text
    error = r.json()["error"]
    assert error["code"] == "log_full" and error["details"]["lines"] == CAP, error
    assert http.post(url, json=_batch(at, ["last within"])).status_code == 200
    # one last line past the cap (the agent's marker), then nothing
    assert http.post(url, json=_batch(at + 40, ["the marker"], width=10**6)).status_code == 200
    r = http.post(url, json=_batch(at + 40 + 10**6, ["more"]))
    assert r.status_code == 413, r.text
    lines = _logs(world, tid)
    assert len(lines) == CAP + 1 and lines[-1]["text"] == "the marker"

    # bytes: a task of the default cap (64 MiB of log file) takes no batch past it
    plain = world.admin.publish(APPS / "worker")["module_id"]
    tid2 = _claim(world, http, agent_id, plain, held=(tid,))
    far = {**_batch(0, ["a", "b"]), "end_offset": 64 * 1024 * 1024 + 1}
    r = http.post(f"/tasks/{tid2}/logs", json=far)
    assert r.status_code == 413 and r.json()["error"]["details"]["bytes"] == 64 * 1024 * 1024
    assert _logs(world, tid2) == []


def test_a_full_disk_fails_the_task_saying_so(world: World, tmp_path: Path) -> None:
    """The agent's task folders on a full file system (a tiny tmpfs, filled, in a mount
    namespace of its own): the task ends in error saying the disk is full and where, not
    "agent no longer runs this app"."""
    agent_id, token = world.new_agent_token("full-disk")
    work = tmp_path / "agent-work"
    tasks = work / "tasks"
    tasks.mkdir(parents=True)
    script = (
        'mount -t tmpfs -o size=64k tmpfs "$1" && { cat /dev/zero > "$1/fill" 2>/dev/null; '
        'true; } && shift && exec "$@"'
    )
    env = {k: v for k, v in os.environ.items() if k not in ("API_TOKEN", "SERVER_ADDRESS")}
    env["APPYARD_AGENT_TOKEN"] = token
    with open(tmp_path / "agent.log", "ab") as out:
        proc = subprocess.Popen(
            [
                *("unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh"),
                str(tasks),
                *(sys.executable, "-m", "appyard.agent", "--server", world.server.url),
                *("--slots", "1", "--work-dir", str(work)),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        module_id = world.admin.publish(APPS / "worker")["module_id"]
        tid = _start(world, module_id, agent_id, lines=3)
        task = _wait(world, tid)
        assert task["status"] == "error", task
        error = task["error"] or ""
        assert "disk is full" in error and str(tasks / str(tid)) in error, error
        assert "no longer runs" not in error
    finally:
        proc.terminate()
        proc.wait(20)
