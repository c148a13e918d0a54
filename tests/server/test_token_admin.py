"""What a team admin needs to run a team for years: tokens listed and revoked, members removed,
users disabled, agent tokens rotated, a team that always keeps an admin; and an app's own token
that manages no tokens."""

from __future__ import annotations

import itertools
from typing import Any

import httpx

from tests.support import APPS, Client, World, pack

_n = itertools.count(1)


def _error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    error: dict[str, Any] = r.json()["error"]
    return error


def _user(world: World, login: str, password: str | None = None) -> tuple[int, Client]:
    """A user in no team, with a token."""
    body: dict[str, Any] = {"login": login}
    if password:
        body["password"] = password
    uid = int(world.admin.ok("POST", "/users", json=body)["id"])
    token = world.admin.ok("POST", "/tokens", json={"name": login, "user_id": uid})["token"]
    return uid, Client(world.server.url, token)


def _unique(name: str) -> str:
    return f"{name}-{next(_n)}"


def _token_id(c: Client) -> int:
    """The id of the token a client uses (the newest of its user's)."""
    return int(max(t["id"] for t in c.ok("GET", "/tokens")))


def _worker(world: World, instance_admin: Client | None = None) -> int:
    """The test worker app, public (so that every team of this test runs it)."""
    admin = instance_admin or world.admin
    archive = pack(APPS / "worker")
    admin.ok(
        "POST", "/modules", files={"archive": ("app.tar.gz", archive)}, data={"public": "true"}
    )
    return int(admin.ok("GET", "/modules/lookup", params={"slug": "tests/worker"})["id"])


def _running_task(
    world: World, starter: Client, agent_name: str, instance_admin: Client | None = None
) -> tuple[int, Client, Client]:
    """A task ``starter`` started, claimed by a protocol-level agent: (task id, the app's own
    token as a client, the agent as a client)."""
    module_id = _worker(world, instance_admin)
    agent_id, token = world.new_agent_token(agent_name)
    agent = Client(world.server.url, token)
    agent.ok("POST", "/agents/hello", json={"slots": 1})
    started = starter.ok(
        "POST", "/tasks", json={"workspace_id": world.workspace_id, "module_id": module_id}
    )
    got = agent.ok("POST", f"/agents/{agent_id}/poll", json={"free_slots": 1, "timeout_s": 5})
    (assignment,) = got["tasks"]
    task_id = int(started["task_id"])
    agent.ok("POST", f"/tasks/{task_id}/events", json={"kind": "started", "pid": 1})
    return task_id, Client(world.server.url, assignment["token"]), agent


def test_an_app_token_manages_no_tokens(world: World) -> None:
    """An app's token listed its user's tokens and revoked them: now a 403, nothing revoked."""
    login = _unique("dev")
    dev = world.member(login, "developer")
    _, app, _ = _running_task(world, dev, _unique("a"))
    dev_token = _token_id(dev)
    assert "manages no tokens" in _error(app.http.get("/tokens"), 403)["message"]
    _error(app.http.delete(f"/tokens/{dev_token}"), 403)
    _error(app.http.post("/tokens", json={"name": "x"}), 403)
    _error(app.http.get("/tokens", params={"team_id": world.team_id}), 403)
    assert dev.ok("GET", "/users/me")["login"] == login  # still alive
    # an agent's token manages none either
    _, agent_token = world.new_agent_token(_unique("b"))
    _error(Client(world.server.url, agent_token).http.get("/tokens"), 403)


