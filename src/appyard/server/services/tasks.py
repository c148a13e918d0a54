"""Sessions: start, read, list, stop, and the status moves reported for them.

Every status write goes through ``move``: a conditional UPDATE on the status that was read,
checked against the one transition table, so two racing writers cannot both win.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import ColumnElement, Select, Table, and_, bindparam, select, union_all
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from appyard.domain.status import TERMINAL, Status, status_after_exit
from appyard.domain.targets import TARGETS
from appyard.errors import (
    BadRequestError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
)
from appyard.schemas.agents import LogBatch, TaskEvent
from appyard.schemas.common import MAX_ID, Page
from appyard.schemas.tasks import (
    LogLine,
    LogPage,
    OutputsUpdate,
    Progress,
    ProgressUpdate,
    ReadyUpdate,
    SessionStarted,
    StopResult,
    TaskInfo,
    TaskStart,
)
from appyard.server.db.models import (
    Agent,
    App,
    Dataset,
    Member,
    Module,
    Project,
    Release,
    Task,
    TaskLog,
    Workspace,
    utcnow,
)
from appyard.server.notifier import emit
from appyard.server.security import Principal
from appyard.server.services.access import get_task
from appyard.server.services.accounts import ROLE_RANK, get_workspace, require_user, team_role
from appyard.server.services.ecosystem import get_module_row, pick_release
from appyard.server.services.files import TeamFiles, normalize
from appyard.server.services.manifest import release_manifest, validate_state
from appyard.server.services.paging import keyset_page
from appyard.server.services.task_rows import (
    TASKS,
    AnyRow,
    move,
    read_row,
    set_columns,
    task_keys,
)

LOG_TAIL_LINES = 10


def task_info(t: Task | AnyRow) -> TaskInfo:
    return TaskInfo(
        id=t.id,
        team_id=t.team_id,
        workspace_id=t.workspace_id,
        user_id=t.user_id,
        module_id=t.module_id,
        app_id=t.app_id,
        release_id=t.release_id,
        version=t.version,
        agent_id=t.agent_id,
        name=t.name,
        description=t.description,
        status=Status(t.status),
        params=t.params,
        log_level=t.log_level,
        attempt=t.attempt,
        exit_code=t.exit_code,
        error=t.error,
        progress=Progress(**t.progress) if t.progress else None,
        outputs=t.outputs or {},
        ready_url=t.ready_url,
        created_at=t.created_at,
        consumed_at=t.consumed_at,
        started_at=t.started_at,
        deployed_at=t.deployed_at,
        terminating_at=t.terminating_at,
        ended_at=t.ended_at,
        updated_at=t.updated_at,
    )


# -- reading ------------------------------------------------------------------------------------


#: a task's row and the caller's membership of its team, in one read of plain columns
_TASK_AS_MEMBER = (
    select(*Task.__table__.c, Member.role.label("member_role"))
    .outerjoin(Member, and_(Member.team_id == Task.team_id, Member.user_id == bindparam("user_id")))
    .where(Task.id == bindparam("task_id"))
)


def read_task_info(s: Session, p: Principal, task_id: int) -> TaskInfo:
    """``task_info(get_task(s, p, task_id))``, the same answers and refusals, in one statement
    (a wait or a watch reads it on every look)."""
    row = s.connection().execute(_TASK_AS_MEMBER, {"task_id": task_id, "user_id": p.user_id})
    t = row.first()
    if t is None:
        seen = False
    elif p.kind == "agent":
        seen = t.agent_id == p.agent_id
    elif p.kind == "user" and p.is_admin:
        seen = True  # every task's team exists (the task goes with it)
    else:  # a member may view ("viewer" is the lowest role); a task token: in its team only
        seen = t.member_role is not None and (p.kind == "user" or t.team_id == p.team_id)
    if t is None or not seen:
        raise NotFoundError(
            f"Task {task_id} not found, or it is not in one of your teams.", field="task_id"
        )
    return task_info(cast(AnyRow, t))  # the row has the task's attribute names


def list_tasks(
    s: Session,
    p: Principal,
    team_id: int,
    module_id: int | None = None,
    statuses: list[Status] | None = None,
    name: str | None = None,
    limit: int = 50,
    cursor: int | None = None,
) -> Page[TaskInfo]:
    team_role(s, p, team_id)
    stmt = list_statement(team_id, module_id, statuses, name, limit + 1, cursor)
    rows = list(s.scalars(stmt))
    return keyset_page(rows, limit, task_info)


def list_statement(
    team_id: int,
    module_id: int | None = None,
    statuses: list[Status] | None = None,
    name: str | None = None,
    limit: int = 50,
    cursor: int | None = None,
) -> Select[Task]:
    """The newest ``limit`` tasks of the team that match, in one SELECT.

    Filtered by status, each status is read on its own from an index that leads with it
    ((status, team_id, id), or (status, team_id, module_id, id) for an app), newest first,
    stopping after ``limit`` ids; the rows of the newest ``limit`` of those ids are read. So a
    list of running or queued sessions costs what it returns, however long the team's
    history: one ``status IN (...)`` over several statuses would have the database sort every
    row of those statuses, or walk the team's tasks in id order past every ended one.
    """

    def newest(what: Any, *where: ColumnElement[bool]) -> Select[Any]:
        stmt = select(what).where(Task.team_id == team_id, *where)
        if module_id is not None:
            stmt = stmt.where(Task.module_id == module_id)
        if name:
            stmt = stmt.where(Task.name == name)
        if cursor is not None:
            stmt = stmt.where(Task.id < cursor)
        return stmt.order_by(Task.id.desc()).limit(limit)

    values = sorted({st.value for st in statuses or ()})
    if len(values) == len(Status):
        values = []  # every status: no filter at all
    if len(values) <= 1:
        return newest(Task, *(Task.status == v for v in values))
    # ids only in the pieces (the index has them), whole rows for the page alone
    ids = union_all(*(select(newest(Task.id, Task.status == v).subquery()) for v in values))
    page = ids.subquery("page")
    return select(Task).where(Task.id.in_(select(page.c.id))).order_by(Task.id.desc()).limit(limit)


# -- a team's changes, live (GET /tasks/stream) --------------------------------------------------

#: each look re-reads this far behind the newest change it saw: a write stamped earlier may
#: commit later (PostgreSQL writers run in parallel; replicas' clocks differ a little)
STREAM_OVERLAP = timedelta(seconds=2)
#: rows handed out per look; a longer backlog (a resume from long ago) comes in several
STREAM_BATCH = 500
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: how often a stream checks again that its caller is still a member of the team
STREAM_RECHECK_S = 15.0


class TeamFeed:
    """Where one team stream stands: ``cursor`` is the newest ``updated_at`` it has seen;
    ``sent`` the (task id, updated_at) states it handed out within the overlap window."""

    def __init__(self, team_id: int, cursor: datetime) -> None:
        self.team_id = team_id
        self.cursor = cursor
        self.sent: set[tuple[int, datetime]] = set()
        self.checked_at: float | None = None  # when membership was last checked (monotonic)


@dataclass
class TeamChanges:
    items: list[TaskInfo]
    more: bool  # the batch was full: look again at once


def parse_after(raw: str | None, field_name: str = "after") -> datetime:
    """A stream's starting point: an ISO time (a stream event's ``id`` is one), no later
    than now; none: now. A time without a zone is UTC."""
    now = utcnow()
    if raw is None or not raw.strip():
        return now
    try:
        at = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise BadRequestError(
            f"{field_name}: {raw!r} is not an ISO time such as 2030-01-31T12:00:00.000000Z "
            "(the id of the stream's last event)",
            field=field_name,
        ) from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return min(max(at, EPOCH), now)


def stream_id(at: datetime) -> str:
    """A stream event's id: its task's ``updated_at``, URL-safe (``Z``, not ``+00:00``)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def team_changes(s: Session, p: Principal, feed: TeamFeed) -> TeamChanges:
    """The team's tasks changed since the feed's cursor, each once in its newest state, oldest
    change first; advances the feed. 404 unless the caller is a member (checked on the first
    look, then every ``STREAM_RECHECK_S``: with many streams it is a large part of a look).

    Two reads, both narrow: the (id, updated_at) pairs of the overlap window and after, from
    the index (team_id, updated_at, id); then the whole rows of the pairs not sent yet.
    """
    now = time.monotonic()
    if feed.checked_at is None or now - feed.checked_at >= STREAM_RECHECK_S:
        team_role(s, p, feed.team_id)
        feed.checked_at = now
    horizon = feed.cursor - STREAM_OVERLAP
    limit = STREAM_BATCH + len(feed.sent)
    stamps = s.execute(
        select(Task.id, Task.updated_at)
        .where(Task.team_id == feed.team_id, Task.updated_at > horizon)
        .order_by(Task.updated_at, Task.id)
        .limit(limit)
    ).all()
    fresh = [task_id for task_id, at in stamps if (task_id, at) not in feed.sent]
    rows: list[Task] = []
    if fresh:
        rows = list(s.scalars(select(Task).where(Task.id.in_(fresh))))
        rows.sort(key=lambda t: (t.updated_at, t.id))
    # a row may have changed again between the two reads: what is sent is what counts
    feed.sent.update((t.id, t.updated_at) for t in rows)
    if stamps:
        feed.cursor = max(feed.cursor, stamps[-1][1])
    horizon = feed.cursor - STREAM_OVERLAP
    feed.sent = {pair for pair in feed.sent if pair[1] > horizon}
    return TeamChanges(items=[task_info(t) for t in rows], more=len(stamps) >= limit)


