"""Two server replicas on one PostgreSQL database: pushes cross replicas (LISTEN/NOTIFY)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import appyard as ay
from tests.support import APPS, AgentProc, Client, ServerProc, pg_available, two_replicas, wait_for

pytestmark = pytest.mark.skipif(not pg_available(), reason="needs the PostgreSQL server")


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[ServerProc, ServerProc]]:
    # polls and waits are held 60 s: only a push can make anything happen sooner
    slow = {"APPYARD_POLL_TIMEOUT_S": "60", "APPYARD_AGENT_TTL_S": "90"}
    with two_replicas(tmp_path, slow) as pair:
        yield pair


def test_a_start_on_one_replica_wakes_an_agent_on_the_other(
    replicas: tuple[ServerProc, ServerProc], tmp_path: Path
) -> None:
    a, b = replicas
    token = a.admin_token
    admin_a = Client(a.url, token)
    team = admin_a.ok("POST", "/teams", json={"name": "replicated"})
    ws = admin_a.ok("POST", f"/teams/{team['id']}/workspaces", json={"name": "w"})
    module_id = admin_a.publish(APPS / "worker")["module_id"]
    created = admin_a.ok("POST", f"/teams/{team['id']}/agents", json={"name": "on-a"})
    agent = AgentProc(a.url, created["token"], tmp_path / "agent").start()
    api_b = ay.Api(b.url, token)
    try:
        wait_for(
            lambda: any(x.status == "online" for x in api_b.agent.get_list(team["id"])),
            30,
            "the agent online (seen through replica b)",
        )
        # the agent's poll is held by replica a; the start goes to replica b ...
        session = api_b.app.start(
            agent_id=created["id"], module_id=module_id, workspace_id=ws["id"], params={}
        )
        # ... and the wait, held by replica b, must hear the end reported to replica a. With
        # 60 s polls, a budget of 20 s is met only if both pushes crossed the replicas.
        status = api_b.app.wait(
            session.task_id, target_status=ay.Status.FINISHED, attempts=1, attempt_delay_sec=20
        )
        assert status == ay.Status.FINISHED
    finally:
        api_b.close()
        agent.stop()
