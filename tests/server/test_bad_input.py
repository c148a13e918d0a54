"""Bad input gets a 4xx naming the field and the problem, and writes nothing."""

from __future__ import annotations

import io
import json
import tarfile

from tests.support import APPS, World, tar_of


def _err(r, status: int):  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    return r.json()["error"]


def _task_count(world: World) -> int:
    return len(world.admin.ok("GET", "/tasks", params={"team_id": world.team_id})["items"])


def _publish_raw(world: World, data: bytes):  # type: ignore[no-untyped-def]
    return world.admin.http.post("/modules", files={"archive": ("a.tar.gz", data)})


def test_publish_refuses_bad_archives(world: World) -> None:
    before = world.admin.ok("GET", "/modules")
    e = _err(_publish_raw(world, b"not a tar"), 422)
    assert e["field"] == "archive"
    e = _err(_publish_raw(world, tar_of({"main.py": b"print(1)"})), 422)
    assert e["field"] == "config.json" and "no config.json" in e["message"]
    e = _err(_publish_raw(world, tar_of({"config.json": b"{nope", "main.py": b""})), 422)
    assert e["field"] == "config.json" and "not valid JSON" in e["message"]
    good = {"name": "X", "slug": "t/x", "main_script": "main.py"}
    for broken, field in [
        ({**good, "name": ""}, "config.name"),
        ({**good, "slug": "no-owner"}, "config.slug"),
        ({k: v for k, v in good.items() if k != "main_script"}, "config.main_script"),
        ({**good, "main_script": "missing.py"}, "config.main_script"),
        ({**good, "modal_template_state": [1]}, "config.modal_template_state"),
        ({**good, "stop_grace_s": -1}, "config.stop_grace_s"),
        ({**good, "context_menu": {"target": 3}}, "config.context_menu.target"),
    ]:
        data = tar_of({"config.json": json.dumps(broken).encode(), "main.py": b""})
        assert _err(_publish_raw(world, data), 422)["field"] == field, broken
    escape = tar_of({"config.json": json.dumps(good).encode(), "main.py": b"", "../evil": b"x"})
    assert "escapes" in _err(_publish_raw(world, escape), 422)["message"]
    assert world.admin.ok("GET", "/modules") == before


def test_publish_twice_makes_one_release(world: World) -> None:
    first = world.admin.publish(APPS / "worker")
    again = world.admin.publish(APPS / "worker")
    assert again["created"] is False and again["release"]["sha256"] == first["release"]["sha256"]
    changed = world.admin.publish(APPS / "worker", description="changed")
    assert changed["created"] is True
    info = world.admin.ok("GET", f"/modules/{first['module_id']}")
    versions = [r["version"] for r in info["meta"]["releases"]]
    assert versions[0] == changed["release"]["version"]  # newest first
    assert info["config"]["description"] == "changed"
    old = world.admin.ok("GET", f"/modules/{first['module_id']}", params={"version": versions[-1]})
    assert old["config"]["description"] != "changed"


