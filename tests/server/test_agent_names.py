"""An agent's name is unique in its team: a second one of that name is a 409 naming the field."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import httpx

import appyard as ay
from appyard.cli.process_cmd import UpState, _bootstrap
from tests.support import Client, World


def test_a_taken_agent_name_is_refused_with_a_409(world: World) -> None:
    first_id, _ = world.new_agent_token("gpu-box")
    r = world.admin.post(f"/teams/{world.team_id}/agents", json={"name": "gpu-box"})
    assert r.status_code == 409, r.text
    error = r.json()["error"]
    assert error["code"] == "conflict"
    assert error["field"] == "name"
    assert "'gpu-box'" in error["message"] and "pick another name" in error["message"]
    # nothing was made: the team still has the one agent of that name
    agents = world.admin.ok("GET", f"/teams/{world.team_id}/agents")
    assert [(a["id"], a["name"]) for a in agents] == [(first_id, "gpu-box")]

    # another name in the same team, and the same name in another team, are fine
    world.new_agent_token("gpu-box-2")
    other = world.admin.ok("POST", "/teams", json={"name": f"other-of-{world.team_id}"})
    made = world.admin.post(f"/teams/{other['id']}/agents", json={"name": "gpu-box"})
    assert made.status_code == 201, made.text


def test_racing_creations_of_one_name_make_one_agent(world: World) -> None:
    token = world.admin.http.headers["Authorization"].split()[1]
    racers = 8
    gate = threading.Barrier(racers)
    answers: list[int] = []

    def create() -> None:
        with Client(world.server.url, token).http as http:
            gate.wait(timeout=30)
            try:
                r = http.post(f"/teams/{world.team_id}/agents", json={"name": "racer"})
            except httpx.HTTPError as exc:  # said in the assert below
                answers.append(-1)
                raise AssertionError(exc) from exc
            answers.append(r.status_code)

    threads = [threading.Thread(target=create) for _ in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(answers) == [201] + [409] * (racers - 1), answers
    agents = world.admin.ok("GET", f"/teams/{world.team_id}/agents")
    assert [a["name"] for a in agents] == ["racer"]


def test_up_makes_its_new_agent_under_a_free_name(world: World, tmp_path: Path) -> None:
    """``appyard up`` makes a new agent when its stored token no longer works: the agent of its
    usual name is still there, so the new one takes the next free name instead of a 409."""
    usual = f"local-{socket.gethostname()}"[:90]
    old_id, _ = world.new_agent_token(usual)
    state = UpState(
        team_id=world.team_id,
        workspace_id=world.workspace_id,
        agent_id=old_id,
        agent_token="aya_revoked-meanwhile",
    )
    token = world.admin.http.headers["Authorization"].split()[1]
    with ay.Api(world.server.url, token) as api:
        _bootstrap(api, state, tmp_path / "up.json")
    assert state.agent_id is not None and state.agent_id != old_id
    agents = world.admin.ok("GET", f"/teams/{world.team_id}/agents")
    assert [(a["id"], a["name"]) for a in agents] == [
        (old_id, usual),
        (state.agent_id, f"{usual}-2"),
    ]
