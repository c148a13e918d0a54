"""Pipelines: saved pipelines, runs (start, read, list, wait, watch, stop, resume), and the
loop that runs the pipeline engine in the server (``services/pipeline_engine.py``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from appyard.domain.pipeline import RUN_ENDED, RunState
from appyard.errors import BadRequestError
from appyard.schemas.common import Page
from appyard.schemas.pipeline_runs import (
    PipelineCreate,
    PipelineInfo,
    RunCreate,
    RunInfo,
    RunWaitResult,
)
from appyard.server import keys
from appyard.server.routes.deps import (
    PathId,
    QueryId,
    ServerContext,
    aread,
    aread_json,
    arun_json,
    authenticated,
    context,
    json_response,
    read,
    run,
)
from appyard.server.routes.follow import (
    EVENT_STREAM_DOC,
    EventStreamResponse,
    Follow,
    snapshot_stream,
)
from appyard.server.security import Principal
from appyard.server.services import pipeline_engine
from appyard.server.services import pipelines as svc

log = logging.getLogger("appyard.server.pipelines")
router = APIRouter(dependencies=[Depends(authenticated)], tags=["pipelines"])


def parse_run_statuses(raw: str | None, field: str) -> list[RunState]:
    out: list[RunState] = []
    for part in (raw or "").split(","):
        part = part.strip().lower()
        if not part:
            continue
        try:
            out.append(RunState(part))
        except ValueError:
            raise BadRequestError(
                f"{field}: unknown run status {part!r}; use some of {[s.value for s in RunState]}",
                field=field,
            ) from None
    return out


@router.post("/teams/{team_id}/pipelines", response_model=PipelineInfo, status_code=201)
def create_pipeline(request: Request, team_id: PathId, body: PipelineCreate) -> Response:
    """Save a pipeline (201); the same content saved again is the same pipeline (200)."""
    info, made = run(request, lambda s, p: svc.create_pipeline(s, p, team_id=team_id, body=body))
    return json_response(info, 201 if made else 200)


@router.get("/teams/{team_id}/pipelines", response_model=list[PipelineInfo])
def list_pipelines(
    request: Request,
    team_id: PathId,
    name: str | None = Query(default=None, min_length=1, max_length=100),
) -> list[PipelineInfo]:
    return read(request, lambda s, p: svc.list_pipelines(s, p, team_id=team_id, name=name))


@router.get("/pipelines/{pipeline_id}", response_model=PipelineInfo)
def get_pipeline(request: Request, pipeline_id: PathId) -> PipelineInfo:
    return read(request, lambda s, p: svc.get_pipeline(s, p, pipeline_id=pipeline_id))


@router.post("/pipeline-runs", response_model=RunInfo, status_code=201)
async def create_run(request: Request, body: RunCreate) -> Response:
    files_dir = context(request).settings.files_dir
    return await arun_json(
        request, lambda s, p: svc.create_run(s, p, body=body, files_dir=files_dir), 201
    )


@router.get("/teams/{team_id}/pipeline-runs", response_model=Page[RunInfo])
def list_runs(
    request: Request,
    team_id: PathId,
    status: str | None = None,
    pipeline_id: QueryId | None = None,
    name: str | None = Query(default=None, min_length=1, max_length=100),
    cursor: QueryId | None = None,
    limit: int = Query(default=50, ge=1, le=500),
) -> Page[RunInfo]:
    statuses = parse_run_statuses(status, "status")
    return read(
        request,
        lambda s, p: svc.list_runs(
            s,
            p,
            team_id=team_id,
            statuses=statuses,
            pipeline_id=pipeline_id,
            name=name,
            cursor=cursor,
            limit=limit,
        ),
    )


def _reader(run_id: int) -> Callable[[Session, Principal], RunInfo]:
    return lambda s, p: svc.get_run(s, p, run_id=run_id)


def _team_of(info: RunInfo) -> int:
    return info.team_id


@dataclass(frozen=True)
class _WaitLook:
    """A wait's look at a run: its team and status, and the whole run once it is wanted."""

    team_id: int
    status: RunState
    info: RunInfo | None


@router.get("/pipeline-runs/{run_id}", response_model=RunInfo)
async def get_run(request: Request, run_id: PathId) -> Response:
    return await aread_json(request, _reader(run_id))


