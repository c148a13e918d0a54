"""Every endpoint needs a token, and each kind of token acts only where it may."""

from __future__ import annotations

from tests.support import APPS, Client, World


def _error(r):  # type: ignore[no-untyped-def]
    body = r.json()
    assert "error" in body, body
    return body["error"]


def test_every_endpoint_needs_a_token(world: World) -> None:
    anon = Client(world.server.url, None)
    for method, path in [
        ("GET", "/teams"),
        ("GET", "/users/me"),
        ("GET", "/modules"),
        ("POST", "/tasks"),
        ("GET", "/tasks/1"),
        ("GET", "/tasks/1/wait"),
        ("POST", "/agents/hello"),
        ("GET", f"/teams/{world.team_id}/agents"),
    ]:
        r = anon.http.request(method, path)
        assert r.status_code == 401, (method, path, r.text)
        assert "token" in _error(r)["message"]
    bad = Client(world.server.url, "ayu_not-a-real-token")
    r = bad.http.get("/teams")
    assert r.status_code == 401
    # x-api-key works as well as the bearer header
    token = world.admin.http.headers["Authorization"].split()[1]
    r = anon.http.get("/users/me", headers={"x-api-key": token})
    assert r.status_code == 200 and r.json()["login"] == "admin"


def test_users_see_only_their_teams(world: World) -> None:
    outsider = world.member("outsider-" + str(world.team_id), "viewer")
    # move the outsider out: a user of another team
    other_team = outsider.ok("POST", "/teams", json={"name": "elsewhere"})
    world.admin.ok(
        "POST",
        f"/teams/{world.team_id}/members",
        json={"login": "outsider-" + str(world.team_id), "role": "viewer"},
    )
    stranger = Client(
        world.server.url, world.admin.ok("POST", "/tokens", json={"name": "x"})["token"]
    )
    assert stranger.ok("GET", "/users/me")["login"] == "admin"
    # a user who is in no common team cannot see the team, its workspaces, agents or tasks
    lone = world.member("lone-" + str(world.team_id), "viewer")
    lone_team = lone.ok("POST", "/teams", json={"name": "lone's"})
    r = lone.http.get(f"/teams/{other_team['id']}/workspaces")
    assert r.status_code == 404 and _error(r)["field"] == "team_id"
    teams = {t["id"] for t in lone.ok("GET", "/teams")}
    assert lone_team["id"] in teams and other_team["id"] not in teams


def test_viewer_cannot_start_or_stop(world: World) -> None:
    world.admin.publish(APPS / "worker")
    module_id = world.admin.ok("GET", "/modules/lookup", params={"slug": "tests/worker"})["id"]
    viewer = world.member(f"viewer-{world.team_id}", "viewer")
    r = viewer.http.post(
        "/tasks", json={"workspace_id": world.workspace_id, "module_id": module_id}
    )
    assert r.status_code == 403
    assert "viewer" in _error(r)["message"] and "developer" in _error(r)["message"]
    started = world.admin.ok(
        "POST", "/tasks", json={"workspace_id": world.workspace_id, "module_id": module_id}
    )
    r = viewer.http.post(f"/tasks/{started['task_id']}/stop")
    assert r.status_code == 403
    # but a viewer reads
    assert viewer.ok("GET", f"/tasks/{started['task_id']}")["status"] == "queued"
    developer = world.member(f"dev-{world.team_id}", "developer")
    assert developer.ok("POST", f"/tasks/{started['task_id']}/stop")["status"] == "stopped"


def test_agent_token_acts_only_as_its_agent(world: World) -> None:
    agent_id, token = world.new_agent_token("a")
    other_id, _ = world.new_agent_token("b")
    agent = Client(world.server.url, token)
    assert agent.ok("POST", "/agents/hello", json={"slots": 1})["agent_id"] == agent_id
    r = agent.http.post(f"/agents/{other_id}/poll", json={"free_slots": 1, "timeout_s": 0})
    assert r.status_code == 403
    for method, path, kw in [
        ("POST", "/tasks", {"json": {"workspace_id": world.workspace_id, "module_id": 1}}),
        ("POST", "/teams", {"json": {"name": "x"}}),
        ("GET", "/users/me", {}),
        ("GET", "/teams", {}),
    ]:
        r = agent.http.request(method, path, **kw)
        assert r.status_code == 403, (path, r.text)
    # nor does it read its team's tasks, members, workspaces or agents
    for method, path, kw in [
        ("GET", "/tasks", {"params": {"team_id": world.team_id}}),
        ("GET", f"/teams/{world.team_id}/members", {}),
        ("GET", f"/teams/{world.team_id}/workspaces", {}),
        ("GET", f"/teams/{world.team_id}/agents", {}),
        ("POST", f"/teams/{world.team_id}/agents", {"json": {"name": "x"}}),
    ]:
        r = agent.http.request(method, path, **kw)
        assert r.status_code == 404, (path, r.text)


def test_task_token_only_in_its_team_and_only_while_it_runs(world: World) -> None:
    world.admin.publish(APPS / "worker")
    module_id = world.admin.ok("GET", "/modules/lookup", params={"slug": "tests/worker"})["id"]
    agent_id, token = world.new_agent_token("proto")
    agent = Client(world.server.url, token)
    agent.ok("POST", "/agents/hello", json={"slots": 1})
    started = world.admin.ok(
        "POST", "/tasks", json={"workspace_id": world.workspace_id, "module_id": module_id}
    )
    got = agent.ok("POST", f"/agents/{agent_id}/poll", json={"free_slots": 1, "timeout_s": 5})
    (assignment,) = got["tasks"]
    assert assignment["task_id"] == started["task_id"]
    app = Client(world.server.url, assignment["token"])
    assert [t["id"] for t in app.ok("GET", "/teams")] == [world.team_id]
    # another team's things are invisible to it
    other = world.admin.ok("POST", "/teams", json={"name": "other"})
    r = app.http.get(f"/teams/{other['id']}/workspaces")
    assert r.status_code == 404
    # it can report progress for its own task
    agent.ok("POST", f"/tasks/{started['task_id']}/events", json={"kind": "started", "pid": 1})
    app.ok("POST", f"/tasks/{started['task_id']}/progress", json={"current": 1, "total": 2})
    # a user token cannot report an app's progress
    r = world.admin.http.post(f"/tasks/{started['task_id']}/progress", json={"current": 1})
    assert r.status_code == 403
    agent.ok("POST", f"/tasks/{started['task_id']}/events", json={"kind": "exited", "exit_code": 0})
    # the task ended: its token is dead
    r = app.http.get("/teams")
    assert r.status_code == 401 and "expired" in _error(r)["message"]


def test_an_agent_can_check_its_token_and_a_revoked_one_says_what_to_do(world: World) -> None:
    agent_id, token = world.new_agent_token("checker")
    agent = Client(world.server.url, token)
    assert agent.ok("GET", "/agents/me")["id"] == agent_id
    assert world.admin.http.get("/agents/me").status_code == 403  # a user is no agent
    r = Client(world.server.url, "aya_revoked-or-unknown").http.get("/agents/me")
    assert r.status_code == 401 and "appyard agent create" in _error(r)["message"]
