"""What a session uses: sampled by its supervisor, sent with the agent's polls, stored by a real
server (SQLite and PostgreSQL), shown by the SDK and the CLI; a memory limit kept; junk from a
hand-made agent refused with a 422 that names the field, the task unharmed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import appyard as ay
from appyard.agent.supervisor.usage import USAGE_NAME
from appyard.schemas.usage import HISTORY_CAP, MAX_REPORT_SAMPLES, merge_history
from tests.conftest import _db_params, live_server
from tests.support import Client, ServerProc, World, processes_of, wait_for

HOG = Path(__file__).parent / "apps" / "hog"
TERMINAL = "finished,error,stopped"


@pytest.fixture(scope="module", params=_db_params())
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProc]:
    """As conftest's, with agents polling every second: figures reach the server within one."""
    home = tmp_path_factory.mktemp(f"server-{request.param}")
    with live_server(request.param, home, {"APPYARD_POLL_TIMEOUT_S": "1"}) as proc:
        yield proc


def _agent(world: World, name: str, interval: str = "0.3") -> int:
    agent_id, token = world.new_agent_token(name)
    proc = world.start_agent(token, name=name, extra_args=["--usage-interval", interval])

    def online() -> bool:
        return bool(world.admin.ok("GET", f"/agents/{agent_id}")["status"] == "online")

    wait_for(online, 30, f"agent {name} online:\n{proc.log_text}")
    return agent_id


def _start(world: World, module_id: int, agent_id: int, **state: Any) -> int:
    body = {
        "workspace_id": world.workspace_id,
        "module_id": module_id,
        "agent_id": agent_id,
        "params": {"state": state},
    }
    return int(world.admin.ok("POST", "/tasks", json=body)["task_id"])


def _wait(world: World, task_id: int, until: str = TERMINAL, timeout: float = 60) -> Any:
    def reached() -> Any:
        r = world.admin.ok("GET", f"/tasks/{task_id}/wait", params={"until": until, "timeout": 5})
        return None if r["timed_out"] else r["task"]

    return wait_for(reached, timeout, f"task {task_id} to reach {until}")


def test_a_busy_app_shows_its_usage_in_the_sdk_and_the_cli(world: World) -> None:
    agent_id = _agent(world, "usage")
    module_id = world.admin.publish(HOG)["module_id"]
    task_id = _start(world, module_id, agent_id, memory_mb=80, seconds=60, burn=True)
    _wait(world, task_id, "started")

    with ay.Api(world.server.url, world.server.admin_token) as api:

        def busy() -> Any:
            t = api.task.get(task_id)
            u = t.usage
            # the burner is a child process: its CPU counts, as the parent's 80 MB do
            return t if u is not None and u.cpu_percent >= 40 and u.memory_mb >= 80 else None

        t = wait_for(busy, 30, f"usage of task {task_id} with a busy core and 80 MB")
        assert t.usage is not None and t.usage.gpu_memory_mb is None  # no GPU on this machine
        assert t.usage.memory_mb < 1000
        assert t.usage_history and t.usage_history[-1] == t.usage
        times = [u.sampled_at for u in t.usage_history]
        assert times == sorted(times) and len(set(times)) == len(times)
        info = api.task.get_info_by_id(task_id)  # the reference SDK's dict
        assert info["usage"]["memory_mb"] >= 80 and info["usage"]["cpu_percent"] >= 40
        assert set(info["usage"]) == {
            "sampled_at",
            "cpu_percent",
            "memory_mb",
            "gpu_memory_mb",
            "gpu_percent",
        }
        assert info["usage_history"]
        # lists carry the latest figures, not the history
        listed = next(x for x in api.task.get_list(world.team_id) if x.id == task_id)
        assert listed.usage is not None and listed.usage_history == []

        out = world.cli("app", "sessions", "--status", "started")
        assert out.returncode == 0, out.stderr
        head = next(line for line in out.stdout.splitlines() if "TASK" in line)
        assert "CPU" in head and "MEMORY" in head, out.stdout
        rows = [line.replace("│", " ").split() for line in out.stdout.splitlines()]
        row = " ".join(next(r for r in rows if r[:1] == [str(task_id)]))
        cpu = next(w for w in row.split() if w.endswith("%"))
        assert int(cpu[:-1]) > 0, row
        assert " MB" in row, row

        # the supervisor's file is bounded, whatever the session's length
        sample = world.agents[0].work_dir / "tasks" / str(task_id) / USAGE_NAME
        data = json.loads(sample.read_text())
        assert 1 <= len(data["samples"]) <= 32 and data["exceeded"] is None
        assert all(p > 1 for p in data["pids"])

        api.task.stop(task_id)
    end = _wait(world, task_id)
    assert end["status"] == "stopped"
    assert end["usage"] is not None  # kept after the end