# -- starting and stopping ----------------------------------------------------------------------


def _target_field(key: str) -> str:
    return f"params.state.{key}"


def _check_project(s: Session, team_id: int, key: str, value: Any) -> None:
    project_id = int(value)
    project = s.get(Project, project_id) if 1 <= project_id <= MAX_ID else None
    if project is None or project.team_id != team_id:  # another team's: as if missing
        raise BadRequestError(
            f"{_target_field(key)}: there is no images project {project_id} in team {team_id}; "
            "pick one of the team's projects (api.project.get_list(workspace_id)).",
            field=_target_field(key),
        )


def _check_dataset(s: Session, team_id: int, key: str, value: Any) -> None:
    dataset_id = int(value)
    dataset = s.get(Dataset, dataset_id) if 1 <= dataset_id <= MAX_ID else None
    project = s.get(Project, dataset.project_id) if dataset is not None else None
    if project is None or project.team_id != team_id:  # another team's: as if missing
        raise BadRequestError(
            f"{_target_field(key)}: there is no images dataset {dataset_id} in team {team_id}; "
            "pick one of the datasets of the team's projects (api.dataset.get_list(project_id)).",
            field=_target_field(key),
        )


def _check_team_path(files_dir: Path, team_id: int, key: str, value: Any, folder: bool) -> str:
    """A ``folder``/``file`` target: a normalized team path that is a folder / a file now."""
    field = _target_field(key)
    path = normalize(value, field)
    files = TeamFiles(files_dir, team_id)
    kind, other = ("folder", "file") if folder else ("file", "folder")
    try:
        is_dir: bool | None = files.info(path).is_dir
        if not is_dir and not files.is_file(path):
            is_dir = None  # a socket or the like: not a team file
    except NotFoundError:
        is_dir = None
    except BadRequestError as exc:  # a symbolic link on the way, or outside the team's root
        message = exc.message.removeprefix("path: ")
        raise BadRequestError(f"{field}: {message}", field=field) from None
    if is_dir is None:
        what = (
            "make it (api.file.mkdir) or upload files into it (api.file.upload)"
            if folder
            else "upload it first (api.file.upload)"
        )
        raise BadRequestError(
            f"{field}: there is no {kind} {path!r} in team {team_id}'s files; {what}, "
            f"or pick an existing {kind} (api.file.list(team_id, path)).",
            field=field,
        )
    if is_dir != folder:
        other_target = "files_file (file=...)" if folder else "files_folder (folder=...)"
        raise BadRequestError(
            f"{field}: {path!r} is a {other} in team {team_id}'s files, not a {kind}; "
            f"pick a {kind}, or start an app whose target is {other_target}.",
            field=field,
        )
    return path


