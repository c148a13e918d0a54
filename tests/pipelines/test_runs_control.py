"""Pipeline runs that fail, time out, are stopped, resumed, or outlive a crash (SQLite and
PostgreSQL): retries, timeout, stop with a SIGTERM-ignoring step, resume, kill -9 of the
server, an agent lost mid-step."""

from __future__ import annotations

from pathlib import Path

from tests.pipelines.conftest import Pipes, step, steps_of
from tests.support import processes_of, wait_for


def test_retries_run_a_failed_attempt_again(pipes: Pipes, tmp_path: Path) -> None:
    marker = tmp_path / "first"
    run = pipes.run(
        [
            step(
                "flaky",
                params={"fail_first": str(marker), "outputs": {"ok": True}},
                retries={"limit": 2, "backoff_s": 0.2},
            ),
            step("always", params={"exit_code": 4}, retries={"limit": 1}),
            step("next", needs=["flaky"]),
        ]
    )
    done = pipes.wait(run["id"])
    s = steps_of(done)
    flaky = s["flaky"]["attempts"]
    assert [a["status"] for a in flaky] == ["error", "finished"], flaky
    assert flaky[0]["task_id"] != flaky[1]["task_id"]
    assert "code 3" in flaky[0]["error"]
    assert marker.read_text() == str(flaky[0]["task_id"])
    assert s["flaky"]["state"] == "finished" and s["flaky"]["outputs"] == {"ok": True}
    assert s["next"]["state"] == "finished"
    assert [a["status"] for a in s["always"]["attempts"]] == ["error", "error"]
    assert s["always"]["state"] == "error" and done["status"] == "error"


def test_timeout_stops_the_attempt_and_counts_as_timeout(pipes: Pipes) -> None:
    run = pipes.run([step("slow", params={"sleep_s": 60}, timeout_s=0.5)])
    done = pipes.wait(run["id"])
    [attempt] = steps_of(done)["slow"]["attempts"]
    assert attempt["status"] == "timeout" and "timeout_s" in attempt["error"], attempt
    assert steps_of(done)["slow"]["state"] == "error" and done["status"] == "error"
    assert pipes.task(attempt["task_id"])["status"] == "stopped"
    assert processes_of(attempt["task_id"], pipes.world.server.url) == []


def test_stop_a_whole_run_leaves_no_process(pipes: Pipes) -> None:
    run = pipes.run(
        [
            step("stubborn", params={"sleep_s": 60, "ignore_sigterm": True, "spawn_child": True}),
            step("plain", params={"sleep_s": 60}),
            step("later", needs=["stubborn"]),
            step("each", for_each=[1, 2, 3], max_parallel=1, params={"sleep_s": 60}),
        ]
    )
    url = pipes.world.server.url

    def started() -> list[int]:
        now = steps_of(pipes.get(run["id"]))
        ids = [now[s]["attempts"][0]["task_id"] for s in ("stubborn", "plain", "each")]
        live = [len(processes_of(t, url)) for t in ids]
        return ids if all(live) else []

    task_ids = wait_for(started, 30, "the steps' apps to run")
    stopping = pipes.world.admin.ok("POST", f"/pipeline-runs/{run['id']}/stop")
    assert stopping["status"] in ("terminating", "stopped")
    done = pipes.wait(run["id"])
    assert done["status"] == "stopped", done
    s = steps_of(done)
    assert s["later"]["state"] == "skipped" and s["later"]["reason"] == "run_stopped"
    assert s["stubborn"]["state"] == "stopped" and s["plain"]["state"] == "stopped"
    assert s["each"]["state"] == "stopped"
    assert [a["status"] for a in s["each"]["attempts"]] == ["stopped", "cancelled", "cancelled"]
    for t in task_ids:
        assert pipes.task(t)["status"] == "stopped"
        assert processes_of(t, url) == [], f"task {t} left processes"
    # stopping again answers the run as it is
    assert pipes.world.admin.ok("POST", f"/pipeline-runs/{run['id']}/stop")["status"] == "stopped"