@router.get("/pipeline-runs/{run_id}/wait", response_model=RunWaitResult)
async def wait(
    request: Request,
    run_id: PathId,
    until: str | None = None,
    timeout: float = Query(default=25.0, ge=0, le=600),
) -> Response:
    """Long-poll: answers the moment the run's status is one of ``until`` (comma-separated
    run statuses, or ``terminal``: finished, error, stopped; the default), or at ``timeout``."""
    wanted: set[RunState] = set()
    for part in (until or "terminal").split(","):
        if part.strip().lower() == "terminal":
            wanted |= RUN_ENDED
        else:
            wanted |= set(parse_run_statuses(part, "until"))
    ctx = context(request)

    def look(s: Session, p: Principal) -> _WaitLook:
        # the run's row at each change; the whole run (its steps, attempts, outputs) only for
        # the answer: a wake costs the same whatever the run's size
        team_id, status = svc.run_status(s, p, run_id=run_id)
        info = svc.get_run(s, p, run_id=run_id) if status in wanted else None
        return _WaitLook(team_id, status, info)

    follow = Follow(
        ctx.notifier,
        (keys.pipeline_run(run_id),),
        lambda _: aread(request, look),
        timeout=min(timeout, ctx.settings.poll_timeout_s),
        request=request,
        team_of=lambda found: found.team_id,
    )
    found = await follow.until(lambda found: found.info is not None)
    info = found.info
    if info is None:  # the deadline came first
        info = await aread(request, _reader(run_id))
    return json_response(RunWaitResult(run=info, timed_out=info.status not in wanted))


@router.get(
    "/pipeline-runs/{run_id}/watch", response_class=EventStreamResponse, responses=EVENT_STREAM_DOC
)
async def watch(request: Request, run_id: PathId) -> StreamingResponse:
    """Server-sent events: the run (``run``, a RunInfo) now and after every change, until it
    ended; then ``end``. Changes faster than a client reads are coalesced."""
    read_run = _reader(run_id)
    follow = Follow(
        context(request).notifier,
        (keys.pipeline_run(run_id),),
        lambda _: aread(request, read_run),
        keepalive_s=context(request).settings.stream_keepalive_s,
        request=request,
        team_of=_team_of,
    )
    await follow.open()

    return snapshot_stream(follow, "run", lambda r: r.status in RUN_ENDED)


@router.post("/pipeline-runs/{run_id}/stop", response_model=RunInfo)
async def stop(request: Request, run_id: PathId) -> Response:
    files_dir = context(request).settings.files_dir
    return await arun_json(request, lambda s, p: svc.stop(s, p, run_id=run_id, files_dir=files_dir))


@router.post("/pipeline-runs/{run_id}/resume", response_model=RunInfo)
async def resume(request: Request, run_id: PathId) -> Response:
    files_dir = context(request).settings.files_dir
    return await arun_json(
        request, lambda s, p: svc.resume(s, p, run_id=run_id, files_dir=files_dir)
    )


async def engine_loop(ctx: ServerContext) -> None:
    """The pipeline engine in this server (``pipeline_engine.Engine``): a look at every run at
    start-up (what a crash left: ended tasks not yet advanced, timers); then, at each wake, the
    runs it names (``keys.pipelines_due(run_id)``: a task of that run ended, here or on another
    replica) at once, and every run when a timer moved (the bare key), when the earliest
    timer is due, and every ``SWEEP_S``. Never a poll on a timer: the sleep is until the next
    due time."""
    engine = pipeline_engine.Engine(ctx.db, ctx.settings.files_dir)
    with ctx.notifier.subscribe(keys.pipelines_due()) as sub:
        while True:
            fired = sub.take()
            run_ids = [r for r in map(keys.due_run, fired) if r is not None]
            scan = keys.pipelines_due() in fired
            try:
                sleep_s = await anyio.to_thread.run_sync(partial(engine.look, run_ids, scan=scan))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the pipeline engine's look failed; looking again soon")
                engine.scan_at = 0.0
                sleep_s = pipeline_engine.RETRY_S
            if sub.closing:
                return
            await sub.wait(sleep_s)