def test_start_refuses_bad_params_and_writes_nothing(world: World) -> None:
    export = world.admin.publish(APPS / "export-like")
    mid = export["module_id"]
    ws = world.workspace_id
    other_team = world.admin.ok("POST", "/teams", json={"name": "other"})
    foreign_agent = world.admin.ok(
        "POST", f"/teams/{other_team['id']}/agents", json={"name": "foreign"}
    )
    # a real project of the team: each case below is refused for what it is about, not the target
    pid = world.admin.ok("POST", "/projects", json={"workspace_id": ws, "name": "bad-input"})["id"]
    did = world.admin.ok("POST", "/datasets", json={"project_id": pid, "name": "ds"})["id"]
    before = _task_count(world)
    cases = [
        ({"workspace_id": ws, "module_id": 999999}, 404, "module_id"),
        ({"workspace_id": 999999, "module_id": mid}, 404, "workspace_id"),
        (
            {"workspace_id": ws, "module_id": mid, "version": "nope", "params": {"projectId": pid}},
            404,
            "version",
        ),
        ({"workspace_id": ws, "module_id": mid, "params": {}}, 422, "params.state"),
        (
            {"workspace_id": ws, "module_id": mid, "params": {"projectId": "seven"}},
            422,
            "params.state.projectId",
        ),
        (
            {"workspace_id": ws, "module_id": mid, "params": {"projectId": 999999}},
            422,
            "params.state.projectId",
        ),
        (
            {"workspace_id": ws, "module_id": mid, "params": {"projectId": pid, "datasetId": did}},
            422,
            "params.state",
        ),
        (
            {
                "workspace_id": ws,
                "module_id": mid,
                "params": {"projectId": pid, "trainSplitCoef": "0.7"},
            },
            422,
            "params.state.trainSplitCoef",
        ),
        (
            {
                "workspace_id": ws,
                "module_id": mid,
                "params": {"projectId": pid, "addPrefixToImages": 1},
            },
            422,
            "params.state.addPrefixToImages",
        ),
        (
            {
                "workspace_id": ws,
                "module_id": mid,
                "agent_id": foreign_agent["id"],
                "params": {"projectId": pid},
            },
            422,
            "agent_id",
        ),
        ({"workspace_id": ws, "module_id": "x"}, 422, "module_id"),
        ({"workspace_id": ws}, 422, "module_id"),
        ({"workspace_id": ws, "module_id": mid, "surprise": 1}, 422, "surprise"),
    ]
    for body, status, field in cases:
        e = _err(world.admin.http.post("/tasks", json=body), status)
        assert e["field"] == field, (body, e)
        assert e["message"], body
    assert _task_count(world) == before


def test_unknown_things_are_404_with_a_field(world: World) -> None:
    c = world.admin.http
    assert _err(c.get("/modules/lookup", params={"slug": "nobody/nothing"}), 404)["message"] == (
        "Module nobody/nothing not found in ecosystem"
    )
    assert _err(c.get("/modules/424242"), 404)["field"] == "module_id"
    assert _err(c.get("/tasks/424242"), 404)["field"] == "task_id"
    assert _err(c.post("/tasks/424242/stop"), 404)["field"] == "task_id"
    assert (
        _err(c.get("/tasks", params={"team_id": world.team_id, "status": "done"}), 422)["field"]
        == "status"
    )
    assert _err(c.get("/tasks/1/wait", params={"until": "bogus"}), 422)["field"] == "until"


def test_illegal_transition_is_409(world: World) -> None:
    world.admin.publish(APPS / "worker")
    mid = world.admin.ok("GET", "/modules/lookup", params={"slug": "tests/worker"})["id"]
    agent_id, token = world.new_agent_token("proto")
    from tests.support import Client

    agent = Client(world.server.url, token)
    agent.ok("POST", "/agents/hello", json={"slots": 1})
    started = world.admin.ok(
        "POST", "/tasks", json={"workspace_id": world.workspace_id, "module_id": mid}
    )
    tid = started["task_id"]
    got = agent.ok("POST", f"/agents/{agent_id}/poll", json={"free_slots": 1, "timeout_s": 5})
    app = Client(world.server.url, got["tasks"][0]["token"])
    # ready() before the app started: only a running (started) session can be ready
    e = _err(app.http.post(f"/tasks/{tid}/ready", json={}), 409)
    assert e["field"] == "status" and "consumed" in e["message"]
    agent.ok("POST", f"/tasks/{tid}/events", json={"kind": "started", "pid": 1})
    agent.ok("POST", f"/tasks/{tid}/events", json={"kind": "exited", "exit_code": 0})
    assert world.admin.ok("GET", f"/tasks/{tid}")["status"] == "finished"
    # stopping a finished task changes nothing and says so
    assert world.admin.ok("POST", f"/tasks/{tid}/stop")["status"] == "finished"
    # a log batch that skips ahead is refused with where the log ends
    e = _err(
        agent.http.post(
            f"/tasks/{tid}/logs",
            json={
                "offset": 50,
                "end_offset": 60,
                "lines": [{"t": "2026-01-01T00:00:00Z", "text": "x"}],
            },
        ),
        409,
    )
    assert e["field"] == "offset"