def check_target(
    s: Session, files_dir: Path, team_id: int, target: str | None, state: dict[str, Any]
) -> dict[str, Any]:
    """The target value must name something of the team (``team_id``): an images project or
    dataset of it, or a folder / file of its team files. Another team's project or dataset is
    refused exactly like a missing one. Returns the state, with a path target normalized."""
    spec = TARGETS.get(target) if target is not None else None
    if spec is None or spec.state_key is None or spec.state_key not in state:
        return state
    key = spec.state_key
    value = state[key]
    if target == "images_project":
        _check_project(s, team_id, key, value)
    elif target == "images_dataset":
        _check_dataset(s, team_id, key, value)
    elif target in ("files_folder", "files_file"):
        path = _check_team_path(files_dir, team_id, key, value, folder=target == "files_folder")
        return {**state, key: path}
    return state


#: a workspace's team and the caller's role in it, in one read
_WORKSPACE_ROLE = (
    select(Workspace.team_id, Member.role)
    .outerjoin(
        Member, and_(Member.team_id == Workspace.team_id, Member.user_id == bindparam("user_id"))
    )
    .where(Workspace.id == bindparam("workspace_id"))
)


def _starting_team(s: Session, p: Principal, workspace_id: int) -> int:
    """The team of the workspace, if the caller may start sessions in it (``developer`` or
    higher); else ``get_workspace``'s own refusal (404 or 403), word for word."""
    row = (
        s.connection()
        .execute(_WORKSPACE_ROLE, {"workspace_id": workspace_id, "user_id": p.user_id})
        .first()
    )
    if row is not None:
        role = "admin" if p.kind == "user" and p.is_admin else row.role
        in_team = p.kind == "user" or (p.kind == "task" and p.team_id == row.team_id)
        if in_team and role is not None and ROLE_RANK[role] >= ROLE_RANK["developer"]:
            return int(row.team_id)
    return get_workspace(s, p, workspace_id, "developer").team_id  # refuses as it always has


