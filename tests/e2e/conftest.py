"""End-to-end fixtures: a real agent process on the test's team, and an SDK client."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

import appyard as ay
from tests.support import APPS, AgentProc, World, wait_for


@dataclass
class Env:
    world: World
    api: ay.Api
    agent_id: int
    agent_token: str
    agent: AgentProc
    worker_id: int

    def agent_online(self, agent_id: int | None = None) -> bool:
        agent_id = agent_id or self.agent_id
        agents = self.api.agent.get_list(self.world.team_id)
        return any(a.id == agent_id and a.status == "online" for a in agents)

    def start_worker(self, agent_id: int | None = -1, **state: object) -> int:
        """Start the test worker app with ``state``; returns the task id."""
        session = self.api.app.start(
            agent_id=self.agent_id if agent_id == -1 else agent_id,
            module_id=self.worker_id,
            workspace_id=self.world.workspace_id,
            params=state,
            task_name="worker",
        )
        return session.task_id


def online_agent(world: World, name: str = "agent", slots: int = 2) -> tuple[int, str, AgentProc]:
    agent_id, token = world.new_agent_token(name)
    proc = world.start_agent(token, name=name, slots=slots)
    api = ay.Api(world.server.url, world.admin.http.headers["Authorization"].split()[1])
    wait_for(
        lambda: any(
            a.id == agent_id and a.status == "online" for a in api.agent.get_list(world.team_id)
        ),
        30,
        f"agent {name} to come online:\n{proc.log_text}",
    )
    return agent_id, token, proc


@pytest.fixture
def env(world: World) -> Iterator[Env]:
    api = ay.Api(world.server.url, world.admin.http.headers["Authorization"].split()[1])
    worker_id = world.admin.publish(APPS / "worker")["module_id"]
    agent_id, token, proc = online_agent(world)
    yield Env(world, api, agent_id, token, proc, worker_id)
    api.close()
