"""What the app of a session reports of itself, with its own task token: progress, outputs,
and that it is ready for calls (a serving app: ``ready``, while it stays ``started``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from appyard.domain.status import Status
from appyard.errors import BadRequestError, ConflictError, PermissionDeniedError
from appyard.schemas.tasks import OutputsUpdate, ProgressUpdate, ReadyUpdate, TaskInfo
from appyard.server import keys
from appyard.server.db.models import Task, utcnow
from appyard.server.notifier import emit
from appyard.server.security import Principal
from appyard.server.services.access import get_task
from appyard.server.services.files import TeamFiles, normalize
from appyard.server.services.task_rows import mark_ready, read_row, task_keys
from appyard.server.services.tasks import task_info


def _own_task(s: Session, p: Principal, task_id: int) -> Task:
    t = get_task(s, p, task_id)
    if p.kind != "task" or p.task_id != t.id:
        raise PermissionDeniedError(
            "Only the app of this task (with its API_TOKEN) can report its progress or outputs."
        )
    return t


def set_progress(s: Session, p: Principal, *, task_id: int, body: ProgressUpdate) -> TaskInfo:
    t = _own_task(s, p, task_id)
    if body.total is not None and body.current > body.total:
        raise BadRequestError(
            f"progress current {body.current:g} is larger than total {body.total:g}",
            field="current",
        )
    t.progress = body.model_dump()
    t.updated_at = utcnow()
    emit(s, keys.progress(t.id), keys.team(t.team_id))
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
    s: Session, p: Principal, *, task_id: int, body: OutputsUpdate, files_dir: Path
) -> TaskInfo:
    t = _own_task(s, p, task_id)
    outputs = _team_file_outputs(files_dir, t.team_id, body.outputs)
    t.outputs = {**(t.outputs or {}), **outputs}
    t.updated_at = utcnow()
    emit(s, *task_keys(t))
    return task_info(t)


def set_ready(s: Session, p: Principal, *, task_id: int, body: ReadyUpdate) -> TaskInfo:
    """The app is ready for calls: ``ready`` on the task, which stays ``started``. Said again
    (a retried call, a new page URL): the same answer, ``ready_at`` kept from the first."""
    t = _own_task(s, p, task_id)
    if t.ready and t.ready_url == body.url:
        return task_info(t)
    row = mark_ready(s, t.id, body.url) if Status(t.status) is Status.STARTED else None
    if row is None:
        now = read_row(s, t.id)
        status = Status(now.status) if now is not None else Status(t.status)
        raise ConflictError(
            f"Task {t.id} is {status}; only a running (started) session can say it is ready "
            "for calls. Call session.ready() from the app once it serves, while it runs.",
            field="status",
            details={"status": str(status)},
        )
    return task_info(row)