def test_an_app_over_its_memory_limit_is_stopped_with_a_clear_error(world: World) -> None:
    agent_id = _agent(world, "limit")
    module_id = world.admin.publish(HOG, slug="tests/hog-limited", resources={"memory_mb": 100})[
        "module_id"
    ]
    # 30 MB at once, then 40 MB more a second: past 100 MB within a few seconds
    task_id = _start(world, module_id, agent_id, memory_mb=30, grow_mb_s=40, seconds=60, burn=False)
    end = _wait(world, task_id, timeout=60)
    assert end["status"] == "error", end
    first = end["error"].splitlines()[0]
    assert first.startswith("memory limit 100 MB exceeded (used "), end["error"]
    used = int(first.split("(used ")[1].split(" MB)")[0])
    assert used > 100
    assert end["usage"] is not None and end["usage"]["memory_mb"] > 100
    logs = world.admin.ok("GET", f"/tasks/{task_id}/logs")["items"]
    assert any("memory limit 100 MB exceeded" in line["text"] for line in logs), logs
    assert processes_of(task_id, world.server.url) == []  # nothing of it left running

    # a start that lowers it to 0 has no limit: the same growth past 100 MB ends well
    body = {
        "workspace_id": world.workspace_id,
        "module_id": module_id,
        "agent_id": agent_id,
        "params": {"state": {"memory_mb": 30, "grow_mb_s": 40, "seconds": 4, "burn": False}},
        "resources": {"memory_mb": 0},
    }
    free = int(world.admin.ok("POST", "/tasks", json=body)["task_id"])
    end = _wait(world, free, timeout=60)
    assert end["status"] == "finished", end
    # its peak, not its last figure: the last sample may fall in the interpreter's teardown, when
    # the memory is already given back (seen: 164.5 MB, then 14.5 MB as it exited)
    peak = max(s["memory_mb"] for s in end["usage_history"])
    assert peak > 100, _why(world, free)


def _why(world: World, task_id: int) -> str:
    """What a test of a task's figures shows when they are not what it expected: the task's
    history, its log, the agent's samples file and the agent's log."""
    task = world.admin.ok("GET", f"/tasks/{task_id}")
    logs = world.admin.ok("GET", f"/tasks/{task_id}/logs")["items"]
    files = [f.read_text() for f in world.tmp.glob(f"agent-*/**/{task_id}/usage.json")]
    agents = "\n".join(a.log_text for a in world.agents)
    return (
        f"history: {task['usage_history']}\nlog: {[line['text'] for line in logs]}\n"
        f"usage.json: {files}\nagents' log:\n{agents}"
    )


def _held_task(world: World) -> tuple[Client, int, int]:
    """A task held by a hand-made agent (claimed by its poll, reported started)."""
    agent_id, token = world.new_agent_token("hand-made")
    agent = Client(world.server.url, token)
    agent.ok("POST", "/agents/hello", json={"slots": 1})
    module_id = world.admin.publish(HOG)["module_id"]
    task_id = _start(world, module_id, agent_id)
    claimed = agent.ok("POST", f"/agents/{agent_id}/poll", json={"free_slots": 1, "timeout_s": 0})
    assert [t["task_id"] for t in claimed["tasks"]] == [task_id]
    agent.ok("POST", f"/tasks/{task_id}/events", json={"kind": "started", "pid": 4242})
    return agent, agent_id, task_id


