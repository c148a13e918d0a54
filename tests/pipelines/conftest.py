"""Fixtures for pipeline runs: a team with an agent and the pipeline test app published."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import AgentProc, World, wait_for

APP = Path(__file__).parent / "apps" / "step"
SLUG = "tests/pipeline-step"
ENDED = ("finished", "error", "stopped")


def step(step_id: str, **kw: Any) -> dict[str, Any]:
    """A step of the test app."""
    return {"id": step_id, "app": SLUG, **kw}


def online(world: World, agent_id: int) -> bool:
    agents = world.admin.ok("GET", f"/teams/{world.team_id}/agents")
    return any(a["id"] == agent_id and a["status"] == "online" for a in agents)


@dataclass
class Pipes:
    world: World
    agent_id: int
    agent_token: str
    agent: AgentProc

    def start_agent(self, name: str, slots: int = 4) -> tuple[int, str, AgentProc]:
        """Another agent of the team (apps unsandboxed: they share marker files with the test)."""
        agent_id, token = self.world.new_agent_token(name)
        proc = self.world.start_agent(token, name=name, slots=slots, extra_args=["--no-sandbox"])
        wait_for(lambda: online(self.world, agent_id), 30, f"agent {name} online")
        return agent_id, token, proc

    def run(self, steps: list[dict[str, Any]], **doc: Any) -> dict[str, Any]:
        inputs = doc.pop("run_inputs", {})
        document = {"name": doc.pop("name", "p"), "steps": steps, **doc}
        body = {"workspace_id": self.world.workspace_id, "document": document, "inputs": inputs}
        run: dict[str, Any] = self.world.admin.ok("POST", "/pipeline-runs", json=body)
        return run

    def get(self, run_id: int) -> dict[str, Any]:
        run: dict[str, Any] = self.world.admin.ok("GET", f"/pipeline-runs/{run_id}")
        return run

    def wait(self, run_id: int, until: str = "terminal", timeout: float = 90) -> dict[str, Any]:
        def reached() -> Any:
            r = self.world.admin.ok(
                "GET", f"/pipeline-runs/{run_id}/wait", params={"until": until, "timeout": 5}
            )
            return None if r["timed_out"] else r["run"]

        run: dict[str, Any] = wait_for(reached, timeout, f"run {run_id} to reach {until}")
        return run

    def task(self, task_id: int) -> dict[str, Any]:
        info: dict[str, Any] = self.world.admin.ok("GET", f"/tasks/{task_id}")
        return info


def steps_of(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in run["steps"]}


@pytest.fixture
def pipes(world: World) -> Iterator[Pipes]:
    world.admin.publish(APP)
    agent_id, token = world.new_agent_token("agent")
    proc = world.start_agent(token, name="agent", slots=4, extra_args=["--no-sandbox"])
    wait_for(lambda: online(world, agent_id), 30, f"agent online:\n{proc.log_text}")
    yield Pipes(world, agent_id, token, proc)