def test_resume_runs_again_only_what_did_not_finish(pipes: Pipes, tmp_path: Path) -> None:
    marker = tmp_path / "once"
    run = pipes.run(
        [
            step("first", params={"outputs": {"v": 5}}),
            step("shaky", needs=["first"], params={"fail_first": str(marker)}),
            step("last", needs=["shaky"], params={"outputs": {"v": "${steps.first.outputs.v}"}}),
        ]
    )
    failed = pipes.wait(run["id"])
    assert failed["status"] == "error", failed
    before = steps_of(failed)
    assert before["last"]["state"] == "skipped"
    busy = pipes.world.admin.post(f"/pipeline-runs/{run['id']}/stop")
    assert busy.status_code == 200  # an ended run: nothing to stop
    resumed = pipes.world.admin.ok("POST", f"/pipeline-runs/{run['id']}/resume")
    assert resumed["status"] == "running" and resumed["error"] is None
    done = pipes.wait(run["id"])
    assert done["status"] == "finished", done
    after = steps_of(done)
    assert after["first"]["attempts"] == before["first"]["attempts"], "finished: not run again"
    assert [a["status"] for a in after["shaky"]["attempts"]] == ["error", "finished"]
    assert after["last"]["outputs"] == {"v": 5} and len(after["last"]["attempts"]) == 1
    again = pipes.world.admin.post(f"/pipeline-runs/{run['id']}/resume")
    assert again.status_code == 409 and "finished" in again.json()["error"]["message"]


def test_server_killed_mid_run_loses_and_doubles_nothing(pipes: Pipes) -> None:
    run = pipes.run(
        [
            step("a", params={"sleep_s": 1.5}),
            step("b", needs=["a"], params={"outputs": {"b": 1}}),
            step("fan", needs=["b"], for_each=[1, 2, 3], params={"echo": "${item}"}),
            step("c", needs=["fan"]),
        ]
    )
    a_task = steps_of(run)["a"]["attempts"][0]["task_id"]
    wait_for(lambda: processes_of(a_task, pipes.world.server.url), 30, "step a to run")
    server = pipes.world.server
    server.kill()  # kill -9, while a runs; a ends while the server is down
    server.start()
    done = pipes.wait(run["id"], timeout=120)
    assert done["status"] == "finished", done
    s = steps_of(done)
    assert [len(s[x]["attempts"]) for x in ("a", "b", "c")] == [1, 1, 1]
    assert len(s["fan"]["attempts"]) == 3
    tasks = pipes.world.admin.ok("GET", "/tasks", params={"team_id": pipes.world.team_id})
    mine = [t for t in tasks["items"] if t["pipeline_run_id"] == run["id"]]
    assert sorted(t["pipeline_step"] for t in mine) == ["a", "b", "c", "fan", "fan", "fan"]
    assert all(t["status"] == "finished" for t in mine)


def test_agent_lost_mid_step_retries_on_another_agent(pipes: Pipes, tmp_path: Path) -> None:
    marker = tmp_path / "slow"
    run = pipes.run(
        [
            step(
                "a",
                params={"slow_first": str(marker), "outputs": {"done": True}},
                retries={"limit": 1},
            )
        ]
    )
    first = wait_for(lambda: marker.exists() and marker.read_text(), 30, "the first attempt")
    pipes.agent.kill9()  # it never comes back: lost after the agent TTL (4 s in tests)
    other_id, _, _ = pipes.start_agent("other")
    done = pipes.wait(run["id"], timeout=60)
    assert done["status"] == "finished", done
    attempts = steps_of(done)["a"]["attempts"]
    assert [a["status"] for a in attempts] == ["error", "finished"]
    assert attempts[0]["task_id"] == int(first) and "agent lost" in attempts[0]["error"]
    assert pipes.task(attempts[1]["task_id"])["agent_id"] == other_id
    # the lost agent comes back, and stops its orphaned app
    pipes.world.start_agent(pipes.agent_token, name="agent", extra_args=["--no-sandbox"])
    wait_for(
        lambda: processes_of(attempts[0]["task_id"], pipes.world.server.url) == [],
        30,
        "the orphaned app to be stopped",
    )