def test_an_offline_agent_is_not_an_error(world: World) -> None:
    """A task for an agent that is offline waits queued; it is no error."""
    mid = world.admin.publish(APPS / "worker")["module_id"]
    agent_id, _ = world.new_agent_token("never-online")
    started = world.admin.ok(
        "POST",
        "/tasks",
        json={"workspace_id": world.workspace_id, "module_id": mid, "agent_id": agent_id},
    )
    assert started["status"] == "queued"
    info = world.admin.ok("GET", f"/tasks/{started['task_id']}")
    assert info["status"] == "queued" and info["agent_id"] == agent_id and info["error"] is None
    agents = world.admin.ok("GET", f"/teams/{world.team_id}/agents")
    assert [a["status"] for a in agents if a["id"] == agent_id] == ["offline"]


def test_malformed_requests_are_4xx_naming_the_field(world: World) -> None:
    c = world.admin.http
    big = 10**20  # beyond a 64-bit id: refused at the edge, not a database overflow
    for method, path, kw, field in [
        ("GET", f"/tasks/{big}", {}, "task_id"),
        ("POST", f"/tasks/{big}/stop", {}, "task_id"),
        ("GET", f"/teams/{big}/agents", {}, "team_id"),
        ("GET", "/tasks", {"params": {"team_id": big}}, "team_id"),
        ("GET", "/tasks", {"params": {"team_id": world.team_id, "cursor": big}}, "cursor"),
        ("POST", "/tasks", {"json": {"workspace_id": big, "module_id": 1}}, "workspace_id"),
        ("POST", "/tasks", {"json": [1, 2]}, "body"),
        ("POST", "/teams", {"json": {"name": "x" * 5000}}, "name"),
        ("POST", "/users", {"json": {"login": "a b"}}, "login"),
        ("GET", "/tasks/1/logs", {"params": {"after": -1}}, "after"),
        ("GET", "/releases/not-a-sha/archive", {}, "sha256"),
    ]:
        e = _err(c.request(method, path, **kw), 422)
        assert e["field"] == field, (path, e)
    e = _err(c.post("/tasks", content=b"{nope", headers={"content-type": "application/json"}), 422)
    assert e["field"] == "body" and "not valid JSON" in e["message"]
    e = _err(c.get("/no/such/endpoint"), 404)
    assert "No such endpoint" in e["message"]


def test_an_id_past_the_id_columns_is_a_422_not_an_overflow(world: World) -> None:
    """Ids are 32-bit INTEGER columns on PostgreSQL: 2**31 (or anything up to 2**63) used to
    reach the database there and come back as a 500 "integer out of range" (found by the fuzz
    run, test_fuzz_api). It is refused at the edge, naming the field, on either database."""
    c = world.admin.http
    top = 2**31 - 1
    for big in (2**31, 2**63 - 2):
        for method, path, kw, field in [
            ("GET", f"/teams/{big}/members", {}, "team_id"),
            ("GET", f"/projects/{big}", {}, "project_id"),
            ("POST", f"/agents/{big}/token", {}, "agent_id"),
            ("GET", "/tokens", {"params": {"team_id": big}}, "team_id"),
            ("GET", "/tasks", {"params": {"team_id": world.team_id, "cursor": big}}, "cursor"),
            ("GET", "/tasks/1/logs", {"params": {"after": big}}, "after"),
            ("POST", "/datasets", {"json": {"project_id": big, "name": "d"}}, "project_id"),
            ("POST", "/annotations/download", {"json": {"image_ids": [1, big]}}, "image_ids[1]"),
            ("POST", "/images", {"data": {"dataset_id": str(big), "name": "a.png"}}, "dataset_id"),
        ]:
            e = _err(c.request(method, path, **kw), 422)
            assert e["field"] == field, (path, e)
    # the largest id still is an id: a plain "not found"
    assert c.get(f"/projects/{top}").status_code == 404
    assert c.get("/tasks", params={"team_id": world.team_id, "cursor": top}).status_code == 200


