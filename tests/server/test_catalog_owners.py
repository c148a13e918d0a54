"""The catalog is owned (issue 10, point 6): a slug's prefix belongs to one team, ``appyard/``
to the bundled apps; a module is seen, read, downloaded only by its team, unless an instance
admin published it as public; a slug too long to look up is refused at publish."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import appyard
from tests.support import APPS, Client, World, pack

_n = itertools.count(1)
BUNDLED_HELLO = Path(appyard.__file__).parent / "ecosystem" / "hello"


def _team_with_developer(world: World, name: str) -> tuple[int, Client]:
    """A second team of the server, and a developer who is a member of it only."""
    team = world.admin.ok("POST", "/teams", json={"name": name})
    login = f"{name}-dev"
    world.admin.ok("POST", "/users", json={"login": login})
    world.admin.ok(
        "POST", f"/teams/{team['id']}/members", json={"login": login, "role": "developer"}
    )
    uid = next(u["id"] for u in world.admin.ok("GET", "/users") if u["login"] == login)
    token = world.admin.ok("POST", "/tokens", json={"name": login, "user_id": uid})["token"]
    return int(team["id"]), Client(world.server.url, token)


def _publish(client: Client, slug: str, **form: Any) -> Any:
    data = pack(APPS / "worker", {"slug": slug, "name": f"Worker {slug[:50]}"})
    fields = {k: (None, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in form.items()}
    return client.http.post("/modules", files={"archive": ("app.tar.gz", data), **fields})


def _error(r: Any) -> dict[str, Any]:
    body: dict[str, Any] = r.json()["error"]
    return body


def test_a_team_cannot_publish_under_appyard_or_another_teams_prefix(world: World) -> None:
    n = next(_n)
    team_a, alice = _team_with_developer(world, f"own-a{n}")
    _, bob = _team_with_developer(world, f"own-b{n}")
    hello = world.admin.publish(BUNDLED_HELLO)  # as `appyard up` does
    # the reserved prefix: team B dressing up as a bundled app is refused, whatever the case
    for slug in ("appyard/hello", f"appyard/official-{n}", f"AppYard/official-{n}"):
        r = _publish(bob, slug)
        assert r.status_code == 403, r.text
        assert _error(r)["field"] == "config.slug" and "reserved" in _error(r)["message"]
    # the first team to publish under a prefix owns it
    r = _publish(alice, f"acme{n}/tool")
    assert r.status_code == 201, r.text
    for slug in (f"acme{n}/other", f"ACME{n}/tool2"):
        r = _publish(bob, slug)
        assert r.status_code == 403, r.text
        assert f"team {team_a}" in _error(r)["message"]
    # nor may B add a release to A's module
    r = _publish(bob, f"acme{n}/tool")
    assert r.status_code == 403, r.text
    # A goes on publishing under its prefix, B under one of its own
    assert _publish(alice, f"acme{n}/second").status_code == 201
    assert _publish(bob, f"bobs{n}/tool").status_code == 201
    # the bundled app is untouched, and public: every team sees it
    info = bob.ok("GET", f"/modules/{hello['module_id']}")
    assert info["slug"] == "appyard/hello" and info["meta"]["public"] is True
    assert info["meta"]["team_id"] is None and len(info["meta"]["releases"]) == 1


def test_a_private_module_is_not_seen_by_another_team(world: World) -> None:
    n = next(_n)
    team_a, alice = _team_with_developer(world, f"vis-a{n}")
    _, bob = _team_with_developer(world, f"vis-b{n}")
    slug = f"secret{n}/app"
    made = _publish(alice, slug)
    assert made.status_code == 201, made.text
    module_id, sha = made.json()["module_id"], made.json()["release"]["sha256"]
    # its team lists, reads, looks up and downloads it
    assert slug in {m["slug"] for m in alice.ok("GET", "/modules")}
    info = alice.ok("GET", f"/modules/{module_id}")
    assert info["meta"]["team_id"] == team_a and info["meta"]["public"] is False
    assert alice.ok("GET", "/modules/lookup", params={"slug": slug})["id"] == module_id
    assert alice.http.get(f"/releases/{sha}/archive").status_code == 200
    # another team's user: as if it did not exist
    assert slug not in {m["slug"] for m in bob.ok("GET", "/modules")}
    assert slug not in {m["slug"] for m in bob.ok("GET", "/modules", params={"q": "secret"})}
    for path, params in (
        (f"/modules/{module_id}", {}),
        ("/modules/lookup", {"slug": slug}),
        (f"/releases/{sha}/archive", {}),
    ):
        r = bob.http.get(path, params=params)
        assert r.status_code == 404, (path, r.text)
    # a user in no team at all neither
    world.admin.ok("POST", "/users", json={"login": f"nobody-{n}"})
    uid = next(u["id"] for u in world.admin.ok("GET", "/users") if u["login"] == f"nobody-{n}")
    nobody = Client(
        world.server.url,
        world.admin.ok("POST", "/tokens", json={"name": "x", "user_id": uid})["token"],
    )
    assert nobody.http.get(f"/releases/{sha}/archive").status_code == 404
    assert nobody.http.get(f"/modules/{module_id}").status_code == 404
    # agents: the owning team's downloads it, another team's gets a 404
    mine = world.admin.ok("POST", f"/teams/{team_a}/agents", json={"name": "a"})["token"]
    other = world.admin.ok("POST", f"/teams/{world.team_id}/agents", json={"name": f"o{n}"})
    assert Client(world.server.url, mine).http.get(f"/releases/{sha}/archive").status_code == 200
    r = Client(world.server.url, other["token"]).http.get(f"/releases/{sha}/archive")
    assert r.status_code == 404
    # only an instance admin makes it public; then every team sees it
    r = _publish(alice, slug, public=True)
    assert r.status_code == 403 and _error(r)["field"] == "public"
    assert world.admin.http.post(
        "/modules",
        files={
            "archive": (
                "a.tar.gz",
                pack(APPS / "worker", {"slug": slug, "name": f"Worker {slug[:50]}"}),
            ),
            "public": (None, "true"),
        },
    ).status_code in (200, 201)
    assert bob.ok("GET", f"/modules/{module_id}")["meta"]["public"] is True
    assert bob.http.get(f"/releases/{sha}/archive").status_code == 200


def test_bundled_apps_are_public_and_a_developer_of_two_teams_says_which(world: World) -> None:
    n = next(_n)
    _, carol = _team_with_developer(world, f"two-a{n}")
    # bundled apps (published by the instance admin) are seen by every team
    world.admin.publish(BUNDLED_HELLO)
    assert "appyard/hello" in {m["slug"] for m in carol.ok("GET", "/modules")}
    # a developer of two teams must say which one a new module is for
    second = world.admin.ok("POST", "/teams", json={"name": f"two-b{n}"})["id"]
    world.admin.ok(
        "POST", f"/teams/{second}/members", json={"login": f"two-a{n}-dev", "role": "developer"}
    )
    r = _publish(carol, f"carol{n}/app")
    assert r.status_code == 422 and _error(r)["field"] == "team_id", r.text
    r = _publish(carol, f"carol{n}/app", team_id=second)
    assert r.status_code == 201, r.text
    assert carol.ok("GET", f"/modules/{r.json()['module_id']}")["meta"]["team_id"] == second
    # and may not publish for a team it is not a developer of
    r = _publish(carol, f"carol{n}/other", team_id=world.team_id)
    assert r.status_code == 403 and _error(r)["field"] == "team_id", r.text


def test_a_slug_too_long_to_look_up_is_refused(world: World) -> None:
    _, dave = _team_with_developer(world, f"long{next(_n)}")
    for slug in ("o/" + "n" * 9998, "o" * 9998 + "/n", "o" * 65 + "/n"):
        r = _publish(dave, slug)
        assert r.status_code == 422, r.text
        assert _error(r)["field"] == "config.slug"
    names = {m["slug"] for m in world.admin.ok("GET", "/modules")}
    assert not any(len(s) > 200 for s in names)


def test_a_private_module_runs_in_its_own_team_only(world: World) -> None:
    n = next(_n)
    team_a, alice = _team_with_developer(world, f"run-a{n}")
    team_b, bob = _team_with_developer(world, f"run-b{n}")
    made = _publish(alice, f"private{n}/app")
    assert made.status_code == 201, made.text
    module_id = made.json()["module_id"]
    ws_a = alice.ok("POST", f"/teams/{team_a}/workspaces", json={"name": "a"})["id"]
    ws_b = bob.ok("POST", f"/teams/{team_b}/workspaces", json={"name": "b"})["id"]
    # another team knows the id: a start there is refused as if the module did not exist, and
    # so is an instance admin's start in a team whose agents could not fetch it
    for client, workspace in ((bob, ws_b), (world.admin, world.workspace_id)):
        r = client.http.post("/tasks", json={"workspace_id": workspace, "module_id": module_id})
        assert r.status_code == 404, r.text
        assert _error(r)["field"] == "module_id"
        r = client.http.post(
            "/tasks",
            json={"workspace_id": workspace, "module_id": module_id, "version": "no-such"},
        )
        assert r.status_code == 404 and "no-such" not in r.text, r.text
    # its own team starts it
    r = alice.http.post("/tasks", json={"workspace_id": ws_a, "module_id": module_id})
    assert r.status_code == 201, r.text
