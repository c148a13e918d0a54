"""The calls of ``api.pipeline``: saved pipelines, runs, the pushed ``wait`` and ``watch``."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeAlias

from pydantic import ValidationError

from appyard.domain.pipeline import RUN_ENDED, RunState, StepState
from appyard.errors import InvalidArgumentsError, PipelineRunFailed, WaitingTimeExceeded
from appyard.schemas.common import Page
from appyard.schemas.pipeline_runs import PipelineInfo, RunInfo, RunWaitResult, StepInfo
from appyard.sdk import env
from appyard.sdk._calls.effects import Offload, Op, Sleep, Stream, collect, pages, request
from appyard.sdk._calls.tasks import (
    _RECONNECT,
    POLL_MARGIN_S,
    RECONNECT_CAP_S,
    _follow,
    _StreamCursor,
)
from appyard.sdk._core import backoff_delay
from appyard.sdk._wait import MAX_POLL_S, format_seconds
from appyard.sdk.pipeline import Pipeline

PAGE_SIZE = 100

#: what a pipeline is given as: the builder, a document (JSON values), YAML or JSON text, or
#: the path of a file holding it
Source: TypeAlias = Pipeline | Mapping[str, Any] | str | os.PathLike[str]
#: what a run is made of: a source, or a saved pipeline (its id or its info)
RunSource: TypeAlias = Source | PipelineInfo | int
#: sees the run after every answer of a wait
OnRun: TypeAlias = Callable[[RunInfo], None]

#: a failed run's message lists at most this many steps
_LISTED_STEPS = 10
_FAILED_STEPS = frozenset({StepState.ERROR, StepState.STOPPED})


def task_ids(step: StepInfo) -> list[int]:
    """The task of each attempt of a step, in order (of every item, for a ``for_each``)."""
    return [a.task_id for a in step.attempts if a.task_id is not None]


def run_ended(run: RunInfo) -> bool:
    """The run is finished, error or stopped (a resume may take it on again)."""
    return run.status in RUN_ENDED


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InvalidArgumentsError(f"{path}: the pipeline file is not UTF-8 text ({e})") from None


def source_body(source: RunSource) -> Op[dict[str, Any]]:
    """The part of a request body that says which pipeline: ``document``, ``text`` (YAML or
    JSON, so the server's problems name its lines) or ``pipeline_id``."""
    if isinstance(source, Pipeline):
        return {"document": source.to_dict()}
    if isinstance(source, PipelineInfo):
        return {"pipeline_id": source.id}
    if isinstance(source, bool):
        raise InvalidArgumentsError("a pipeline is a builder, a document, text, a path or an id")
    if isinstance(source, int):
        return {"pipeline_id": source}
    if isinstance(source, Mapping):
        return {"document": dict(source)}
    if isinstance(source, str):
        return {"text": source}
    if isinstance(source, os.PathLike):
        path = Path(source)
        text = yield Offload(lambda: _read(path))
        return {"text": text}
    raise InvalidArgumentsError(
        f"a pipeline is a Pipeline builder, a document (dict), YAML/JSON text, a Path or a "
        f"saved pipeline's id; got {type(source).__name__}"
    )


# -- saved pipelines ---------------------------------------------------------------------------


def create(team_id: int, source: Source) -> Op[PipelineInfo]:
    if isinstance(source, int | PipelineInfo):
        raise InvalidArgumentsError("create takes a document, not a saved pipeline")
    body = yield from source_body(source)
    # saving the same content twice gives the same pipeline: safe to send again
    data = yield from request(
        "POST", f"/teams/{int(team_id)}/pipelines", json=body, idempotent=True
    )
    return PipelineInfo.model_validate(data)


def get(pipeline_id: int) -> Op[PipelineInfo]:
    return PipelineInfo.model_validate(
        (yield from request("GET", f"/pipelines/{int(pipeline_id)}"))
    )


def _page_of(data: Any, model: type[Any]) -> Page[Any]:
    """A listing's answer: a cursor page, or a plain list (one page)."""
    if isinstance(data, list):
        return Page[model].model_validate({"items": data})  # type: ignore[valid-type]
    return Page[model].model_validate(data)  # type: ignore[valid-type]


def iter_list(team_id: int, name: str | None, page_size: int) -> Stream[PipelineInfo]:
    def page(cursor: str | None) -> Op[Page[PipelineInfo]]:
        params = {"name": name, "limit": page_size, "cursor": cursor}
        data = yield from request("GET", f"/teams/{int(team_id)}/pipelines", params=params)
        return _page_of(data, PipelineInfo)

    yield from pages(page)


def get_list(team_id: int, name: str | None, limit: int | None) -> Op[list[PipelineInfo]]:
    page_size = min(PAGE_SIZE, limit) if limit else PAGE_SIZE
    return collect(iter_list(team_id, name, page_size), limit)


# -- runs --------------------------------------------------------------------------------------


def run(
    source: RunSource,
    workspace_id: int | None,
    inputs: Mapping[str, Any] | None,
    idempotency_key: str | None,
) -> Op[RunInfo]:
    """Start a run; the key (a fresh one when none is given) makes the request safe to send
    again: a retried start never makes two runs."""
    body = yield from source_body(source)
    body.update(
        workspace_id=int(workspace_id if workspace_id is not None else env.workspace_id()),
        inputs=dict(inputs or {}),
        idempotency_key=idempotency_key or uuid.uuid4().hex,
    )
    data = yield from request("POST", "/pipeline-runs", json=body, idempotent=True)
    return RunInfo.model_validate(data)


def get_run(run_id: int) -> Op[RunInfo]:
    return RunInfo.model_validate((yield from request("GET", f"/pipeline-runs/{int(run_id)}")))


def _csv(values: RunState | str | Iterable[RunState | str] | None) -> str | None:
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    return ",".join(RunState(v).value for v in values) or None


def iter_runs(
    team_id: int,
    status: RunState | str | Iterable[RunState | str] | None,
    pipeline_id: int | None,
    name: str | None,
    page_size: int,
) -> Stream[RunInfo]:
    statuses = _csv(status)

    def page(cursor: str | None) -> Op[Page[RunInfo]]:
        params = {
            "status": statuses,
            "pipeline_id": pipeline_id,
            "name": name,
            "limit": page_size,
            "cursor": cursor,
        }
        data = yield from request("GET", f"/teams/{int(team_id)}/pipeline-runs", params=params)
        return _page_of(data, RunInfo)

    yield from pages(page)


def list_runs(
    team_id: int,
    status: RunState | str | Iterable[RunState | str] | None,
    pipeline_id: int | None,
    name: str | None,
    limit: int | None,
) -> Op[list[RunInfo]]:
    page_size = min(PAGE_SIZE, limit) if limit else PAGE_SIZE
    return collect(iter_runs(team_id, status, pipeline_id, name, page_size), limit)


def stop(run_id: int) -> Op[RunInfo]:
    data = yield from request("POST", f"/pipeline-runs/{int(run_id)}/stop", idempotent=True)
    return RunInfo.model_validate(data)


def resume(run_id: int) -> Op[RunInfo]:
    # not sent again after it may have reached the server: a resume done twice is a 409
    data = yield from request("POST", f"/pipeline-runs/{int(run_id)}/resume")
    return RunInfo.model_validate(data)


# -- waiting -----------------------------------------------------------------------------------


def poll(run_id: int, timeout: float) -> Op[RunWaitResult]:
    """One long-poll: answered the moment the run ends, or after ``timeout`` seconds."""
    data = yield from request(
        "GET",
        f"/pipeline-runs/{int(run_id)}/wait",
        params={"until": "terminal", "timeout": format_seconds(timeout)},
        timeout=timeout + POLL_MARGIN_S,
    )
    return RunWaitResult.model_validate(data)


def failure_message(run: RunInfo) -> str:
    """``Pipeline run 7 (import-and-export) ended error`` and each failed step: its state,
    attempts, tasks and error."""
    message = f"Pipeline run {run.id} ({run.pipeline_name}) ended {run.status.value}"
    if run.error:
        message += f": {run.error}"
    failed = [s for s in run.steps if s.state in _FAILED_STEPS]
    for step in failed[:_LISTED_STEPS]:
        line = f"\n  step {step.id}: {step.state.value}"
        if step.attempts:
            n = len(step.attempts)
            tasks = ", ".join(str(t) for t in task_ids(step))
            line += f" after {n} attempt{'s' if n != 1 else ''}"
            if tasks:
                line += f" (task{'s' if len(task_ids(step)) != 1 else ''} {tasks})"
        error = step.reason or next((a.error for a in reversed(step.attempts) if a.error), None)
        if error:
            line += f": {error.strip()}"
        message += line
    if len(failed) > _LISTED_STEPS:
        message += f"\n  and {len(failed) - _LISTED_STEPS} more failed steps"
    return message


def failed(run: RunInfo) -> PipelineRunFailed:
    """The error of a run that ended ``error`` or ``stopped``."""
    first = next((s for s in run.steps if s.state in _FAILED_STEPS), None)
    task_id = task_ids(first)[-1] if first is not None and task_ids(first) else None
    error = run.error
    if error is None and first is not None:
        error = first.reason or next((a.error for a in reversed(first.attempts) if a.error), None)
    return PipelineRunFailed(
        failure_message(run),
        run_id=run.id,
        status=run.status.value,
        run=run,
        task_id=task_id,
        error=error,
    )


def _outcome(run: RunInfo) -> RunInfo:
    if run.status is RunState.FINISHED:
        return run
    raise failed(run)


def _exceeded(run_id: int, timeout: float) -> WaitingTimeExceeded:
    return WaitingTimeExceeded(
        f"Waiting time exceeded: pipeline run {run_id} has not ended after "
        f"{format_seconds(timeout)} seconds; it goes on (the server runs it): wait again, or "
        f"stop it with api.pipeline.stop({run_id})"
    )


def wait(run_id: int, timeout: float | None, on_update: OnRun | None) -> Op[RunInfo]:
    """Long-polls until the run ends; a server restart meanwhile is ridden out."""
    deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
    failures = 0
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        budget = MAX_POLL_S if remaining is None else max(0.0, min(MAX_POLL_S, remaining))
        try:
            result: RunWaitResult | None = yield from poll(run_id, budget)
        except _RECONNECT:
            result = None
        remaining = None if deadline is None else deadline - time.monotonic()
        if result is None:
            if remaining is not None and remaining <= 0:
                assert timeout is not None
                raise _exceeded(run_id, timeout) from None
            delay = backoff_delay(failures, RECONNECT_CAP_S)
            yield Sleep(delay if remaining is None else min(delay, remaining))
            failures += 1
            continue
        failures = 0
        if on_update is not None:
            on_update(result.run)
        if run_ended(result.run):
            return _outcome(result.run)
        if remaining is not None and remaining <= 0:
            assert timeout is not None
            raise _exceeded(run_id, timeout)


class _RunCursor(_StreamCursor[RunInfo]):
    """A run watch: drops a snapshot already handed out (the first answer after a reconnect
    repeats the current one), and ends after the run ended."""

    def __init__(self) -> None:
        super().__init__()
        self.last = ""

    def item(self, event: str, data: str) -> RunInfo | None:
        if data == self.last:
            return None
        try:
            run = RunInfo.model_validate_json(data)
        except ValidationError:
            return None  # an event of another kind
        self.last = data
        if run_ended(run):
            self.ended = True
        return run


def watch(run_id: int) -> Stream[RunInfo]:
    yield from _follow(f"/pipeline-runs/{int(run_id)}/watch", _RunCursor())