def _release_of(on_version: bool) -> Select[Any]:
    on = Release.module_id == Module.id
    if on_version:
        on = and_(on, Release.version == bindparam("version"))
    return (
        select(Release.id, Release.version, Release.sha256, Release.config)
        .select_from(Module)
        .outerjoin(Release, on)
        .where(Module.id == bindparam("module_id"))
        .order_by(Release.id.desc())
        .limit(1)
    )


#: a module's newest release, and its release of a version
_NEWEST_RELEASE, _RELEASE_OF_VERSION = _release_of(False), _release_of(True)


def _newest_release(s: Session, module_id: int, version: str | None) -> Any:
    """The release a start runs (id, version, sha256, config: not the readme), in one read with the
    module's; else ``get_module_row`` / ``pick_release``'s own 404, word for word."""
    statement = _NEWEST_RELEASE if version is None else _RELEASE_OF_VERSION
    params = {"module_id": module_id, "version": version}
    row = s.connection().execute(statement, params).first()
    if row is None or row.id is None:
        get_module_row(s, module_id)
        return pick_release(s, module_id, version)
    return row


#: what a start reads and writes beyond the release: the agent's team, the team's app, the task
_AGENT_TEAM = select(Agent.team_id).where(Agent.id == bindparam("agent_id"))
_APP_OF = select(App.id).where(
    App.team_id == bindparam("team_id"), App.module_id == bindparam("module_id")
)
_NEW_TASK = TASKS.insert().returning(TASKS.c.id)


