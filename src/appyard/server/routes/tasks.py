"""Sessions: start, list, read, wait (long-poll), stop, logs (read and live), app reports."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from appyard.domain.status import TERMINAL, Status
from appyard.errors import BadRequestError, NotFoundError
from appyard.schemas.agents import LogBatch, TaskEvent
from appyard.schemas.common import MAX_ID, Page
from appyard.schemas.tasks import (
    LogPage,
    OutputsUpdate,
    ProgressUpdate,
    ReadyUpdate,
    SessionStarted,
    StopResult,
    TaskInfo,
    TaskStart,
    WaitResult,
)
from appyard.server.notifier import Subscription
from appyard.server.routes.deps import (
    PathId,
    QueryId,
    aread,
    aread_json,
    arun_json,
    authenticated,
    context,
    json_response,
    read,
    run,
)
from appyard.server.security import Principal
from appyard.server.services import tasks as svc
from appyard.server.services.task_rows import status_key

router = APIRouter(dependencies=[Depends(authenticated)], tags=["tasks"])
T = TypeVar("T")
KEEPALIVE_S = 15.0
#: a team stream waits this long after a wake before it looks: a burst of changes is one look
STREAM_COALESCE_S = 0.1


def parse_statuses(raw: str | None, field: str) -> list[Status]:
    if not raw:
        return []
    out: list[Status] = []
    for part in raw.split(","):
        part = part.strip().lower()
        if not part:
            continue
        try:
            out.append(Status(part))
        except ValueError:
            raise BadRequestError(
                f"{field}: unknown status {part!r}; use some of {[s.value for s in Status]}",
                field=field,
            ) from None
    return out


@router.post("/tasks", response_model=SessionStarted, status_code=201)
async def start(request: Request, body: TaskStart) -> Response:
    files_dir = context(request).settings.files_dir
    return await arun_json(request, lambda s, p: svc.start(s, p, body, files_dir), 201)


@router.get("/tasks", response_model=Page[TaskInfo])
def list_tasks(
    request: Request,
    team_id: QueryId,
    module_id: QueryId | None = None,
    status: str | None = None,
    name: str | None = None,
    limit: int = Query(default=50, ge=1, le=500),
    cursor: QueryId | None = None,
) -> Page[TaskInfo]:
    statuses = parse_statuses(status, "status")
    return run(
        request,
        lambda s, p: svc.list_tasks(s, p, team_id, module_id, statuses, name, limit, cursor),
    )


@router.get("/tasks/stream")
async def stream_team(
    request: Request, team_id: QueryId, after: str | None = Query(default=None, max_length=64)
) -> StreamingResponse:
    """Server-sent events: ``task`` (a TaskInfo; ``id:`` its ``updated_at``) for every task of
    the team created or changed after the stream opened, or after ``after`` (or the
    ``Last-Event-ID`` header). Coalesced: a burst of changes sends each task once, in its newest
    state. A comment every 15 s keeps the connection alive; it ends when the server shuts down.

    Each look reads only the rows changed since the last one (plus a short overlap window, for
    writes committed out of order; what was already sent from it is not sent again).
    """
    raw = after if after is not None else request.headers.get("last-event-id")
    feed = svc.TeamFeed(team_id, svc.parse_after(raw))

    def look(s: Session, p: Principal) -> svc.TeamChanges:
        return svc.team_changes(s, p, feed)

    sub, first = await _subscribe_then_read(request, (f"team:{team_id}",), look)

    async def events() -> AsyncIterator[str]:
        batch = first
        with sub:
            while True:
                for info in batch.items:
                    yield (
                        f"id: {svc.stream_id(info.updated_at)}\nevent: task\n"
                        f"data: {info.model_dump_json()}\n\n"
                    )
                if sub.closing:
                    return  # server shutting down: the client resumes from its last id
                if not batch.more:
                    while not await sub.wait(KEEPALIVE_S):
                        yield ": keepalive\n\n"
                    if sub.closing:
                        return
                    await asyncio.sleep(STREAM_COALESCE_S)  # let a burst of changes gather
                sub.clear()
                try:
                    batch = await aread(request, look)
                except NotFoundError:
                    return  # no longer a member: reopening answers 404

    return _event_stream(events())


@router.get("/tasks/{task_id}", response_model=TaskInfo)
async def get_task(request: Request, task_id: PathId) -> Response:
    return await aread_json(request, lambda s, p: svc.read_task_info(s, p, task_id))


@router.get("/tasks/{task_id}/wait", response_model=WaitResult)
async def wait(
    request: Request,
    task_id: PathId,
    until: str | None = None,
    timeout: float = Query(default=25.0, ge=0, le=600),
) -> Response:
    """Long-poll: answers the moment the status is one of ``until`` or terminal."""
    ctx = context(request)
    wanted = set(parse_statuses(until, "until")) | TERMINAL
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(timeout, ctx.settings.poll_timeout_s)
    # woken only by the statuses it answers at, not by every step on the way to them
    keys = sorted(status_key(task_id, st) for st in wanted)
    with ctx.notifier.subscribe(*keys) as sub:
        while True:
            sub.clear()
            info = await aread(request, _task_reader(task_id))
            if info.status in wanted:
                return json_response(WaitResult(task=info, timed_out=False))
            remaining = deadline - loop.time()
            if remaining <= 0 or sub.closing:
                return json_response(WaitResult(task=info, timed_out=True))
            await sub.wait(remaining)


@router.get("/tasks/{task_id}/watch")
async def watch(request: Request, task_id: PathId) -> StreamingResponse:
    """Server-sent events: the task (``task``, a TaskInfo) now and after every change of its
    status, progress, outputs or readiness, until it is terminal; then ``end``.

    Changes that come faster than a client reads are coalesced: it gets the newest state.
    """
    read_task = _task_reader(task_id)
    sub, first = await _subscribe_then_read(
        request, (f"task:{task_id}", f"progress:{task_id}"), read_task
    )

    async def events() -> AsyncIterator[str]:
        info, sent = first, ""
        with sub:
            while True:
                data = info.model_dump_json()
                if data != sent:
                    yield f"event: task\ndata: {data}\n\n"
                    sent = data
                if info.status in TERMINAL:
                    yield "event: end\ndata: {}\n\n"
                    return
                if sub.closing:
                    return  # server shutting down: the client opens the watch again
                if not await sub.wait(KEEPALIVE_S):
                    yield ": keepalive\n\n"
                sub.clear()
                info = await aread(request, read_task)

    return _event_stream(events())


@router.post("/tasks/{task_id}/stop", response_model=StopResult)
def stop(request: Request, task_id: PathId) -> StopResult:
    return run(request, lambda s, p: svc.stop(s, p, task_id))


@router.get("/tasks/{task_id}/logs", response_model=LogPage)
def read_logs(
    request: Request,
    task_id: PathId,
    after: int = Query(default=0, ge=0, le=MAX_ID),
    limit: int = Query(default=1000, ge=1, le=10000),
) -> Response:
    page = read(request, lambda s, p: svc.read_logs(s, p, task_id, after, limit))
    # serialized once, here: the page is already a LogPage, no second validation pass
    return Response(page.model_dump_json(), media_type="application/json")


@router.get("/tasks/{task_id}/logs/stream")
async def stream_logs(
    request: Request, task_id: PathId, after: int = Query(default=0, ge=0, le=MAX_ID)
) -> StreamingResponse:
    """Server-sent events: ``log`` per line (id = seq) as they arrive, then one ``end``."""
    sub, first = await _subscribe_then_read(
        request, (f"log:{task_id}", f"task:{task_id}"), _reader(task_id, after)
    )

    async def events() -> AsyncIterator[str]:
        page = first
        cursor = after
        with sub:
            while True:
                for line in page.items:
                    yield f"id: {line.seq}\nevent: log\ndata: {line.model_dump_json()}\n\n"
                cursor = page.next_seq
                if page.ended:
                    yield f"event: end\ndata: {json.dumps({'next_seq': cursor})}\n\n"
                    return
                if sub.closing:
                    return  # server shutting down: the client resumes from its last id
                if not page.items and not await sub.wait(KEEPALIVE_S):
                    yield ": keepalive\n\n"
                sub.clear()
                page = await aread(request, _reader(task_id, cursor))

    return _event_stream(events())


async def _subscribe_then_read(
    request: Request, keys: tuple[str, ...], fn: Callable[[Session, Principal], T]
) -> tuple[Subscription, T]:
    """Subscribe to ``keys``, then read: a change between the two is not missed. The caller
    owns the subscription (``with sub:``); a failed read closes it."""
    sub = context(request).notifier.subscribe(*keys).__enter__()
    try:
        return sub, await aread(request, fn)
    except BaseException:
        sub.__exit__(None, None, None)
        raise


def _event_stream(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _task_reader(task_id: int) -> Callable[[Session, Principal], TaskInfo]:
    return lambda s, p: svc.read_task_info(s, p, task_id)


def _reader(task_id: int, after: int) -> Callable[[Session, Principal], LogPage]:
    return lambda s, p: svc.read_logs(s, p, task_id, after, 1000)


@router.post("/tasks/{task_id}/progress", response_model=TaskInfo)
def set_progress(request: Request, task_id: PathId, body: ProgressUpdate) -> TaskInfo:
    return run(request, lambda s, p: svc.set_progress(s, p, task_id, body))


@router.post("/tasks/{task_id}/outputs", response_model=TaskInfo)
def set_outputs(request: Request, task_id: PathId, body: OutputsUpdate) -> TaskInfo:
    files_dir = context(request).settings.files_dir
    return run(request, lambda s, p: svc.set_outputs(s, p, task_id, body, files_dir))


@router.post("/tasks/{task_id}/ready", response_model=TaskInfo)
def set_ready(request: Request, task_id: PathId, body: ReadyUpdate) -> TaskInfo:
    return run(request, lambda s, p: svc.set_ready(s, p, task_id, body))


@router.post("/tasks/{task_id}/events", response_model=TaskInfo)
async def agent_event(request: Request, task_id: PathId, body: TaskEvent) -> Response:
    return await arun_json(request, lambda s, p: svc.agent_event(s, p, task_id, body))


@router.post("/tasks/{task_id}/logs")
def append_logs(request: Request, task_id: PathId, body: LogBatch) -> dict[str, int]:
    return {"end_offset": run(request, lambda s, p: svc.append_logs(s, p, task_id, body))}
