"""Changing what exists: a team's name, a workspace's name and description, a user's display
name and password, a member's role. Each by the roles allowed (others: 403, or 404 outside the
team), bad input a 422 naming the field, a taken name a 409, and a refusal changes nothing.
On SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.support import Client, World

MAX_ID = 2**31 - 1


def _err(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    err: dict[str, Any] = r.json()["error"]
    assert err["message"]
    return err


def _user(world: World, login: str) -> tuple[int, Client]:
    """A user in no team of the world's, and a client with its token."""
    admin = world.admin
    created = admin.ok("POST", "/users", json={"login": login, "password": "first-password"})
    token = admin.ok("POST", "/tokens", json={"name": login, "user_id": created["id"]})["token"]
    return int(created["id"]), Client(world.server.url, token)


def _uid(world: World, login: str) -> int:
    return int(next(u["id"] for u in world.admin.ok("GET", "/users") if u["login"] == login))


def test_team_rename(world: World) -> None:
    admin, team = world.admin, world.team_id
    done = admin.ok("PATCH", f"/teams/{team}", json={"name": "renamed team"})
    assert (done["id"], done["name"], done["role"]) == (team, "renamed team", "admin")
    assert next(t for t in admin.ok("GET", "/teams") if t["id"] == team)["name"] == "renamed team"

    developer = world.member(f"dev-team-{team}", "developer")
    e = _err(developer.http.patch(f"/teams/{team}", json={"name": "mine"}), 403)
    assert "admin" in e["message"]
    _, outsider = _user(world, f"out-team-{team}")
    e = _err(outsider.http.patch(f"/teams/{team}", json={"name": "mine"}), 404)
    assert e["field"] == "team_id"
    _, agent_token = world.new_agent_token(f"rename-{team}")
    _err(
        Client(world.server.url, agent_token).http.patch(f"/teams/{team}", json={"name": "a"}), 403
    )

    for body, field in [
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "a\x00b"}, "name"),
        ({}, "name"),
        ({"name": "ok", "description": "teams have none"}, "description"),
    ]:
        assert _err(admin.http.patch(f"/teams/{team}", json=body), 422)["field"] == field, body
    assert _err(admin.http.patch(f"/teams/{MAX_ID + 1}", json={"name": "a"}), 422)["field"] == (
        "team_id"
    )
    assert _err(admin.http.patch(f"/teams/{MAX_ID}", json={"name": "a"}), 404)["field"] == (
        "team_id"
    )
    # nothing of the refusals was written
    assert next(t for t in admin.ok("GET", "/teams") if t["id"] == team)["name"] == "renamed team"


def test_workspace_rename_and_description(world: World) -> None:
    admin, team = world.admin, world.team_id
    ws = world.workspace_id
    other = admin.ok("POST", f"/teams/{team}/workspaces", json={"name": "other"})["id"]
    developer = world.member(f"dev-ws-{team}", "developer")
    done = developer.ok("PATCH", f"/workspaces/{ws}", json={"name": "first", "description": "d1"})
    assert (done["id"], done["team_id"], done["name"], done["description"]) == (
        ws,
        team,
        "first",
        "d1",
    )
    # one field alone; its own name again is no conflict
    assert admin.ok("PATCH", f"/workspaces/{ws}", json={"description": "d2"})["name"] == "first"
    assert admin.ok("PATCH", f"/workspaces/{ws}", json={"name": "first"})["description"] == "d2"

    e = _err(admin.http.patch(f"/workspaces/{ws}", json={"name": "other"}), 409)
    assert e["field"] == "name" and "other" in e["message"]
    e = _err(
        admin.http.patch(f"/workspaces/{ws}", json={"name": "other", "description": "lost"}), 409
    )
    viewer = world.member(f"viewer-ws-{team}", "viewer")
    assert (
        "developer"
        in _err(viewer.http.patch(f"/workspaces/{ws}", json={"name": "v"}), 403)["message"]
    )
    _, outsider = _user(world, f"out-ws-{team}")
    e = _err(outsider.http.patch(f"/workspaces/{ws}", json={"name": "mine"}), 404)
    assert e["field"] == "workspace_id"
    for body, field in [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": None, "description": None}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"description": "x" * 5001}, "description"),
        ({"description": "a\x00b"}, "description"),
        ({"name": "ok", "team_id": other}, "team_id"),
    ]:
        assert _err(admin.http.patch(f"/workspaces/{ws}", json=body), 422)["field"] == field, body
    assert _err(admin.http.patch(f"/workspaces/{MAX_ID + 1}", json={"name": "a"}), 422)[
        "field"
    ] == ("workspace_id")
    listed = {w["id"]: w for w in admin.ok("GET", f"/teams/{team}/workspaces")}
    assert (listed[ws]["name"], listed[ws]["description"]) == ("first", "d2")
    assert listed[other]["name"] == "other"

    # a new workspace cannot take the name either, and a rename frees the old one
    _err(admin.http.post(f"/teams/{team}/workspaces", json={"name": "first"}), 409)
    admin.ok("PATCH", f"/workspaces/{ws}", json={"name": "second"})
    admin.ok("POST", f"/teams/{team}/workspaces", json={"name": "first"})