def start(s: Session, p: Principal, body: TaskStart, files_dir: Path) -> SessionStarted:
    """Queue a session after every check; a retried call with the same key returns the first.

    Nothing is written before the last check passed: a refusal leaves no task and no app.
    """
    user_id = require_user(p)
    if body.idempotency_key:
        prior = s.scalar(
            select(Task).where(
                Task.user_id == user_id, Task.idempotency_key == body.idempotency_key
            )
        )
        if prior is not None:
            get_task(s, p, prior.id)
            return _started(prior)
    team_id = _starting_team(s, p, body.workspace_id)
    module_id = body.module_id
    release = _newest_release(s, module_id, body.version)
    params = dict(body.params)
    state = params.get("state", {}) if "state" in params else params
    if "state" not in params:
        params = {"state": state}
    if not isinstance(state, dict):
        raise BadRequestError("params.state must be a JSON object", field="params.state")
    if "context" in params and not isinstance(params["context"], dict):
        raise BadRequestError("params.context must be a JSON object", field="params.context")
    target = validate_state(release_manifest(release.sha256, release.config), state)
    checked = check_target(s, files_dir, team_id, target, state)
    if checked is not state:
        state = checked
        params = {**params, "state": state}
    db = s.connection()  # plain statements from here: a start is on every session's path
    if body.agent_id is not None:
        agent_team = db.execute(_AGENT_TEAM, {"agent_id": body.agent_id}).scalar()
        if agent_team != team_id:
            raise BadRequestError(
                f"agent_id {body.agent_id} is not an agent of team {team_id}; "
                "list the team's agents with api.agent.get_list(team_id).",
                field="agent_id",
            )
    app_id = db.execute(_APP_OF, {"team_id": team_id, "module_id": module_id}).scalar()
    if app_id is None:
        app = App(team_id=team_id, module_id=module_id)
        s.add(app)
        s.flush()
        app_id = app.id
    now = utcnow()
    try:
        task_id = db.execute(
            _NEW_TASK,
            dict(
                team_id=team_id,
                workspace_id=body.workspace_id,
                user_id=user_id,
                module_id=module_id,
                app_id=app_id,
                release_id=release.id,
                version=release.version,
                requested_agent_id=body.agent_id,
                agent_id=body.agent_id,
                name=body.task_name,
                description=body.description,
                status=Status.QUEUED.value,
                params=params,
                log_level=body.log_level,
                idempotency_key=body.idempotency_key,
                outputs={},
                created_at=now,
                updated_at=now,
            ),
        ).scalar_one()
    except IntegrityError:
        raise ConflictError(
            "A session with this idempotency_key is being started; retry to get it.",
            field="idempotency_key",
        ) from None
    emit(s, f"task:{task_id}", f"team:{team_id}")  # task_keys of the new task
    emit(s, f"agent:{body.agent_id}" if body.agent_id else f"queue:{team_id}")
    return SessionStarted(
        task_id=task_id,
        user_id=user_id,
        module_id=module_id,
        app_id=app_id,
        status=Status.QUEUED,
    )


def _started(t: Task) -> SessionStarted:
    return SessionStarted(
        task_id=t.id,
        user_id=t.user_id,
        module_id=t.module_id,
        app_id=t.app_id,
        status=Status(t.status),
    )


def stop(s: Session, p: Principal, task_id: int) -> StopResult:
    """Queued/consumed: stopped at once. Running: terminating, and the agent is told now."""
    t = get_task(s, p, task_id, "developer")
    if p.kind == "task" and p.task_id != t.id and t.team_id != p.team_id:
        raise PermissionDeniedError("A task token can stop tasks of its own team only.")
    status = Status(t.status)
    if status in TERMINAL or status is Status.TERMINATING:
        return StopResult(task_id=t.id, status=status)
    if status in (Status.QUEUED, Status.CONSUMED):
        move(s, t, Status.STOPPED, error=None)
        if t.agent_id is not None and status is Status.CONSUMED:
            # the agent may be preparing it; tell it to drop it
            t.stop_delivered = False
            emit(s, f"agent:{t.agent_id}")
    else:
        move(s, t, Status.TERMINATING, stop_delivered=False)
        emit(s, f"agent:{t.agent_id}")
    return StopResult(task_id=t.id, status=Status(t.status))


# -- what the agent reports -----------------------------------------------------------------------


def _held_by(s: Session, p: Principal, task_id: int) -> AnyRow:
    """The task's row if this agent holds it; else 404 (also to any other kind of caller)."""
    t = read_row(s, task_id) if p.kind == "agent" else None
    if t is None or t.agent_id != p.agent_id:
        raise NotFoundError(f"Task {task_id} is not held by this agent.", field="task_id")
    return t


