"""Who may send a request into a session, and whether the session can take one now.

Sending a request runs the app's code with the session's own token, which acts for the user
who started it: it can write what that user can (a handler may annotate a project, write team
files). So it takes the ``developer`` role, as starting or stopping a session does; a viewer
may watch a session but not drive it. A task token may call another session of its own team
(an app that sends images to a model-serving session). An agent token may not: an agent only
speaks its own protocol. A task of another team is a 404, as if it did not exist.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, bindparam, select
from sqlalchemy.orm import Session

from appyard.domain.status import TERMINAL, Status
from appyard.errors import ApiError, PermissionDeniedError
from appyard.server.db.models import Member, Task
from appyard.server.security import Principal
from appyard.server.services.access import get_task
from appyard.server.services.accounts import ROLE_RANK

#: statuses in which the app process runs (``terminating``: it is being stopped)
RUNNING = frozenset({Status.STARTED})


def is_ready(task: Any) -> bool:
    """The app said it is ready for calls (``AppSession.ready()``) and still runs unstopped."""
    return Status(task.status) in RUNNING and bool(task.ready)


#: what a request needs to know of its task, and the caller's role in its team, in one query
_TARGET = (
    select(Task.status, Task.ready, Task.agent_id, Task.team_id, Member.role)
    .select_from(Task)
    .outerjoin(Member, and_(Member.team_id == Task.team_id, Member.user_id == bindparam("user_id")))
    .where(Task.id == bindparam("task_id"))
)


def _goes_through(p: Principal, row: Any) -> bool:
    """The request may go as it is: a developer (or an instance admin, or a task token of the
    team acting for a developer), the app running and ready."""
    if row is None or row.agent_id is None or not row.ready:
        return False
    if Status(row.status) not in RUNNING:
        return False
    if p.kind == "task" and p.team_id != row.team_id:
        return False
    if p.kind == "user" and p.is_admin:
        return True
    return row.role is not None and ROLE_RANK[row.role] >= ROLE_RANK["developer"]


def request_target(s: Session, p: Principal, *, task_id: int) -> int:
    """The agent running ``task_id``, if the caller may send it a request and its app is
    running and ready; else 404 (not visible), 403 (role), or 409 naming the task's status.

    Every request into a session asks this, so the usual case is one query on the connection
    (no ORM object); anything else goes the way every other route checks a task, which says
    what is wrong."""
    if p.kind == "agent":
        raise PermissionDeniedError(
            "An agent token cannot send requests into sessions; use a user token (or an app's "
            "API_TOKEN)."
        )
    row = s.connection().execute(_TARGET, {"task_id": task_id, "user_id": p.user_id}).first()
    if _goes_through(p, row):
        assert row is not None
        return int(row.agent_id)
    t = get_task(s, p, task_id, "developer")
    status = Status(t.status)
    if status not in RUNNING or t.agent_id is None:
        if status in TERMINAL:
            what = f"has ended ({status.value})"
            todo = "start a new session of the app"
        elif status is Status.TERMINATING:
            what = "is being stopped (terminating)"
            todo = "start a new session of the app"
        else:
            what = f"has not started yet ({status.value})"
            todo = f"wait until it is ready: api.app.wait_until_ready_for_api_calls({task_id})"
        raise ApiError(
            f"Task {task_id} is not running: it {what}; {todo}.",
            status_code=409,
            code="not_running",
            field="task_id",
            details={"task_id": task_id, "status": status.value},
        )
    if not is_ready(t):
        raise ApiError(
            f"Task {task_id} is running but its app has not said it is ready for calls yet "
            "(a serving app calls session.ready() once its handlers serve). Wait for it: "
            f"api.app.wait_until_ready_for_api_calls({task_id}).",
            status_code=409,
            code="not_ready",
            field="task_id",
            details={"task_id": task_id, "status": status.value},
        )
    return t.agent_id