def test_a_retried_start_runs_once(world: World) -> None:
    """The same idempotency key from the same user returns the first session, not a second."""
    mid = world.admin.publish(APPS / "worker")["module_id"]
    body = {"workspace_id": world.workspace_id, "module_id": mid, "idempotency_key": "k-1"}
    first = world.admin.ok("POST", "/tasks", json=body)
    again = world.admin.ok("POST", "/tasks", json=body)
    assert again["task_id"] == first["task_id"]
    assert _task_count(world) == 1
    other = world.admin.ok("POST", "/tasks", json={**body, "idempotency_key": "k-2"})
    assert other["task_id"] != first["task_id"] and _task_count(world) == 2


def test_deeply_nested_json_is_refused(world: World) -> None:
    """A 300-deep params tree would make every later read of the task fail: refuse it."""
    mid = world.admin.publish(APPS / "worker")["module_id"]
    deep: object = 1
    for _ in range(300):
        deep = [deep]
    before = _task_count(world)
    e = _err(
        world.admin.http.post(
            "/tasks",
            json={"workspace_id": world.workspace_id, "module_id": mid, "params": {"x": deep}},
        ),
        422,
    )
    assert e["field"] == "params" and "nested deeper" in e["message"]
    assert _task_count(world) == before
    good = {"name": "X", "slug": "t/deep", "main_script": "main.py"}
    nested = json.dumps({**good, "modal_template_state": {"x": deep}}).encode()
    e = _err(_publish_raw(world, tar_of({"config.json": nested, "main.py": b""})), 422)
    assert e["field"] == "config.json" and "nested deeper" in e["message"]


def test_config_json_that_is_a_folder(world: World) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("config.json")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    e = _err(_publish_raw(world, buf.getvalue()), 422)
    assert e["field"] == "config.json" and "folder" in e["message"]


def test_a_bad_log_batch_in_the_exit_report_changes_nothing(world: World) -> None:
    """The exit report may carry the log's last batch: a batch that is refused (too many lines,
    a bad field, a gap, from an agent that does not hold the task) refuses the whole report,
    so the task neither ends nor gains a line."""
    from tests.support import Client

    world.admin.publish(APPS / "worker")
    mid = world.admin.ok("GET", "/modules/lookup", params={"slug": "tests/worker"})["id"]
    agent_id, token = world.new_agent_token("holder")
    _other_id, other_token = world.new_agent_token("other")
    agent, other = Client(world.server.url, token), Client(world.server.url, other_token)
    agent.ok("POST", "/agents/hello", json={"slots": 1})
    other.ok("POST", "/agents/hello", json={"slots": 1})
    tid = world.admin.ok(
        "POST", "/tasks", json={"workspace_id": world.workspace_id, "module_id": mid}
    )["task_id"]
    agent.ok("POST", f"/agents/{agent_id}/poll", json={"free_slots": 1, "timeout_s": 5})
    agent.ok("POST", f"/tasks/{tid}/events", json={"kind": "started", "pid": 1})
    line = {"t": "2026-01-01T00:00:00Z", "text": "x"}

    def exited(client: Client, logs: object):  # type: ignore[no-untyped-def]
        body = {"kind": "exited", "exit_code": 0, "logs": logs}
        return client.http.post(f"/tasks/{tid}/events", json=body)

    assert _err(exited(agent, {"offset": 0, "end_offset": 2, "lines": [line] * 5001}), 422)[
        "field"
    ].startswith("logs.lines")
    bad_text = {"offset": 0, "end_offset": 2, "lines": [{**line, "text": 7}]}
    assert _err(exited(agent, bad_text), 422)["field"].startswith("logs.lines[0]")
    gap = {"offset": 40, "end_offset": 42, "lines": [line]}
    assert _err(exited(agent, gap), 409)["field"] == "offset"
    good = {"offset": 0, "end_offset": 2, "lines": [line]}
    assert exited(other, good).status_code in (403, 404)  # not its task
    task = world.admin.ok("GET", f"/tasks/{tid}")
    assert task["status"] == "started"
    assert world.admin.ok("GET", f"/tasks/{tid}/logs")["items"] == []
    # the same report from the holder, well formed: the line and the end, together
    assert exited(agent, good).status_code == 200
    assert world.admin.ok("GET", f"/tasks/{tid}")["status"] == "finished"
    assert [x["text"] for x in world.admin.ok("GET", f"/tasks/{tid}/logs")["items"]] == ["x"]
