"""``api.pipeline`` (and its async twin) on a real server with a real agent running real apps:
saved pipelines, runs, the pushed ``wait`` and ``watch``, failures, stop and resume."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import appyard as ay
from appyard.domain.pipeline import RunState, StepState
from appyard.errors import (
    BadRequestError,
    ConflictError,
    NotFoundError,
    PipelineRunFailed,
    TaskFinishedWithError,
    WaitingTimeExceeded,
)
from appyard.schemas.pipeline_runs import RunInfo
from appyard.sdk.pipeline import Pipeline, inputs, item, outputs
from appyard.sdk.pipeline_api import task_ids
from tests.e2e.conftest import online_agent
from tests.support import APPS, World, wait_for

ROOT = Path(__file__).resolve().parents[2]
ECOSYSTEM = ROOT / "src" / "appyard" / "ecosystem"
EXAMPLES = ROOT / "examples" / "pipelines"
#: the longest a test waits for a run that should end soon (it ends well before)
RUN_TIMEOUT_S = 120.0


@dataclass
class Stand:
    world: World
    api: ay.Api
    token: str

    @property
    def team_id(self) -> int:
        return self.world.team_id

    @property
    def workspace_id(self) -> int:
        return self.world.workspace_id


@pytest.fixture
def stand(world: World) -> Iterator[Stand]:
    """A team with an online agent, the worker test app and the bundled ``hello``."""
    token = world.admin.http.headers["Authorization"].split()[1]
    api = ay.Api(world.server.url, token)
    world.admin.publish(APPS / "worker")
    world.admin.publish(ECOSYSTEM / "hello")
    online_agent(world)
    yield Stand(world, api, token)
    api.close()


def chain(name: str = "chain", **worker: Any) -> Pipeline:
    """``first`` (hello, sets ``greeting``) → ``second`` (the worker, with ``worker`` state) →
    ``third`` (hello greeting with first's output)."""
    return (
        Pipeline(name)
        .input("who", default="chain")
        .step("first", app="appyard/hello", params={"name": inputs("who"), "count": 1})
        .step(
            "second",
            app="tests/worker",
            needs="first",
            params={"lines": 1, **worker},
        )
        .step(
            "third",
            app="appyard/hello",
            needs="second",
            params={"name": "after ${steps.first.outputs.greeting}", "count": 1},
        )
    )


def _step_states(run: RunInfo) -> dict[str, StepState]:
    return {s.id: s.state for s in run.steps}


# -- saved pipelines ---------------------------------------------------------------------------


def test_create_is_versioned_by_content_and_listed(stand: Stand, tmp_path: Path) -> None:
    api = stand.api
    p = chain("saved")
    first = api.pipeline.create(stand.team_id, p)
    assert (first.team_id, first.name) == (stand.team_id, "saved")
    assert first.document == p.to_dict()
    assert set(first.inputs) == {"who"}
    # the same content as a dict, as YAML text, from a file: the same pipeline
    assert api.pipeline.create(stand.team_id, p.to_dict()).id == first.id
    assert api.pipeline.create(stand.team_id, p.to_yaml()).id == first.id
    path = tmp_path / "saved.yaml"
    path.write_text(p.to_yaml())
    assert api.pipeline.create(stand.team_id, path).id == first.id
    # another content is another version of the same name
    other = api.pipeline.create(stand.team_id, chain("saved", sleep_s=0.1))
    assert other.id != first.id and other.version != first.version
    assert api.pipeline.get(first.id) == first
    named = api.pipeline.list(stand.team_id, name="saved")
    assert {x.id for x in named} == {first.id, other.id}
    api.pipeline.create(stand.team_id, chain("another"))
    assert {x.name for x in api.pipeline.list(stand.team_id)} == {"saved", "another"}
    assert [x.id for x in api.pipeline.list(stand.team_id, limit=1)] != []


def test_a_bad_document_is_refused_with_every_problem(stand: Stand) -> None:
    bad = {
        "name": "bad",
        "steps": [
            {"id": "a", "app": "appyard/hello", "needs": ["b"]},
            {"id": "b", "app": "appyard/hello", "needs": ["a"], "params": {"count": "many"}},
            {"id": "c", "app": "nobody/nothing"},
        ],
    }
    with pytest.raises(BadRequestError) as caught:
        stand.api.pipeline.create(stand.team_id, bad)
    problems = caught.value.details["problems"]
    where = {p["at"] for p in problems}
    assert "steps[0].needs" in where  # the cycle
    assert "steps[1].params.count" in where  # a number option given text
    assert any(at.startswith("steps[2].app") for at in where)  # no such app
    assert stand.api.pipeline.list(stand.team_id) == []  # nothing was saved
    with pytest.raises(BadRequestError):
        stand.api.pipeline.create(stand.team_id, "name: x\nsteps: [\n")  # not YAML
    with pytest.raises(NotFoundError):
        stand.api.pipeline.get(999_999)


# -- runs --------------------------------------------------------------------------------------


def test_a_run_passes_outputs_forward_and_wait_returns_it(stand: Stand) -> None:
    api = stand.api
    run = api.pipeline.run(chain(), stand.workspace_id, inputs={"who": "sdk"})
    assert run.status in (RunState.QUEUED, RunState.RUNNING)
    assert [s.id for s in run.steps] == ["first", "second", "third"]
    seen: list[RunInfo] = []
    ended = api.pipeline.wait(run.id, RUN_TIMEOUT_S, on_update=seen.append)
    assert ended.status is RunState.FINISHED and seen[-1] == ended
    assert set(_step_states(ended).values()) == {StepState.FINISHED}
    assert ended.inputs == {"who": "sdk"}
    first, third = ended.steps[0], ended.steps[2]
    assert first.outputs == {"greeting": "Hello, sdk!"}
    assert third.outputs == {"greeting": "Hello, after Hello, sdk!!"}
    # each step's task knows its run and step
    for step in ended.steps:
        (tid,) = task_ids(step)
        info = api.task.get_info_by_id(tid)
        assert (info["pipeline_run_id"], info["pipeline_step"]) == (run.id, step.id)
        assert info["status"] == "finished"
    assert api.pipeline.get_run(run.id) == ended
    # a saved pipeline runs by its id; the key makes a repeated start the same run
    saved = api.pipeline.create(stand.team_id, chain("by-id"))
    again = api.pipeline.run(saved.id, stand.workspace_id, idempotency_key="k-1")
    assert api.pipeline.run(saved, stand.workspace_id, idempotency_key="k-1").id == again.id
    assert again.pipeline_id == saved.id
    api.pipeline.wait(again.id, RUN_TIMEOUT_S)


def test_a_fan_out_runs_each_item(stand: Stand) -> None:
    api = stand.api
    run = api.pipeline.run(
        EXAMPLES / "fan-out.yaml",
        stand.workspace_id,
        inputs={"names": ["x", "y", "z"], "count": 1},
    )
    ended = api.pipeline.wait(run.id, RUN_TIMEOUT_S)
    each = next(s for s in ended.steps if s.id == "each")
    assert each.state is StepState.FINISHED
    assert each.items is not None and (each.items.total, each.items.finished) == (3, 3)
    assert len(task_ids(each)) == 3
    assert each.outputs == [{"greeting": f"Hello, {n}!"} for n in "xyz"]
    done = next(s for s in ended.steps if s.id == "done")
    assert done.outputs == {"greeting": "Hello, everyone (after Hello, pipeline!)!"}


def test_watch_follows_the_run_to_its_end(stand: Stand) -> None:
    run = stand.api.pipeline.run(chain(), stand.workspace_id)
    seen = list(stand.api.pipeline.watch(run.id))
    assert seen[-1].status is RunState.FINISHED
    assert len({s.model_dump_json() for s in seen}) == len(seen)  # only changes
    # steps go forward only, one after the other
    order = [StepState.PENDING, StepState.RUNNING, StepState.FINISHED]
    for step_id in ("first", "second", "third"):
        states = [_step_states(s)[step_id] for s in seen]
        ranks = [order.index(x) for x in states]
        assert ranks == sorted(ranks), (step_id, states)
    # a watch of an ended run hands out the run once and ends
    assert [r.status for r in stand.api.pipeline.watch(run.id)] == [RunState.FINISHED]


def test_a_failed_step_fails_the_wait_and_skips_what_needs_it(stand: Stand) -> None:
    api = stand.api
    p = chain("fails", exit_code=3).step("aside", app="appyard/hello", params={"count": 1})
    run = api.pipeline.run(p, stand.workspace_id)
    with pytest.raises(PipelineRunFailed) as caught:
        api.pipeline.wait(run.id, RUN_TIMEOUT_S)
    failed = caught.value
    assert isinstance(failed, TaskFinishedWithError)  # the family of a failed session
    assert failed.run_id == run.id and failed.status == "error"
    ended = failed.run
    assert isinstance(ended, RunInfo) and ended.status is RunState.ERROR
    states = _step_states(ended)
    assert states == {
        "first": StepState.FINISHED,
        "second": StepState.ERROR,
        "third": StepState.SKIPPED,
        "aside": StepState.FINISHED,  # does not need the failed step: it ran to its end
    }
    second = ended.steps[1]
    assert failed.task_id == task_ids(second)[-1]
    assert "step second: error" in str(failed) and str(failed.task_id) in str(failed)
    assert ended.steps[2].reason == "upstream_failed"


def test_wait_times_out_then_stop_and_resume(stand: Stand) -> None:
    api = stand.api
    run = api.pipeline.run(chain("long", sleep_s=300), stand.workspace_id)

    def second_running() -> RunInfo | None:
        now = api.pipeline.get_run(run.id)
        return (
            now
            if _step_states(now)["second"] is StepState.RUNNING and task_ids(now.steps[1])
            else None
        )

    wait_for(second_running, 60, "the long step to run")
    with pytest.raises(WaitingTimeExceeded):
        api.pipeline.wait(run.id, 0.3)
    with pytest.raises(ConflictError):
        api.pipeline.resume(run.id)  # only an ended run resumes
    first_task = task_ids(api.pipeline.get_run(run.id).steps[0])
    stopping = api.pipeline.stop(run.id)
    assert stopping.status in (RunState.TERMINATING, RunState.STOPPED)
    with pytest.raises(PipelineRunFailed) as caught:
        api.pipeline.wait(run.id, RUN_TIMEOUT_S)
    stopped = caught.value.run
    assert isinstance(stopped, RunInfo) and stopped.status is RunState.STOPPED
    assert _step_states(stopped) == {
        "first": StepState.FINISHED,
        "second": StepState.STOPPED,
        "third": StepState.SKIPPED,
    }
    assert stopped.steps[2].reason == "run_stopped"
    (long_task,) = task_ids(stopped.steps[1])
    assert api.task.get_status(long_task) is ay.Status.STOPPED

    resumed = api.pipeline.resume(run.id)
    assert resumed.status in (RunState.QUEUED, RunState.RUNNING)

    # the finished step keeps its task; the stopped one gets a new attempt
    def new_attempt() -> RunInfo | None:
        now = api.pipeline.get_run(run.id)
        return now if len(task_ids(now.steps[1])) == 2 else None

    again = wait_for(new_attempt, 60, "a new attempt of the stopped step")
    assert again is not None
    assert task_ids(again.steps[0]) == first_task
    assert task_ids(again.steps[1])[0] == long_task
    assert [r.id for r in api.pipeline.list_runs(stand.team_id, status="running")] == [run.id]
    api.pipeline.stop(run.id)
    with pytest.raises(PipelineRunFailed):
        api.pipeline.wait(run.id, RUN_TIMEOUT_S)


def test_runs_are_listed_newest_first_with_filters_and_pages(stand: Stand) -> None:
    api = stand.api
    saved = api.pipeline.create(stand.team_id, chain("listed"))
    ids = [api.pipeline.run(saved.id, stand.workspace_id).id for _ in range(3)]
    other = api.pipeline.run(chain("unlisted"), stand.workspace_id).id
    for run_id in [*ids, other]:
        api.pipeline.wait(run_id, RUN_TIMEOUT_S)
    every = [r.id for r in api.pipeline.iter_runs(stand.team_id, page_size=1)]
    assert every == sorted([*ids, other], reverse=True)
    assert [r.id for r in api.pipeline.list_runs(stand.team_id, pipeline_id=saved.id)] == sorted(
        ids, reverse=True
    )
    assert [r.id for r in api.pipeline.list_runs(stand.team_id, name="unlisted")] == [other]
    assert api.pipeline.list_runs(stand.team_id, status=["error", "stopped"]) == []
    assert len(api.pipeline.list_runs(stand.team_id, status=RunState.FINISHED, limit=2)) == 2


# -- the async twin ----------------------------------------------------------------------------


def test_the_async_twin_creates_runs_watches_stops_and_resumes(stand: Stand) -> None:
    async def main() -> None:
        async with ay.AsyncApi(stand.world.server.url, stand.token) as api:
            saved = await api.pipeline.create(stand.team_id, chain("async"))
            assert [p.id for p in await api.pipeline.list(stand.team_id, "async")] == [saved.id]
            assert (await api.pipeline.get(saved.id)).document == saved.document
            run = await api.pipeline.run(saved.id, stand.workspace_id, {"who": "async"})
            ended = await api.pipeline.wait(run.id, RUN_TIMEOUT_S)
            assert ended.steps[0].outputs == {"greeting": "Hello, async!"}
            seen = [r async for r in api.pipeline.watch(run.id)]
            assert [r.status for r in seen] == [RunState.FINISHED]
            assert [r.id async for r in api.pipeline.iter_runs(stand.team_id)] == [run.id]

            long = await api.pipeline.run(chain("async-long", sleep_s=300), stand.workspace_id)
            async for snapshot in api.pipeline.watch(long.id):
                if task_ids(snapshot.steps[1]):
                    break
            with pytest.raises(WaitingTimeExceeded):
                await api.pipeline.wait(long.id, 0.2)
            await api.pipeline.stop(long.id)
            with pytest.raises(PipelineRunFailed) as caught:
                await api.pipeline.wait(long.id, RUN_TIMEOUT_S)
            assert caught.value.status == "stopped"
            resumed = await api.pipeline.resume(long.id)
            assert resumed.status in (RunState.QUEUED, RunState.RUNNING)
            await api.pipeline.stop(long.id)
            with pytest.raises(PipelineRunFailed):
                await api.pipeline.wait(long.id, RUN_TIMEOUT_S)
            runs = await api.pipeline.list_runs(stand.team_id, status="stopped")
            assert [r.id for r in runs] == [long.id]

    asyncio.run(main())


def test_the_builder_helpers_make_what_the_server_reads(stand: Stand) -> None:
    p = (
        Pipeline("helpers")
        .input("names", default=["p", "q"])
        .step("each", app="appyard/hello", for_each=inputs("names"), params={"name": item()})
        .step(
            "last",
            app="appyard/hello",
            needs="each",
            params={"name": "${steps.each.outputs.greeting.1}", "count": 1},
        )
    )
    assert outputs("each", "greeting", 1) == "${steps.each.outputs.greeting.1}"
    ended = stand.api.pipeline.wait(
        stand.api.pipeline.run(p, stand.workspace_id, {"names": ["p", "q"]}).id, RUN_TIMEOUT_S
    )
    assert ended.steps[1].outputs == {"greeting": "Hello, Hello, q!!"}