def _samples(start: datetime, n: int, step_s: float = 5.0, **fig: Any) -> list[dict[str, Any]]:
    return [
        {
            "sampled_at": (start + timedelta(seconds=i * step_s)).isoformat(),
            "cpu_percent": fig.get("cpu_percent", 50.0),
            "memory_mb": fig.get("memory_mb", 100.0 + i),
        }
        for i in range(n)
    ]


def test_history_stays_bounded_over_a_long_session(world: World) -> None:
    agent, agent_id, task_id = _held_task(world)
    start = datetime.now(UTC) - timedelta(hours=3)
    sent = 0
    for _ in range(5):  # 5 polls of 120 samples: 600 samples, 50 minutes
        samples = _samples(start + timedelta(seconds=sent * 5), 120)
        for i, s in enumerate(samples):
            s["memory_mb"] = float(sent + i)
        report = {"task_id": task_id, "samples": samples}
        body = {"free_slots": 0, "timeout_s": 0, "running": [task_id], "usage": [report]}
        agent.ok("POST", f"/agents/{agent_id}/poll", json=body)
        sent += 120
    t = world.admin.ok("GET", f"/tasks/{task_id}")
    history = t["usage_history"]
    assert HISTORY_CAP // 2 <= len(history) <= HISTORY_CAP
    assert t["usage"] == history[-1]
    assert t["usage"]["memory_mb"] == 599.0  # the newest sample, as it was
    # the whole session is covered, and merged points keep the peak memory
    first = datetime.fromisoformat(history[0]["sampled_at"])
    assert first - start < timedelta(minutes=5)  # of 50: the start is still in it
    assert [h["memory_mb"] for h in history] == sorted(h["memory_mb"] for h in history)
    # a poll sent again (an agent retrying) adds nothing
    agent.ok("POST", f"/agents/{agent_id}/poll", json=body)
    assert world.admin.ok("GET", f"/tasks/{task_id}")["usage_history"] == history


