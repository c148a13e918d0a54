"""``GET /workspaces/{id}``: a workspace's record for the members of its team; anyone else
gets the 404 of a workspace that never was."""

from __future__ import annotations

from typing import Any

from tests.support import Client, World


def _error(r: Any) -> dict[str, Any]:
    err: dict[str, Any] = r.json()["error"]
    return err


def test_a_workspace_by_its_id(world: World) -> None:
    admin, team, ws = world.admin, world.team_id, world.workspace_id
    got = admin.ok("GET", f"/workspaces/{ws}")
    listed = admin.ok("GET", f"/teams/{team}/workspaces")
    assert got == next(w for w in listed if w["id"] == ws)
    assert (got["team_id"], got["name"]) == (team, "main")

    renamed = admin.ok("PATCH", f"/workspaces/{ws}", json={"description": "the main one"})
    assert admin.ok("GET", f"/workspaces/{ws}") == renamed

    viewer = world.member(f"viewer-ws-{team}", "viewer")
    assert viewer.ok("GET", f"/workspaces/{ws}") == renamed

    # a user of another team only: the same 404 as for an id that never was
    login = f"outsider-ws-{team}"
    admin.ok("POST", "/users", json={"login": login})
    uid = next(u["id"] for u in admin.ok("GET", "/users") if u["login"] == login)
    outsider = Client(
        world.server.url, admin.ok("POST", "/tokens", json={"name": "o", "user_id": uid})["token"]
    )
    theirs = outsider.ok("POST", "/teams", json={"name": f"other-ws-{team}"})["id"]
    their_ws = outsider.ok("POST", f"/teams/{theirs}/workspaces", json={"name": "w"})["id"]
    r = outsider.http.get(f"/workspaces/{ws}")
    never = outsider.http.get(f"/workspaces/{2**31 - 1}")
    assert r.status_code == never.status_code == 404
    assert _error(r)["field"] == _error(never)["field"] == "workspace_id"
    assert _error(r)["message"].replace(str(ws), "N") == _error(never)["message"].replace(
        str(2**31 - 1), "N"
    )
    assert viewer.http.get(f"/workspaces/{their_ws}").status_code == 404
    assert outsider.ok("GET", f"/workspaces/{their_ws}")["team_id"] == theirs

    # an agent's token acts as its agent only; ids are checked like every id
    _, agent_token = world.new_agent_token(f"ws-{team}")
    assert Client(world.server.url, agent_token).http.get(f"/workspaces/{ws}").status_code == 404
    assert Client(world.server.url, None).http.get(f"/workspaces/{ws}").status_code == 401
    for bad in ("0", "-1", str(2**63), "abc"):
        r = admin.http.get(f"/workspaces/{bad}")
        assert r.status_code == 422 and "workspace_id" in r.text, (bad, r.text)
