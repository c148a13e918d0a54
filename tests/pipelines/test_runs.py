"""Pipeline runs on a real server, agent and app (SQLite and PostgreSQL): the graph, outputs
passed forward, fan-out, the `when` rules, submit-time refusals, saved pipelines, access."""

from __future__ import annotations

from typing import Any

from tests.pipelines.conftest import SLUG, Pipes, step, steps_of
from tests.support import Client, World


def _max_overlap(tasks: list[dict[str, Any]]) -> int:
    """The most of ``tasks`` alive at once, from their created_at / ended_at."""
    marks = sorted(
        [(t["created_at"], 1) for t in tasks] + [(t["ended_at"], -1) for t in tasks],
        key=lambda m: (m[0], m[1]),
    )
    most = now = 0
    for _, d in marks:
        now += d
        most = max(most, now)
    return most


def test_sequential_steps_pass_outputs_forward(pipes: Pipes) -> None:
    run = pipes.run(
        [
            step("a", params={"outputs": {"n": 7, "names": ["x", "y"]}}),
            step(
                "b",
                needs=["a"],
                params={
                    "outputs": {
                        "n": "${steps.a.outputs.n}",
                        "second": "${steps.a.outputs.names.1}",
                        "a_task": "${steps.a.task_id}",
                        "coef": "${inputs.coef}",
                    }
                },
            ),
            step("c", needs=["b"], params={"outputs": {"text": "n=${steps.b.outputs.n}"}}),
        ],
        inputs={"coef": {"default": 0.8}},
    )
    assert run["status"] == "running" and run["pipeline_name"] == "p"
    done = pipes.wait(run["id"])
    assert done["status"] == "finished", done
    s = steps_of(done)
    a_task = s["a"]["attempts"][0]["task_id"]
    assert s["a"]["outputs"] == {"n": 7, "names": ["x", "y"]}
    assert s["b"]["outputs"] == {"n": 7, "second": "y", "a_task": a_task, "coef": 0.8}
    assert s["c"]["outputs"] == {"text": "n=7"}
    for sid in "abc":
        [attempt] = s[sid]["attempts"]
        assert attempt["status"] == "finished" and attempt["n"] == 1
        task = pipes.task(attempt["task_id"])
        assert task["pipeline_run_id"] == run["id"] and task["pipeline_step"] == sid
        assert task["status"] == "finished"
    # one after the other: each step's task was made after the one before it ended
    b = pipes.task(s["b"]["attempts"][0]["task_id"])
    assert b["created_at"] >= pipes.task(a_task)["ended_at"]
    # listed, filtered, paged
    page = pipes.world.admin.ok(
        "GET", f"/teams/{pipes.world.team_id}/pipeline-runs", params={"status": "finished"}
    )
    assert [r["id"] for r in page["items"]] == [run["id"]]


def test_parallel_steps_and_fan_out(pipes: Pipes) -> None:
    run = pipes.run(
        [
            step("split", params={"outputs": {"ids": [1, 2, 3, 4, 5]}}),
            step("left", needs=["split"], params={"sleep_s": 0.5}),
            step("right", needs=["split"], params={"sleep_s": 0.5}),
            step(
                "each",
                needs=["split"],
                for_each="${steps.split.outputs.ids}",
                max_parallel=2,
                params={"outputs": {"sq": "${item}", "tag": "i-${item}"}},
            ),
            step(
                "join",
                needs=["each", "left", "right"],
                params={"outputs": {"all": "${steps.each.outputs.sq}"}},
            ),
        ]
    )
    done = pipes.wait(run["id"])
    assert done["status"] == "finished", done
    s = steps_of(done)
    assert s["each"]["items"] == {
        "total": 5,
        "finished": 5,
        "error": 0,
        "running": 0,
        "pending": 0,
        "stopped": 0,
    }
    assert s["each"]["outputs"] == [{"sq": i, "tag": f"i-{i}"} for i in range(1, 6)]
    assert [a["item"] for a in s["each"]["attempts"]] == [0, 1, 2, 3, 4]
    assert s["join"]["outputs"] == {"all": [1, 2, 3, 4, 5]}
    each = [pipes.task(a["task_id"]) for a in s["each"]["attempts"]]
    assert _max_overlap(each) <= 2, "max_parallel: 2"
    # left and right ran side by side: each started before the other ended
    left = pipes.task(s["left"]["attempts"][0]["task_id"])
    right = pipes.task(s["right"]["attempts"][0]["task_id"])
    assert left["created_at"] < right["ended_at"] and right["created_at"] < left["ended_at"]