def log_tail(s: Session, task_id: int, n: int = LOG_TAIL_LINES) -> list[str]:
    rows = s.scalars(
        select(TaskLog.text).where(TaskLog.task_id == task_id).order_by(TaskLog.seq.desc()).limit(n)
    ).all()
    return list(reversed(rows))


def error_text(s: Session, task_id: int, reason: str) -> str:
    tail = log_tail(s, task_id)
    if not tail:
        return reason
    return reason + "\nLast log lines:\n" + "\n".join(tail)


def agent_event(s: Session, p: Principal, task_id: int, ev: TaskEvent) -> TaskInfo:
    t = _held_by(s, p, task_id)
    if ev.logs is not None:  # the log's last batch first, exactly as if sent just before
        t = _append(s, t, ev.logs)
    status = Status(t.status)
    if ev.kind == "started":
        if status is Status.QUEUED:
            # it was taken back (the agent was thought lost): the app must not run on
            raise ConflictError(
                f"Task {t.id} was queued again while this agent prepared it; stop the app.",
                field="status",
                details={"status": str(status)},
            )
        if status is Status.CONSUMED:
            t = move(s, t, Status.STARTED, pid=ev.pid)
        # else already reported, or stopped meanwhile (the agent learns of the stop on its poll)
        return task_info(t)
    if status in TERMINAL:
        if not t.stop_delivered:
            t = set_columns(s, t.id, stop_delivered=True)
        return task_info(t)  # a retried report after the end: nothing more to do
    # the agent knows the app ended (no stop to send: ``stop_delivered``, written with the
    # move below), and its long-poll wakes: a slot is free
    emit(s, f"agent:{t.agent_id}")
    if ev.kind == "failed":
        reason = ev.error or "the app could not be started"
        new = Status.STOPPED if status is Status.TERMINATING else Status.ERROR
        error = error_text(s, t.id, reason) if new is Status.ERROR else None
        return task_info(move(s, t, new, error=error, stop_delivered=True))
    if ev.stopped and status in (Status.STARTED, Status.DEPLOYED):
        t = move(s, t, Status.TERMINATING)
        status = Status.TERMINATING
    new = status_after_exit(status, ev.exit_code)
    error = None
    if new is Status.ERROR:
        code = ev.exit_code
        if code is not None and code < 0:
            reason = f"the app was killed by signal {-code}"
        else:
            reason = f"the app exited with code {code}"
        if ev.error:
            reason += f": {ev.error}"
        error = error_text(s, t.id, reason)
    return task_info(move(s, t, new, exit_code=ev.exit_code, error=error, stop_delivered=True))


#: a batch is appended only where the stored log ends (``log_offset`` read): at most once
_APPEND = (
    TASKS.update()
    .where(TASKS.c.id == bindparam("_id"), TASKS.c.log_offset == bindparam("_offset"))
    .values(log_offset=bindparam("_end"), log_count=TASKS.c.log_count + bindparam("_n"))
    .returning(*TASKS.c)
)
_LOG_LINES = cast(Table, TaskLog.__table__).insert()


def append_logs(s: Session, p: Principal, task_id: int, batch: LogBatch) -> int:
    """Append a batch at most once: it must begin where the stored log ends."""
    return int(_append(s, _held_by(s, p, task_id), batch).log_offset)


def _append(s: Session, t: AnyRow, batch: LogBatch) -> AnyRow:
    """``append_logs`` on the task's row; the row after it."""
    if batch.end_offset <= t.log_offset:
        return t  # a retry of a batch already written
    if batch.offset != t.log_offset:
        raise ConflictError(
            f"Log batch starts at {batch.offset} but task {t.id}'s log ends at {t.log_offset}; "
            "resend from there.",
            field="offset",
            details={"end_offset": t.log_offset},
        )
    n = len(batch.lines)
    db = s.connection()
    params = {"_id": t.id, "_offset": batch.offset, "_end": batch.end_offset, "_n": n}
    after = db.execute(_APPEND, params).first()
    if after is None:
        # another request (a retry of this very batch, say) wrote meanwhile: look again
        now = read_row(s, t.id)
        assert now is not None  # (a task is never deleted while its agent holds it)
        if batch.end_offset <= now.log_offset:
            return now
        raise ConflictError(
            f"Task {t.id}'s log now ends at {now.log_offset}; resend from there.",
            field="offset",
            details={"end_offset": now.log_offset},
        )
    if batch.lines:  # one multi-row INSERT
        first = t.log_count + 1  # the row had the offset read, so it had the count read too
        db.execute(
            _LOG_LINES,
            [
                {"task_id": t.id, "seq": first + i, "t": ln.t, "level": ln.level, "text": ln.text}
                for i, ln in enumerate(batch.lines)
            ],
        )
    emit(s, f"log:{t.id}")
    return after