def test_a_team_admin_lists_and_revokes_the_teams_tokens(world: World) -> None:
    boss = world.member(_unique("boss"), "admin")  # a team admin, not an instance admin
    dev_login = _unique("dev")
    dev = world.member(dev_login, "developer")
    task_id, app, agent = _running_task(world, dev, _unique("a"))
    listed = boss.ok("GET", "/tokens", params={"team_id": world.team_id})
    kinds = {(t["kind"], t["user_id"], t["agent_id"], t["task_id"]) for t in listed}
    agent_id = agent.ok("GET", "/agents/me")["id"]
    assert ("agent", None, agent_id, None) in kinds
    assert ("task", None, None, task_id) in kinds
    dev_id = next(
        m["user_id"]
        for m in boss.ok("GET", f"/teams/{world.team_id}/members")
        if m["login"] == dev_login
    )
    assert any(t["kind"] == "user" and t["user_id"] == dev_id for t in listed)
    assert all("token" not in t for t in listed)  # never a secret
    # a developer may not
    _error(dev.http.get("/tokens", params={"team_id": world.team_id}), 403)
    by_kind = {t["kind"]: t["id"] for t in listed if t["user_id"] in (None, dev_id)}
    # the app's token, the agent's and the member's (in no other team) die
    boss.ok("DELETE", f"/tokens/{by_kind['task']}")
    _error(app.http.get("/teams"), 401)
    boss.ok("DELETE", f"/tokens/{by_kind['agent']}")
    _error(agent.http.get("/agents/me"), 401)
    boss.ok("DELETE", f"/tokens/{by_kind['user']}")
    _error(dev.http.get("/users/me"), 401)
    # a member who is also in a team boss does not run: its token acts there too, so no
    wide_login = _unique("wide")
    wide = world.member(wide_login, "viewer")
    elsewhere = world.admin.ok("POST", "/teams", json={"name": "elsewhere"})
    world.admin.ok(
        "POST", f"/teams/{elsewhere['id']}/members", json={"login": wide_login, "role": "viewer"}
    )
    e = _error(boss.http.delete(f"/tokens/{_token_id(wide)}"), 403)
    assert str(elsewhere["id"]) in e["message"] and "instance admin" in e["message"]
    assert wide.ok("GET", "/users/me")["login"] == wide_login
    # an instance admin's token: not for a team admin; another team's agent: not seen
    _error(boss.http.delete(f"/tokens/{_token_id(world.admin)}"), 403)
    far_agent = world.admin.ok("POST", f"/teams/{elsewhere['id']}/agents", json={"name": "far"})
    (far,) = [
        t
        for t in world.admin.ok("GET", "/tokens", params={"team_id": elsewhere["id"]})
        if t["agent_id"] == far_agent["id"]
    ]
    _error(boss.http.delete(f"/tokens/{far['id']}"), 404)
    # an instance admin revokes any
    world.admin.ok("DELETE", f"/tokens/{_token_id(wide)}")
    _error(wide.http.get("/users/me"), 401)


def test_remove_a_member_and_the_team_keeps_an_admin(world: World) -> None:
    boss_id, boss = _user(world, _unique("boss"))
    team = boss.ok("POST", "/teams", json={"name": "boss's"})["id"]
    ws = boss.ok("POST", f"/teams/{team}/workspaces", json={"name": "w"})["id"]
    # the only admin may neither leave nor step down
    e = _error(boss.http.delete(f"/teams/{team}/members/{boss_id}"), 409)
    assert "no admin left" in e["message"]
    me = boss.ok("GET", "/users/me")["login"]
    _error(boss.http.post(f"/teams/{team}/members", json={"login": me, "role": "viewer"}), 409)
    # a member removed loses the team, its running app's token included
    dev_login = _unique("dev")
    dev_id, dev = _user(world, dev_login)
    world.admin.ok("POST", f"/teams/{team}/members", json={"login": dev_login, "role": "developer"})
    w = World(world.server, boss, team, ws, world.tmp)
    _, app, _ = _running_task(w, dev, _unique("a"), world.admin)
    assert [t["id"] for t in app.ok("GET", "/teams")] == [team]
    _error(dev.http.delete(f"/teams/{team}/members/{boss_id}"), 403)  # not an admin
    boss.ok("DELETE", f"/teams/{team}/members/{dev_id}")
    _error(dev.http.get(f"/teams/{team}/workspaces"), 404)
    _error(app.http.get(f"/teams/{team}/workspaces"), 404)
    _error(boss.http.delete(f"/teams/{team}/members/{dev_id}"), 404)  # not a member any more
    # a disabled admin counts as none
    alice_login = _unique("alice")
    alice_id, _ = _user(world, alice_login)
    world.admin.ok("POST", f"/teams/{team}/members", json={"login": alice_login, "role": "admin"})
    world.admin.ok("POST", f"/users/{alice_id}/disable")
    _error(boss.http.delete(f"/teams/{team}/members/{boss_id}"), 409)
    world.admin.ok("POST", f"/users/{alice_id}/enable")
    # with another admin, one may leave (a member removes itself)
    boss.ok("DELETE", f"/teams/{team}/members/{boss_id}")
    _error(boss.http.get(f"/teams/{team}/members"), 404)


