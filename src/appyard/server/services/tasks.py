"""A session as clients see it: its wire form (``task_info``), reading it, stopping it.

The rest of a session's life has a module each: ``task_start`` (every check, then the queued
row), ``task_feeds`` (lists, the team's live feed, log pages), ``agent_reports`` (what its agent
reports) and ``app_reports`` (what the app itself reports). Every status write goes through
``task_rows.move``: a conditional UPDATE on the status that was read, checked against the one
transition table, so two racing writers cannot both win.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import and_, bindparam, select
from sqlalchemy.orm import Session

from appyard.domain.status import TERMINAL, Status
from appyard.errors import ConflictError, NotFoundError, PermissionDeniedError
from appyard.schemas.tasks import Progress, StopResult, TaskInfo
from appyard.schemas.usage import TaskUsage
from appyard.server import keys
from appyard.server.db.models import Member, Task
from appyard.server.notifier import emit
from appyard.server.security import Principal
from appyard.server.services.access import get_task
from appyard.server.services.placement import why_waiting
from appyard.server.services.task_rows import AnyRow, move
from appyard.server.services.task_usage import usage_history


def task_info(t: Task | AnyRow, history: Sequence[Mapping[str, Any]] = ()) -> TaskInfo:
    """The wire form of a task, from its ORM object or its plain row alike; ``history``: its
    usage history, read apart (``task_usage.usage_history``) for the task's own reads only:
    lists, the stream and the answers to agents and apps leave it empty."""
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
        ready=bool(t.ready),
        created_at=t.created_at,
        consumed_at=t.consumed_at,
        started_at=t.started_at,
        ready_at=t.ready_at,
        terminating_at=t.terminating_at,
        ended_at=t.ended_at,
        updated_at=t.updated_at,
        pipeline_run_id=t.pipeline_run_id,
        pipeline_step=t.pipeline_step,
        resources=t.resources or {},
        gpus=t.gpus or [],
        usage=TaskUsage(**t.usage) if t.usage else None,
        usage_history=[TaskUsage(**u) for u in history],
    )


#: a task's row and the caller's membership of its team, in one read of plain columns
_TASK_AS_MEMBER = (
    select(*Task.__table__.c, Member.role.label("member_role"))
    .outerjoin(Member, and_(Member.team_id == Task.team_id, Member.user_id == bindparam("user_id")))
    .where(Task.id == bindparam("task_id"))
)


def read_task_info(s: Session, p: Principal, *, task_id: int) -> TaskInfo:
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
    # the row has the task's attribute names; a history only where there are figures
    history = usage_history(s.connection(), task_id) if t.usage else ()
    info = task_info(cast(AnyRow, t), history)
    if info.status is Status.QUEUED:
        info.wait_reason = why_waiting(s, t)
    return info


#: a stop that lost a race to a status change looks again this many times in all
STOP_ATTEMPTS = 3


def _stop_once(s: Session, t: Task) -> None:
    status = Status(t.status)
    if status in TERMINAL or status is Status.TERMINATING:
        return
    if status in (Status.QUEUED, Status.CONSUMED):
        move(s, t, Status.STOPPED, error=None)
        if t.agent_id is not None and status is Status.CONSUMED:
            # the agent may be preparing it; tell it to drop it
            t.stop_delivered = False
            emit(s, keys.agent(t.agent_id))
    else:
        move(s, t, Status.TERMINATING, stop_delivered=False)
        if t.agent_id is not None:  # (always, once an agent started it)
            emit(s, keys.agent(t.agent_id))


def stop_session(s: Session, *, task_id: int) -> None:
    """The stop protocol for a session the server itself stops (a pipeline's timeout or the
    stop of its run): queued or consumed, stopped now; running, terminating and its agent
    told. No caller to check: the caller decided."""
    t = s.get(Task, task_id)
    for attempt in range(1, STOP_ATTEMPTS + 1):
        if t is None:
            return
        try:
            _stop_once(s, t)
            return
        except ConflictError:
            if attempt == STOP_ATTEMPTS:
                raise
            s.refresh(t)


def stop(s: Session, p: Principal, *, task_id: int) -> StopResult:
    """Queued/consumed: stopped at once. Running: terminating, and the agent is told now."""
    t = get_task(s, p, task_id, "developer")
    if p.kind == "task" and p.task_id != t.id and t.team_id != p.team_id:
        raise PermissionDeniedError("A task token can stop tasks of its own team only.")
    for attempt in range(1, STOP_ATTEMPTS + 1):
        try:
            _stop_once(s, t)
            break
        except ConflictError:
            # it moved meanwhile (its agent reported it started: PostgreSQL does not queue
            # writers as SQLite does): look again and stop what it is now
            if attempt == STOP_ATTEMPTS:
                raise
            s.refresh(t)
    return StopResult(task_id=t.id, status=Status(t.status))