def read_logs(s: Session, p: Principal, task_id: int, after: int = 0, limit: int = 1000) -> LogPage:
    t = get_task(s, p, task_id)
    # plain columns, not ORM objects, and lines built without re-validation (the database holds
    # only what was validated on the way in): a page of 10,000 lines is the hot path of a log
    rows = s.execute(
        select(TaskLog.seq, TaskLog.t, TaskLog.level, TaskLog.text)
        .where(TaskLog.task_id == t.id, TaskLog.seq > after)
        .order_by(TaskLog.seq)
        .limit(limit)
    )
    items = [LogLine.model_construct(seq=q, t=at, level=lv, text=tx) for q, at, lv, tx in rows]
    next_seq = items[-1].seq if items else after
    ended = Status(t.status) in TERMINAL and next_seq >= t.log_count
    return LogPage(items=items, next_seq=next_seq, ended=ended)


# -- what the app itself reports ------------------------------------------------------------------


def _own_task(s: Session, p: Principal, task_id: int) -> Task:
    t = get_task(s, p, task_id)
    if p.kind != "task" or p.task_id != t.id:
        raise PermissionDeniedError(
            "Only the app of this task (with its API_TOKEN) can report its progress or outputs."
        )
    return t


def set_progress(s: Session, p: Principal, task_id: int, body: ProgressUpdate) -> TaskInfo:
    t = _own_task(s, p, task_id)
    if body.total is not None and body.current > body.total:
        raise BadRequestError(
            f"progress current {body.current:g} is larger than total {body.total:g}",
            field="current",
        )
    t.progress = body.model_dump()
    t.updated_at = utcnow()
    emit(s, f"progress:{t.id}", f"team:{t.team_id}")
    return task_info(t)


def _team_file_outputs(files_dir: Path, team_id: int, outputs: dict[str, Any]) -> dict[str, Any]:
    """Outputs ``{"type": "team_file", "path": ...}`` must name a file of the team: normalized."""
    checked = dict(outputs)
    for key, value in outputs.items():
        if not (isinstance(value, dict) and value.get("type") == "team_file"):
            continue
        field = f"outputs.{key}.path"
        path = normalize(value.get("path"), field)
        try:
            found = TeamFiles(files_dir, team_id).is_file(path)
        except BadRequestError as exc:  # a symbolic link on the way
            message = exc.message.removeprefix("path: ")
            raise BadRequestError(f"{field}: {message}", field=field) from None
        if not found:
            raise BadRequestError(
                f"{field}: no file {path!r} in team {team_id}'s files; upload it first "
                "(api.file.upload), then set the output.",
                field=field,
            )
        checked[key] = {**value, "path": path}
    return checked


def set_outputs(
    s: Session, p: Principal, task_id: int, body: OutputsUpdate, files_dir: Path
) -> TaskInfo:
    t = _own_task(s, p, task_id)
    outputs = _team_file_outputs(files_dir, t.team_id, body.outputs)
    t.outputs = {**(t.outputs or {}), **outputs}
    t.updated_at = utcnow()
    emit(s, *task_keys(t))
    return task_info(t)


def set_ready(s: Session, p: Principal, task_id: int, body: ReadyUpdate) -> TaskInfo:
    t = _own_task(s, p, task_id)
    if Status(t.status) is Status.DEPLOYED:
        return task_info(t)
    move(s, t, Status.DEPLOYED, ready_url=body.url)
    return task_info(t)
