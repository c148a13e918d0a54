"""Issue 10 (point 7): an idempotency key reused with different arguments is a 409, not the
old session returned silently. Passes once ``start`` compares a retry with the first start
(the change is in the report of this issue's server-hardening work)."""

from __future__ import annotations

from tests.support import APPS, World


def _count(world: World) -> int:
    return len(world.admin.ok("GET", "/tasks", params={"team_id": world.team_id})["items"])


def test_a_reused_key_with_other_params_is_a_409(world: World) -> None:
    mid = world.admin.publish(APPS / "worker")["module_id"]
    body = {
        "workspace_id": world.workspace_id,
        "module_id": mid,
        "idempotency_key": "reuse-1",
        "params": {"state": {"n": 1}},
    }
    first = world.admin.ok("POST", "/tasks", json=body)
    # the same start again: the first session (a retry), whether params are wrapped or bare
    assert world.admin.ok("POST", "/tasks", json=body)["task_id"] == first["task_id"]
    bare = {**body, "params": {"n": 1}}
    assert world.admin.ok("POST", "/tasks", json=bare)["task_id"] == first["task_id"]
    # other params, another name: a 409 on idempotency_key, and nothing is started
    for change in ({"params": {"state": {"n": 2}}}, {"task_name": "other"}):
        r = world.admin.http.post("/tasks", json={**body, **change})
        assert r.status_code == 409, r.text
        error = r.json()["error"]
        assert error["field"] == "idempotency_key" and error["code"] == "conflict", error
    assert _count(world) == 1