def test_a_missing_output_errors_the_step_naming_the_expression(pipes: Pipes) -> None:
    run = pipes.run(
        [
            step("a", params={"outputs": {"x": 1}}),
            step("b", needs=["a"], params={"echo": "${steps.a.outputs.nope}"}),
            step("c", needs=["b"]),
            step("d", needs=["a"], for_each="${steps.a.outputs.x}"),
            step("e", needs=["a"]),
        ]
    )
    done = pipes.wait(run["id"])
    assert done["status"] == "error", done
    s = steps_of(done)
    assert s["b"]["state"] == "error" and s["b"]["attempts"][0]["task_id"] is None
    assert "steps[1].params.echo" in s["b"]["reason"]
    assert "${steps.a.outputs.nope}" in s["b"]["reason"] and "'x'" in s["b"]["reason"]
    assert s["c"]["state"] == "skipped" and s["c"]["reason"] == "upstream_failed"
    assert s["d"]["state"] == "error" and "not a list" in s["d"]["reason"]
    assert s["e"]["state"] == "finished"  # a failure does not stop the steps beside it
    assert "step 'b' ended error" in done["error"]


def test_when_rules_and_continue_on_failure(pipes: Pipes) -> None:
    run = pipes.run(
        [
            step("ok"),
            step("bad", params={"exit_code": 2}),
            step("after_bad", needs=["bad"]),
            step("after_after", needs=["after_bad"]),
            step("done", needs=["bad", "ok"], when="all_done"),
            step("on_fail", needs=["bad"], when="any_failed"),
            step("on_fail_of_ok", needs=["ok"], when="any_failed"),
            step("soft", params={"exit_code": 1}, continue_on_failure=True),
            step("after_soft", needs=["soft"]),
        ]
    )
    done = pipes.wait(run["id"])
    s = {k: (v["state"], v["reason"]) for k, v in steps_of(done).items()}
    assert done["status"] == "error", done
    assert s["ok"] == ("finished", None)
    assert s["bad"][0] == "error" and "code 2" in s["bad"][1]
    assert s["after_bad"] == ("skipped", "upstream_failed")
    assert s["after_after"] == ("skipped", "upstream_failed")
    assert s["done"] == ("finished", None)
    assert s["on_fail"] == ("finished", None)
    assert s["on_fail_of_ok"] == ("skipped", "when_not_met")
    assert s["soft"][0] == "error"
    assert s["after_soft"] == ("finished", None)
    # a failure of a continue_on_failure step alone does not fail the run
    soft = pipes.run(
        [
            step("soft", params={"exit_code": 1}, continue_on_failure=True),
            step("b", needs=["soft"]),
        ],
        name="soft",
    )
    again = pipes.wait(soft["id"])
    assert again["status"] == "finished" and again["error"] is None, again
    assert [x["state"] for x in again["steps"]] == ["error", "finished"]


def _refused(admin: Client, body: dict[str, Any]) -> dict[str, Any]:
    r = admin.post("/pipeline-runs", json=body)
    assert r.status_code == 422, r.text
    error: dict[str, Any] = r.json()["error"]
    return error