def test_add_member_does_not_tell_who_has_an_account(world: World) -> None:
    """A team admin who is no instance admin learnt who has an account (201 vs 404): now
    a login it cannot see answers as one that does not exist; a co-member of another of its
    teams it adds. An instance admin (who lists users anyway) still sees 404 vs 201."""
    _, boss = _user(world, _unique("boss"))
    team = boss.ok("POST", "/teams", json={"name": "mine"})["id"]
    hidden = _unique("exists")
    _user(world, hidden)
    ghost = _unique("ghost")
    a = boss.http.post(f"/teams/{team}/members", json={"login": hidden, "role": "viewer"})
    b = boss.http.post(f"/teams/{team}/members", json={"login": ghost, "role": "viewer"})
    assert a.status_code == b.status_code == 404
    assert a.json()["error"]["message"].replace(hidden, "X") == b.json()["error"][
        "message"
    ].replace(ghost, "X")
    # a member of another of boss's teams is seen already: boss adds it
    other = boss.ok("POST", "/teams", json={"name": "other"})["id"]
    world.admin.ok("POST", f"/teams/{other}/members", json={"login": hidden, "role": "viewer"})
    added = boss.ok("POST", f"/teams/{team}/members", json={"login": hidden, "role": "viewer"})
    assert added["login"] == hidden
    # an instance admin sees who exists
    _error(world.admin.http.post(f"/teams/{team}/members", json={"login": ghost}), 404)
    third = _unique("third")
    _user(world, third)
    world.admin.ok("POST", f"/teams/{team}/members", json={"login": third})


def test_disabling_a_user_kills_every_token_of_it(world: World) -> None:
    login = _unique("leaver")
    dev = world.member(login, "developer")
    uid = next(u["id"] for u in world.admin.ok("GET", "/users") if u["login"] == login)
    world.admin.ok("POST", f"/users/{uid}/enable")  # a no-op on an enabled user
    _, app, _ = _running_task(world, dev, _unique("a"))
    # a task it started and that no agent took yet: its token is minted after the disabling
    module_id = _worker(world)
    queued_agent_id, queued_agent_token = world.new_agent_token(_unique("later"))
    dev.ok(
        "POST",
        "/tasks",
        json={
            "workspace_id": world.workspace_id,
            "module_id": module_id,
            "agent_id": queued_agent_id,
        },
    )
    # only an instance admin disables, and not itself
    _error(dev.http.post(f"/users/{uid}/disable"), 403)
    me = world.admin.ok("GET", "/users/me")["id"]
    _error(world.admin.http.post(f"/users/{me}/disable"), 409)
    info = world.admin.ok("POST", f"/users/{uid}/disable")
    assert info["disabled"] is True
    assert "disabled" in _error(dev.http.get("/users/me"), 401)["message"]
    assert "disabled" in _error(app.http.get("/teams"), 401)["message"]
    later = Client(world.server.url, queued_agent_token)
    later.ok("POST", "/agents/hello", json={"slots": 1})
    got = later.ok(
        "POST", f"/agents/{queued_agent_id}/poll", json={"free_slots": 1, "timeout_s": 5}
    )
    (assignment,) = got["tasks"]
    _error(Client(world.server.url, assignment["token"]).http.get("/teams"), 401)
    # no new token for it, and it is listed as disabled
    _error(world.admin.http.post("/tokens", json={"name": "x", "user_id": uid}), 409)
    members = world.admin.ok("GET", f"/teams/{world.team_id}/members")
    assert next(m for m in members if m["user_id"] == uid)["disabled"] is True
    # enabled again: its old tokens stay dead, new ones work
    world.admin.ok("POST", f"/users/{uid}/enable")
    _error(dev.http.get("/users/me"), 401)
    token = world.admin.ok("POST", "/tokens", json={"name": "again", "user_id": uid})["token"]
    assert Client(world.server.url, token).ok("GET", "/users/me")["login"] == login


def test_a_disabled_user_cannot_sign_in(world: World) -> None:
    login, password = _unique("pw"), "a-long-password"
    uid, _ = _user(world, login, password)
    anon = Client(world.server.url, None)
    assert anon.ok("POST", "/auth/login", json={"login": login, "password": password})["token"]
    world.admin.ok("POST", f"/users/{uid}/disable")
    r = anon.http.post("/auth/login", json={"login": login, "password": password})
    assert _error(r, 401)["message"] == "Wrong login or password."


def test_rotating_an_agent_token(world: World) -> None:
    boss = world.member(_unique("boss"), "admin")
    dev = world.member(_unique("dev"), "developer")
    agent_id, old = world.new_agent_token(_unique("gpu"))
    old_agent = Client(world.server.url, old)
    assert old_agent.ok("GET", "/agents/me")["id"] == agent_id
    _error(dev.http.post(f"/agents/{agent_id}/token"), 403)
    _, outsider = _user(world, _unique("out"))
    _error(outsider.http.post(f"/agents/{agent_id}/token"), 404)
    _error(old_agent.http.post(f"/agents/{agent_id}/token"), 403)
    created = boss.ok("POST", f"/agents/{agent_id}/token")
    assert created["kind"] == "agent" and created["agent_id"] == agent_id
    assert created["token"].startswith("aya_")
    _error(old_agent.http.get("/agents/me"), 401)
    assert Client(world.server.url, created["token"]).ok("GET", "/agents/me")["id"] == agent_id
