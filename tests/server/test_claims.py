"""Claiming is a compare-and-set: however many agents race, each task is handed out once."""

from __future__ import annotations

import threading
from collections import Counter

from tests.support import APPS, Client, World


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