def test_every_submit_time_problem_is_a_422_and_nothing_is_made(pipes: Pipes) -> None:
    w = pipes.world
    ws = w.workspace_id

    def body(steps: list[dict[str, Any]], **doc: Any) -> dict[str, Any]:
        inputs = doc.pop("run_inputs", {})
        return {
            "workspace_id": ws,
            "document": {"name": "bad", "steps": steps, **doc},
            "inputs": inputs,
        }

    def problems(b: dict[str, Any]) -> dict[str, str]:
        return {p["at"]: p["reason"] for p in _refused(w.admin, b)["details"]["problems"]}

    assert "is not a known key" in problems(body([step("a", need=["b"])]))["steps[0].need"]
    cycle = problems(body([step("a", needs=["b"]), step("b", needs=["a"])]))
    assert any("go round" in r for r in cycle.values())
    assert "no step 'zz'" in problems(body([step("a", needs=["zz"])]))["steps[0].needs[0]"]
    reads = problems(body([step("a"), step("b", params={"echo": "${steps.a.outputs.x}"})]))
    assert "does not need" in reads["steps[1].params.echo"]
    assert "no app" in problems(body([{"id": "a", "app": "nobody/nothing"}]))["steps[0].app"]
    assert "no version" in problems(body([step("a", version="9.9.9")]))["steps[0].version"]
    assert (
        "JSON number"
        in problems(body([step("a", params={"exit_code": "x"})]))["steps[0].params.exit_code"]
    )
    assert "has no default" in problems(body([step("a")], inputs={"need_me": {}}))["inputs.need_me"]
    extra = problems(body([step("a")], run_inputs={"nope": 1}))
    assert "not an input" in extra["inputs.nope"]
    item = problems(body([step("a", params={"echo": "${item}"})]))
    assert "for_each" in item["steps[0].params.echo"]
    # every problem at once
    assert len(problems(body([step("a", needs=["zz"]), step("a", version="0")]))) >= 2
    # text that is not YAML, and neither or both sources
    r = w.admin.post("/pipeline-runs", json={"workspace_id": ws, "text": "a: [1,"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "document", r.text
    r = w.admin.post("/pipeline-runs", json={"workspace_id": ws})
    assert r.status_code == 422, r.text
    r = w.admin.post(
        f"/teams/{w.team_id}/pipelines", json={"document": {"name": "x"}, "text": "name: x"}
    )
    assert r.status_code == 422, r.text
    bad_save = w.admin.post(f"/teams/{w.team_id}/pipelines", json={"document": {"name": "x"}})
    assert bad_save.status_code == 422 and bad_save.json()["error"]["field"] == "steps"
    # nothing was made: no pipeline, no run, no task
    assert w.admin.ok("GET", f"/teams/{w.team_id}/pipelines") == []
    assert w.admin.ok("GET", f"/teams/{w.team_id}/pipeline-runs")["items"] == []
    assert w.admin.ok("GET", "/tasks", params={"team_id": w.team_id})["items"] == []


def test_saved_pipelines_are_versioned_by_content_and_other_teams_get_404(
    pipes: Pipes, world: World
) -> None:
    w = pipes.world
    doc = {"name": "saved", "inputs": {"n": {"default": 1}}, "steps": [step("a")]}
    first = w.admin.post(f"/teams/{w.team_id}/pipelines", json={"document": doc})
    assert first.status_code == 201, first.text
    info = first.json()
    assert len(info["version"]) == 12 and info["inputs"] == {"n": {"default": 1}}
    again = w.admin.post(
        f"/teams/{w.team_id}/pipelines",
        json={
            "text": f"name: saved\ninputs: {{n: {{default: 1}}}}\nsteps:\n- {{id: a, app: {SLUG}}}\n"
        },
    )
    assert again.status_code == 200 and again.json()["id"] == info["id"], again.text
    changed = w.admin.ok(
        "POST", f"/teams/{w.team_id}/pipelines", json={"document": {**doc, "description": "v2"}}
    )
    assert changed["id"] != info["id"] and changed["version"] != info["version"]
    other = w.admin.ok(
        "POST", f"/teams/{w.team_id}/pipelines", json={"document": {**doc, "name": "o"}}
    )
    newest = w.admin.ok("GET", f"/teams/{w.team_id}/pipelines")
    assert [p["id"] for p in newest] == [other["id"], changed["id"]]
    versions = w.admin.ok("GET", f"/teams/{w.team_id}/pipelines", params={"name": "saved"})
    assert [p["id"] for p in versions] == [changed["id"], info["id"]]
    assert w.admin.ok("GET", f"/pipelines/{info['id']}")["document"] == doc
    run = w.admin.ok(
        "POST",
        "/pipeline-runs",
        json={"workspace_id": w.workspace_id, "pipeline_id": info["id"], "idempotency_key": "k1"},
    )
    same = w.admin.ok(
        "POST",
        "/pipeline-runs",
        json={"workspace_id": w.workspace_id, "pipeline_id": info["id"], "idempotency_key": "k1"},
    )
    assert same["id"] == run["id"] and run["inputs"] == {}
    pipes.wait(run["id"])
    clash = w.admin.post(
        "/pipeline-runs",
        json={
            "workspace_id": w.workspace_id,
            "pipeline_id": info["id"],
            "inputs": {"n": 2},
            "idempotency_key": "k1",
        },
    )
    assert clash.status_code == 409, clash.text
    # a user of another team sees none of it
    outsider_team = w.admin.ok("POST", "/teams", json={"name": "outsiders"})
    w.admin.ok("POST", "/users", json={"login": "outsider"})
    w.admin.ok(
        "POST", f"/teams/{outsider_team['id']}/members", json={"login": "outsider", "role": "admin"}
    )
    uid = next(u["id"] for u in w.admin.ok("GET", "/users") if u["login"] == "outsider")
    token = w.admin.ok("POST", "/tokens", json={"name": "o", "user_id": uid})["token"]
    outsider = Client(w.server.url, token)
    own_ws = outsider.ok("POST", f"/teams/{outsider_team['id']}/workspaces", json={"name": "x"})
    for method, path in [
        ("GET", f"/pipelines/{info['id']}"),
        ("GET", f"/pipeline-runs/{run['id']}"),
        ("GET", f"/pipeline-runs/{run['id']}/wait"),
        ("GET", f"/pipeline-runs/{run['id']}/watch"),
        ("POST", f"/pipeline-runs/{run['id']}/stop"),
        ("POST", f"/pipeline-runs/{run['id']}/resume"),
        ("GET", f"/teams/{w.team_id}/pipelines"),
        ("GET", f"/teams/{w.team_id}/pipeline-runs"),
    ]:
        r = outsider.request(method, path)
        assert r.status_code == 404, (method, path, r.text)
    r = outsider.post(
        "/pipeline-runs", json={"workspace_id": own_ws["id"], "pipeline_id": info["id"]}
    )
    assert r.status_code == 404 and r.json()["error"]["field"] == "pipeline_id", r.text
    r = outsider.post("/pipeline-runs", json={"workspace_id": w.workspace_id, "document": doc})
    assert r.status_code == 404, r.text
    # a viewer reads but does not save or run
    viewer = w.member("pipe-viewer", "viewer")
    assert viewer.ok("GET", f"/pipeline-runs/{run['id']}")["id"] == run["id"]
    assert viewer.post(f"/teams/{w.team_id}/pipelines", json={"document": doc}).status_code == 403
    assert viewer.post(f"/pipeline-runs/{run['id']}/stop").status_code == 403