def test_history_of_many_small_polls_is_whole_and_in_order(world: World) -> None:
    """Polls of a few samples each (as a real agent sends them) append to the history, and
    halving it past the cap reads every one of them back in order."""
    agent, agent_id, task_id = _held_task(world)
    start = datetime.now(UTC) - timedelta(hours=1)
    for n in range(40):  # 40 polls of 7 samples: 280 samples, past the cap twice
        samples = _samples(start + timedelta(seconds=n * 35), 7)
        for i, x in enumerate(samples):
            x["memory_mb"] = float(n * 7 + i)
        body = {
            "free_slots": 0,
            "timeout_s": 0,
            "running": [task_id],
            "usage": [{"task_id": task_id, "samples": samples}],
        }
        agent.ok("POST", f"/agents/{agent_id}/poll", json=body)
        history = world.admin.ok("GET", f"/tasks/{task_id}")["usage_history"]
        assert min(n * 7 + 7, HISTORY_CAP // 2) <= len(history) <= HISTORY_CAP, (n, len(history))
        times = [h["sampled_at"] for h in history]
        assert times == sorted(set(times)), n
        assert history[-1]["memory_mb"] == float(n * 7 + 6)  # the newest, whole or a peak
    memory = [h["memory_mb"] for h in history]
    assert memory == sorted(memory)  # merged points keep their peaks
    first = datetime.fromisoformat(history[0]["sampled_at"].replace("Z", "+00:00"))
    assert first - start < timedelta(minutes=1)  # of 23: the start is still there


def test_merge_history_halves_past_the_cap() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    new = [
        {
            "sampled_at": (t0 + timedelta(seconds=i)).isoformat(),
            "cpu_percent": float(i % 2) * 100,
            "memory_mb": float(i),
            "gpu_memory_mb": None,
            "gpu_percent": None,
        }
        for i in range(10)
    ]
    out = merge_history([], new, cap=8)
    assert len(out) == 5
    assert [o["memory_mb"] for o in out] == [1.0, 3.0, 5.0, 7.0, 9.0]  # peaks
    assert all(o["cpu_percent"] == 50.0 for o in out)  # means
    assert merge_history(out, new[:3], cap=8) == out  # older samples: ignored


JUNK: list[tuple[dict[str, Any], str]] = [
    ({"cpu_percent": -1}, "usage[0].samples[0].cpu_percent"),
    ({"cpu_percent": "lots"}, "usage[0].samples[0].cpu_percent"),
    ({"cpu_percent": 1e12}, "usage[0].samples[0].cpu_percent"),
    ({"memory_mb": 2**70}, "usage[0].samples[0].memory_mb"),
    ({"gpu_percent": -5}, "usage[0].samples[0].gpu_percent"),
    ({"sampled_at": "yesterday-ish"}, "usage[0].samples[0].sampled_at"),
    ({"command": "rm -rf /"}, "usage[0].samples[0].command"),
]


def test_junk_usage_is_refused_naming_the_field_and_the_task_runs_on(world: World) -> None:
    agent, agent_id, task_id = _held_task(world)
    now = datetime.now(UTC)
    good = {"task_id": task_id, "samples": _samples(now - timedelta(seconds=10), 2)}
    agent.ok(
        "POST",
        f"/agents/{agent_id}/poll",
        json={"free_slots": 0, "timeout_s": 0, "running": [task_id], "usage": [good]},
    )
    before = world.admin.ok("GET", f"/tasks/{task_id}")
    assert before["usage"]["memory_mb"] == 101.0 and len(before["usage_history"]) == 2

    def poll(usage: Any) -> Any:
        body = {"free_slots": 0, "timeout_s": 0, "running": [task_id], "usage": usage}
        return agent.post(f"/agents/{agent_id}/poll", json=body)

    for change, field in JUNK:
        sample = {**_samples(now, 1)[0], **change}
        r = poll([{"task_id": task_id, "samples": [sample]}])
        assert r.status_code == 422, (change, r.text)
        error = r.json()["error"]
        assert error["field"] == field, (change, error)
        assert error["message"].startswith(f"{field}:"), error
    too_many = _samples(now, MAX_REPORT_SAMPLES + 1)
    for usage, field in (
        ([{"task_id": task_id, "samples": too_many}], "usage[0].samples"),
        ([{"task_id": task_id, "samples": []}], "usage[0].samples"),
        ([{"task_id": 0, "samples": _samples(now, 1)}], "usage[0].task_id"),
        ({"task_id": task_id}, "usage"),
    ):
        r = poll(usage)
        assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text
    # the end report is held to the same rule
    r = agent.post(
        f"/tasks/{task_id}/events",
        json={
            "kind": "exited",
            "exit_code": 0,
            "usage": {"task_id": task_id, "samples": [{**_samples(now, 1)[0], "memory_mb": -1}]},
        },
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "usage.samples[0].memory_mb"

    # nothing of it was stored, and the task runs on
    after = world.admin.ok("GET", f"/tasks/{task_id}")
    assert after["status"] == "started"
    assert after["usage"] == before["usage"]
    assert after["usage_history"] == before["usage_history"]
    # samples of a task it does not hold, and from far in the future, are dropped quietly
    other = {"task_id": task_id + 1000, "samples": _samples(now, 1)}
    future = {"task_id": task_id, "samples": _samples(now + timedelta(days=30), 1)}
    assert poll([other, future]).status_code == 200
    assert world.admin.ok("GET", f"/tasks/{task_id}")["usage_history"] == before["usage_history"]
    # times at the ends of the calendar, and in another zone, are times like any: older than
    # the last kept, they add nothing (and break nothing)
    odd = [
        {**_samples(now, 1)[0], "sampled_at": "0001-01-01T00:00:00Z"},
        {**_samples(now, 1)[0], "sampled_at": "1969-12-31T23:59:59.999999-12:00"},
        {**_samples(now, 1)[0], "sampled_at": (now - timedelta(seconds=10)).isoformat()},
    ]
    assert poll([{"task_id": task_id, "samples": odd}]).status_code == 200
    assert world.admin.ok("GET", f"/tasks/{task_id}")["usage_history"] == before["usage_history"]
    # its end report carries its last figures, stored before it ends
    last = {"task_id": task_id, "samples": _samples(now, 1, memory_mb=333.0)}
    agent.ok(
        "POST", f"/tasks/{task_id}/events", json={"kind": "exited", "exit_code": 0, "usage": last}
    )
    end = world.admin.ok("GET", f"/tasks/{task_id}")
    assert end["status"] == "finished" and end["usage"]["memory_mb"] == 333.0
