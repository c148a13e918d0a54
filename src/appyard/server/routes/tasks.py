"""Sessions: start, list, read, wait (long-poll), stop, logs (read and live), app reports."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from appyard.domain.status import TERMINAL, Status
from appyard.errors import BadRequestError
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
from appyard.server import keys
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
from appyard.server.routes.follow import (
    EVENT_STREAM_DOC,
    KEEPALIVE,
    EventStreamResponse,
    Follow,
    event_stream,
    snapshot_stream,
)
from appyard.server.security import Principal
from appyard.server.services import access, agent_reports, app_reports, task_feeds, task_start
from appyard.server.services import tasks as sessions

router = APIRouter(dependencies=[Depends(authenticated)], tags=["tasks"])
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


#: a ``wait`` condition beside the statuses: the app said it is ready for calls
READY = "ready"


def parse_until(raw: str | None) -> tuple[set[Status], bool]:
    """``until`` of a wait: statuses, and ``ready`` (the app said it is ready for calls)."""
    parts = [part.strip().lower() for part in (raw or "").split(",")]
    ready = READY in parts
    try:
        statuses = parse_statuses(",".join(p for p in parts if p != READY), "until")
    except BadRequestError as exc:
        raise BadRequestError(f"{exc.message}, or {READY!r}", field="until") from None
    return set(statuses), ready


@router.post("/tasks", response_model=SessionStarted, status_code=201)
async def start(request: Request, body: TaskStart) -> Response:
    files_dir = context(request).settings.files_dir
    return await arun_json(
        request, lambda s, p: task_start.start(s, p, body=body, files_dir=files_dir), 201
    )


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
        lambda s, p: task_feeds.list_tasks(
            s,
            p,
            team_id=team_id,
            module_id=module_id,
            statuses=statuses,
            name=name,
            limit=limit,
            cursor=cursor,
        ),
    )


@router.get("/tasks/stream", response_class=EventStreamResponse, responses=EVENT_STREAM_DOC)
async def stream_team(
    request: Request, team_id: QueryId, after: str | None = Query(default=None, max_length=64)
) -> StreamingResponse:
    """Server-sent events: ``task`` (a TaskInfo; ``id:`` its ``updated_at``) for every task of
    the team created or changed after the stream opened, or after ``after`` (or the
    ``Last-Event-ID`` header). Coalesced: a burst of changes sends each task once, in its newest
    state. A comment every 15 s (``APPYARD_STREAM_KEEPALIVE_S``) keeps the connection alive; it
    ends when the server shuts down, or with a ``closed`` event when the token is revoked or is
    no longer a member's.

    Each look reads only the rows changed since the last one (plus a short overlap window, for
    writes committed out of order; what was already sent from it is not sent again).
    """
    raw = after if after is not None else request.headers.get("last-event-id")
    feed = task_feeds.TeamFeed(team_id, task_feeds.parse_after(raw))

    def look(s: Session, p: Principal) -> task_feeds.TeamChanges:
        return task_feeds.team_changes(s, p, feed=feed)

    async def look_after(fired: set[str]) -> task_feeds.TeamChanges:
        if follow.access_changed(fired):
            feed.checked_at = None  # membership is checked now and then: now, this time
        return await aread(request, look)

    follow = Follow(
        context(request).notifier,
        (keys.team(team_id),),
        look_after,
        keepalive_s=context(request).settings.stream_keepalive_s,
        again=lambda batch: batch.more,  # the batch was full: look again at once
        settle_s=STREAM_COALESCE_S,
        look_on_keepalive=False,  # a look reads what changed: without a wake, nothing did
        request=request,
        team_of=lambda _: team_id,
    )
    await follow.open()

    async def events() -> AsyncIterator[str]:
        async with follow:
            async for batch in follow.looks():
                if batch is None:
                    yield KEEPALIVE
                    continue
                for info in batch.items:
                    yield (
                        f"id: {task_feeds.stream_id(info.updated_at)}\nevent: task\n"
                        f"data: {info.model_dump_json()}\n\n"
                    )
        # ended at shutdown: the client resumes from its last id; no longer a member (or the
        # token revoked): a last ``closed`` event says so (``follow.event_stream``)

    return event_stream(events(), follow)


@router.get("/tasks/{task_id}", response_model=TaskInfo)
async def get_task(request: Request, task_id: PathId) -> Response:
    return await aread_json(request, _task_reader(task_id))


@router.get("/tasks/{task_id}/wait", response_model=WaitResult)
async def wait(
    request: Request,
    task_id: PathId,
    until: str | None = None,
    timeout: float = Query(default=25.0, ge=0, le=600),
) -> Response:
    """Long-poll: answers the moment the status is one of ``until`` or terminal, or, with
    ``ready`` in ``until``, the moment the app says it is ready for calls (``task.ready``)."""
    statuses, ready = parse_until(until)
    wanted = statuses | TERMINAL
    # woken only by the statuses it answers at, not by every step on the way to them
    wake = sorted(keys.task_status(task_id, st) for st in wanted)
    if ready:
        wake.append(keys.task_ready(task_id))
    ctx = context(request)
    read_task = _task_reader(task_id)
    follow = Follow(
        ctx.notifier,
        wake,
        lambda _: aread(request, read_task),
        timeout=min(timeout, ctx.settings.poll_timeout_s),
        request=request,
        team_of=_team_of_task,
    )

    def done(info: TaskInfo) -> bool:
        return info.status in wanted or (ready and info.ready)

    info = await follow.until(done)
    return json_response(WaitResult(task=info, timed_out=not done(info)))


@router.get(
    "/tasks/{task_id}/watch", response_class=EventStreamResponse, responses=EVENT_STREAM_DOC
)
async def watch(request: Request, task_id: PathId) -> StreamingResponse:
    """Server-sent events: the task (``task``, a TaskInfo) now and after every change of its
    status, progress, outputs or readiness, until it is terminal; then ``end``.

    Changes that come faster than a client reads are coalesced: it gets the newest state.
    """
    read_task = _task_reader(task_id)
    follow = Follow(
        context(request).notifier,
        (keys.task(task_id), keys.progress(task_id)),
        lambda _: aread(request, read_task),
        keepalive_s=context(request).settings.stream_keepalive_s,
        request=request,
        team_of=_team_of_task,
    )
    await follow.open()

    return snapshot_stream(follow, "task", lambda t: t.status in TERMINAL)


@router.post("/tasks/{task_id}/stop", response_model=StopResult)
def stop(request: Request, task_id: PathId) -> StopResult:
    return run(request, lambda s, p: sessions.stop(s, p, task_id=task_id))


@router.get("/tasks/{task_id}/logs", response_model=LogPage)
def read_logs(
    request: Request,
    task_id: PathId,
    after: int = Query(default=0, ge=0, le=MAX_ID),
    limit: int = Query(default=1000, ge=1, le=10000),
) -> Response:
    page = read(
        request,
        lambda s, p: task_feeds.read_logs(s, p, task_id=task_id, after=after, limit=limit),
    )
    # serialized once, here: the page is already a LogPage, no second validation pass
    return Response(page.model_dump_json(), media_type="application/json")


@router.get(
    "/tasks/{task_id}/logs/stream", response_class=EventStreamResponse, responses=EVENT_STREAM_DOC
)
async def stream_logs(
    request: Request, task_id: PathId, after: int = Query(default=0, ge=0, le=MAX_ID)
) -> StreamingResponse:
    """Server-sent events: ``log`` per line (id = seq) as they arrive, then one ``end``."""
    cursor = after
    team_id = 0  # the task's, read with the first page

    def read_page(s: Session, p: Principal) -> LogPage:
        nonlocal team_id
        page = task_feeds.read_logs(s, p, task_id=task_id, after=cursor, limit=1000)
        if not team_id:  # the row read_logs loaded: no second statement
            team_id = access.get_task(s, p, task_id).team_id
        return page

    follow = Follow(
        context(request).notifier,
        (keys.log(task_id), keys.task(task_id)),
        lambda _: aread(request, read_page),
        keepalive_s=context(request).settings.stream_keepalive_s,
        again=lambda page: bool(page.items),  # a page of lines: more may be waiting
        request=request,
        team_of=lambda _: team_id,
    )
    await follow.open()

    async def events() -> AsyncIterator[str]:
        nonlocal cursor
        async with follow:
            async for page in follow.looks():
                if page is None:
                    yield KEEPALIVE
                    continue
                for line in page.items:
                    yield f"id: {line.seq}\nevent: log\ndata: {line.model_dump_json()}\n\n"
                cursor = page.next_seq
                if page.ended:
                    yield f"event: end\ndata: {json.dumps({'next_seq': cursor})}\n\n"
                    return
        # ended at shutdown: the client resumes from its last id

    return event_stream(events(), follow)


def _team_of_task(info: TaskInfo) -> int:
    return info.team_id


def _task_reader(task_id: int) -> Callable[[Session, Principal], TaskInfo]:
    return lambda s, p: sessions.read_task_info(s, p, task_id=task_id)


@router.post("/tasks/{task_id}/progress", response_model=TaskInfo)
def set_progress(request: Request, task_id: PathId, body: ProgressUpdate) -> TaskInfo:
    return run(request, lambda s, p: app_reports.set_progress(s, p, task_id=task_id, body=body))


@router.post("/tasks/{task_id}/outputs", response_model=TaskInfo)
def set_outputs(request: Request, task_id: PathId, body: OutputsUpdate) -> TaskInfo:
    files_dir = context(request).settings.files_dir
    return run(
        request,
        lambda s, p: app_reports.set_outputs(s, p, task_id=task_id, body=body, files_dir=files_dir),
    )


@router.post("/tasks/{task_id}/ready", response_model=TaskInfo)
def set_ready(request: Request, task_id: PathId, body: ReadyUpdate) -> TaskInfo:
    return run(request, lambda s, p: app_reports.set_ready(s, p, task_id=task_id, body=body))


@router.post("/tasks/{task_id}/events", response_model=TaskInfo)
async def agent_event(request: Request, task_id: PathId, body: TaskEvent) -> Response:
    return await arun_json(
        request, lambda s, p: agent_reports.agent_event(s, p, task_id=task_id, ev=body)
    )


@router.post("/tasks/{task_id}/logs")
def append_logs(request: Request, task_id: PathId, body: LogBatch) -> dict[str, int]:
    end = run(request, lambda s, p: agent_reports.append_logs(s, p, task_id=task_id, batch=body))
    return {"end_offset": end}
