"""Two server replicas on one PostgreSQL database advance a run together: both engines are
woken by every end (LISTEN/NOTIFY) and race for the run's lock; each step starts once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pipelines.conftest import APP, SLUG, steps_of
from tests.support import AgentProc, Client, ServerProc, pg_available, two_replicas, wait_for

pytestmark = pytest.mark.skipif(not pg_available(), reason="needs the PostgreSQL server")


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[ServerProc, ServerProc]]:
    with two_replicas(tmp_path) as pair:
        yield pair


def test_two_replicas_advance_a_run_once(
    replicas: tuple[ServerProc, ServerProc], tmp_path: Path
) -> None:
    a, b = replicas
    admin_a, admin_b = Client(a.url, a.admin_token), Client(b.url, a.admin_token)
    team = admin_a.ok("POST", "/teams", json={"name": "replicated"})
    ws = admin_a.ok("POST", f"/teams/{team['id']}/workspaces", json={"name": "w"})
    admin_a.publish(APP)
    agents = []
    for name, server in (("on-a", a), ("on-b", b)):
        created = admin_a.ok("POST", f"/teams/{team['id']}/agents", json={"name": name})
        agents.append(
            AgentProc(
                server.url, created["token"], tmp_path / name, slots=4, extra_args=["--no-sandbox"]
            ).start()
        )
    try:
        wait_for(
            lambda: (
                sum(
                    x["status"] == "online"
                    for x in admin_b.ok("GET", f"/teams/{team['id']}/agents")
                )
                == 2
            ),
            30,
            "both agents online",
        )
        document = {
            "name": "wide",
            "steps": [
                {"id": "start", "app": SLUG, "params": {"outputs": {"ids": list(range(12))}}},
                {
                    "id": "each",
                    "app": SLUG,
                    "needs": ["start"],
                    "for_each": "${steps.start.outputs.ids}",
                    "max_parallel": 6,
                    "params": {"outputs": {"i": "${item}"}},
                },
                {"id": "end", "app": SLUG, "needs": ["each"]},
            ],
        }
        run = admin_b.ok(
            "POST", "/pipeline-runs", json={"workspace_id": ws["id"], "document": document}
        )

        def ended() -> object:
            r = admin_a.ok("GET", f"/pipeline-runs/{run['id']}/wait", params={"timeout": 5})
            return None if r["timed_out"] else r["run"]

        done = wait_for(ended, 90, "the run to end")
        assert isinstance(done, dict) and done["status"] == "finished", done
        s = steps_of(done)
        assert [a_["item"] for a_ in s["each"]["attempts"]] == list(range(12))
        assert all(a_["n"] == 1 for a_ in s["each"]["attempts"])
        assert s["each"]["outputs"] == [{"i": i} for i in range(12)]
        tasks = admin_a.ok("GET", "/tasks", params={"team_id": team["id"], "limit": 100})
        assert len(tasks["items"]) == 14, "each step and item started once"
    finally:
        for agent in agents:
            agent.stop()
