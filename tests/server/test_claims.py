"""Claiming is a compare-and-set: however many agents race, each task is handed out once."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

from tests.support import APPS, Client, ServerProc, World, wait_for


def test_racing_polls_claim_each_task_once(world: World) -> None:
    mid = world.admin.publish(APPS / "worker")["module_id"]
    agents = []
    for i in range(4):
        agent_id, token = world.new_agent_token(f"racer{i}")
        client = Client(world.server.url, token)
        client.ok("POST", "/agents/hello", json={"slots": 8})
        agents.append((agent_id, client))
    n_tasks = 40
    for _ in range(n_tasks):
        world.admin.ok(
            "POST", "/tasks", json={"workspace_id": world.workspace_id, "module_id": mid}
        )
    got: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(agents))

    def race(agent_id: int, client: Client) -> None:
        barrier.wait()
        held: list[int] = []
        while True:
            r = client.ok(
                "POST",
                f"/agents/{agent_id}/poll",
                json={"free_slots": 3, "running": held, "timeout_s": 0},
            )
            ids = [t["task_id"] for t in r["tasks"]]
            if not ids:
                return
            held.extend(ids)
            with lock:
                got.extend(ids)

    threads = [threading.Thread(target=race, args=a) for a in agents]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    counts = Counter(got)
    # 4 agents x 8 slots: 32 are handed out, each once; the rest wait queued for a free slot
    assert len(counts) == 32, f"{len(counts)} of {n_tasks} tasks handed out"
    assert max(counts.values()) == 1, [k for k, v in counts.items() if v > 1]
    page = world.admin.ok("GET", "/tasks", params={"team_id": world.team_id, "limit": 100})
    statuses = Counter(t["status"] for t in page["items"])
    assert statuses == {"consumed": 32, "queued": 8}
    per_agent = Counter(t["agent_id"] for t in page["items"] if t["status"] == "consumed")
    assert max(per_agent.values()) <= 8


def test_a_dropped_assignment_is_queued_again(world: World) -> None:
    """An assignment the agent never saw (the answer was lost) runs elsewhere, not never."""
    mid = world.admin.publish(APPS / "worker")["module_id"]
    agent_id, token = world.new_agent_token("forgetful")
    agent = Client(world.server.url, token)
    agent.ok("POST", "/agents/hello", json={"slots": 1})
    started = world.admin.ok(
        "POST", "/tasks", json={"workspace_id": world.workspace_id, "module_id": mid}
    )
    r = agent.ok("POST", f"/agents/{agent_id}/poll", json={"free_slots": 1, "timeout_s": 5})
    assert [t["task_id"] for t in r["tasks"]] == [started["task_id"]]
    # the next poll does not list it as held: the server takes it back and hands it out again
    r = agent.ok(
        "POST", f"/agents/{agent_id}/poll", json={"free_slots": 1, "running": [], "timeout_s": 5}
    )
    assert [t["task_id"] for t in r["tasks"]] == [started["task_id"]]
    info = world.admin.ok("GET", f"/tasks/{started['task_id']}")
    assert info["status"] == "consumed" and info["attempt"] == 2


def test_a_queue_wake_passes_over_agents_that_cannot_take_it(tmp_path: Path) -> None:
    """An any-agent task wakes one held poll; a full agent hands the wake on to the next."""
    slow = {"APPYARD_POLL_TIMEOUT_S": "60", "APPYARD_AGENT_TTL_S": "90"}
    server = ServerProc(tmp_path / "server", extra_env=slow).start()
    try:
        admin = Client(server.url, server.admin_token)
        team = admin.ok("POST", "/teams", json={"name": "t"})["id"]
        ws = admin.ok("POST", f"/teams/{team}/workspaces", json={"name": "w"})["id"]
        mid = admin.publish(APPS / "worker")["module_id"]
        agents = []
        for name in ("full-1", "full-2", "free"):
            created = admin.ok("POST", f"/teams/{team}/agents", json={"name": name})
            client = Client(server.url, created["token"])
            client.ok("POST", "/agents/hello", json={"slots": 1})
            agents.append((created["id"], client))
        # fill the two first agents' only slot
        held: dict[int, list[int]] = {}
        for agent_id, client in agents[:2]:
            t = admin.ok(
                "POST", "/tasks", json={"workspace_id": ws, "module_id": mid, "agent_id": agent_id}
            )
            r = client.ok(
                "POST", f"/agents/{agent_id}/poll", json={"free_slots": 1, "timeout_s": 5}
            )
            assert [a["task_id"] for a in r["tasks"]] == [t["task_id"]]
            held[agent_id] = [t["task_id"]]
        results: dict[int, list[int]] = {}

        def hold(agent_id: int, client: Client) -> None:
            r = client.ok(
                "POST",
                f"/agents/{agent_id}/poll",
                json={"free_slots": 1, "running": held.get(agent_id, []), "timeout_s": 60},
                timeout=90,
            )
            results[agent_id] = [a["task_id"] for a in r["tasks"]]

        # the full agents poll first, so they have waited longest and are woken first
        threads = []
        for agent_id, client in agents:
            seen = _last_seen(admin, team, agent_id)
            th = threading.Thread(target=hold, args=(agent_id, client), daemon=True)
            th.start()
            threads.append(th)
            # a poll marks its agent seen after it subscribed: then it is in the line
            wait_for(
                lambda a=agent_id, t=seen: _last_seen(admin, team, a) != t,  # type: ignore[misc]
                10,
                "the poll to be held",
            )
        task = admin.ok("POST", "/tasks", json={"workspace_id": ws, "module_id": mid})
        free_id = agents[2][0]
        # well before the 60 s polls end: the wake reached the free agent through the full ones
        threads[2].join(20)
        assert results.get(free_id) == [task["task_id"]]
        assert admin.ok("GET", f"/tasks/{task['task_id']}")["agent_id"] == free_id
    finally:
        server.stop()


def _last_seen(admin: Client, team: int, agent_id: int) -> str:
    agents = admin.ok("GET", f"/teams/{team}/agents")
    return str(next(a["last_seen_at"] for a in agents if a["id"] == agent_id))


def test_an_app_started_after_its_task_was_taken_back_is_refused(world: World) -> None:
    """The agent was thought lost and its task queued again: its late "started" is a 409."""
    mid = world.admin.publish(APPS / "worker")["module_id"]
    agent_id, token = world.new_agent_token("late")
    agent = Client(world.server.url, token)
    agent.ok("POST", "/agents/hello", json={"slots": 1})
    started = world.admin.ok(
        "POST",
        "/tasks",
        json={"workspace_id": world.workspace_id, "module_id": mid, "agent_id": agent_id},
    )
    tid = started["task_id"]
    agent.ok("POST", f"/agents/{agent_id}/poll", json={"free_slots": 1, "timeout_s": 5})
    # a hello that does not list it (a restart): the task goes back to the queue
    agent.ok("POST", "/agents/hello", json={"slots": 1})
    assert world.admin.ok("GET", f"/tasks/{tid}")["status"] == "queued"
    r = agent.http.post(f"/tasks/{tid}/events", json={"kind": "started", "pid": 4242})
    assert r.status_code == 409 and r.json()["error"]["field"] == "status"
    # while it still holds the old one, the same task is not handed to it again
    r = agent.ok(
        "POST", f"/agents/{agent_id}/poll", json={"free_slots": 1, "running": [tid], "timeout_s": 0}
    )
    assert r["tasks"] == []
    r = agent.ok("POST", f"/agents/{agent_id}/poll", json={"free_slots": 1, "timeout_s": 5})
    assert [t["task_id"] for t in r["tasks"]] == [tid]