def test_racing_renames_to_one_name_leave_one_winner(world: World) -> None:
    admin, team = world.admin, world.team_id
    ids = [
        admin.ok("POST", f"/teams/{team}/workspaces", json={"name": f"racer {i}"})["id"]
        for i in range(6)
    ]
    barrier = threading.Barrier(len(ids))

    def rename(ws: int) -> int:
        barrier.wait()
        return admin.http.patch(f"/workspaces/{ws}", json={"name": "the one"}).status_code

    with ThreadPoolExecutor(max_workers=len(ids)) as pool:
        codes = sorted(pool.map(rename, ids))
    assert codes == [200] + [409] * (len(ids) - 1)
    names = [w["name"] for w in admin.ok("GET", f"/teams/{team}/workspaces")]
    assert names.count("the one") == 1


def test_user_name_and_password(world: World) -> None:
    admin, team = world.admin, world.team_id
    login = f"self-{team}"
    uid, me = _user(world, login)
    done = me.ok("PATCH", f"/users/{uid}", json={"name": "Jo Smith"})
    assert (done["id"], done["login"], done["name"]) == (uid, login, "Jo Smith")
    assert me.ok("GET", "/users/me")["name"] == "Jo Smith"
    me.ok("PATCH", f"/users/{uid}", json={"password": "second-password"})
    anyone = Client(world.server.url, None)
    assert anyone.http.post(
        "/auth/login", json={"login": login, "password": "second-password"}
    ).is_success
    _err(anyone.http.post("/auth/login", json={"login": login, "password": "first-password"}), 401)
    assert me.ok("GET", "/users/me")["id"] == uid  # its tokens live on

    # an instance admin changes anyone; nobody else changes another user
    assert admin.ok("PATCH", f"/users/{uid}", json={"name": "By Admin"})["name"] == "By Admin"
    admin.ok("POST", f"/teams/{team}/members", json={"login": login, "role": "viewer"})
    teammate = world.member(f"mate-{team}", "admin")
    e = _err(teammate.http.patch(f"/users/{uid}", json={"name": "x"}), 403)
    assert e["field"] == "user_id"
    _, outsider = _user(world, f"out-user-{team}")
    assert _err(outsider.http.patch(f"/users/{uid}", json={"name": "x"}), 404)["field"] == (
        "user_id"
    )
    assert _err(me.http.patch(f"/users/{MAX_ID}", json={"name": "x"}), 404)["field"] == "user_id"
    _, agent_token = world.new_agent_token(f"user-{team}")
    agent = Client(world.server.url, agent_token)
    _err(agent.http.patch(f"/users/{uid}", json={"name": "x"}), 403)

    for body, field in [
        ({}, "name"),
        ({"password": "short"}, "password"),
        ({"password": "x" * 201}, "password"),
        ({"name": ""}, "name"),
        ({"name": "n" * 201}, "name"),
        ({"name": "a\x00b"}, "name"),
        ({"login": "renamed"}, "login"),
        ({"is_admin": True}, "is_admin"),
    ]:
        assert _err(me.http.patch(f"/users/{uid}", json=body), 422)["field"] == field, body
    assert _err(me.http.patch("/users/0", json={"name": "x"}), 422)["field"] == "user_id"
    got = next(u for u in admin.ok("GET", "/users") if u["id"] == uid)
    assert (got["login"], got["name"], got["is_admin"]) == (login, "By Admin", False)


def test_member_role_change(world: World) -> None:
    admin, team = world.admin, world.team_id
    world.member(f"role-{team}", "viewer")
    uid = _uid(world, f"role-{team}")
    done = admin.ok("PATCH", f"/teams/{team}/members/{uid}", json={"role": "developer"})
    assert (done["user_id"], done["login"], done["role"]) == (uid, f"role-{team}", "developer")
    roles = {m["user_id"]: m["role"] for m in admin.ok("GET", f"/teams/{team}/members")}
    assert roles[uid] == "developer"

    developer = world.member(f"dev-role-{team}", "developer")
    e = _err(developer.http.patch(f"/teams/{team}/members/{uid}", json={"role": "admin"}), 403)
    assert "admin" in e["message"]
    outsider_id, outsider = _user(world, f"out-role-{team}")
    _err(outsider.http.patch(f"/teams/{team}/members/{uid}", json={"role": "admin"}), 404)
    e = _err(admin.http.patch(f"/teams/{team}/members/{outsider_id}", json={"role": "admin"}), 404)
    assert e["field"] == "user_id" and "not a member" in e["message"]
    for body, field in [({}, "role"), ({"role": "owner"}, "role"), ({"role": None}, "role")]:
        r = admin.http.patch(f"/teams/{team}/members/{uid}", json=body)
        assert _err(r, 422)["field"] == field, body

    # the team keeps an enabled admin: its only one cannot step down
    members = admin.ok("GET", f"/teams/{team}/members")
    (only_admin,) = [m["user_id"] for m in members if m["role"] == "admin"]
    e = _err(admin.http.patch(f"/teams/{team}/members/{only_admin}", json={"role": "viewer"}), 409)
    assert e["field"] == "user_id"
    # with another admin it can; then the new admin runs the team
    admin.ok("PATCH", f"/teams/{team}/members/{uid}", json={"role": "admin"})
    admin.ok("PATCH", f"/teams/{team}/members/{only_admin}", json={"role": "viewer"})
    roles = {m["user_id"]: m["role"] for m in admin.ok("GET", f"/teams/{team}/members")}
    assert (roles[uid], roles[only_admin]) == ("admin", "viewer")
