"""Starting a session: every check first, then its queued row, and the wake of its agent.

A start is on every session's path, so past the idempotency look it reads and writes with plain
statements built once (the workspace's team with the caller's role, the release, the agent's
team, the team's app) and one INSERT. Nothing is written before the last check passed: a
refusal leaves no task and no app.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Select, and_, bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from appyard.domain.status import Status
from appyard.errors import BadRequestError, ConflictError, NotFoundError
from appyard.schemas.tasks import SessionStarted, TaskStart
from appyard.server import keys
from appyard.server.db.models import Agent, App, Member, Module, Release, Task, Workspace, utcnow
from appyard.server.notifier import emit
from appyard.server.security import Principal
from appyard.server.services.access import get_task
from appyard.server.services.accounts import ROLE_RANK, get_workspace, require_user
from appyard.server.services.ecosystem import pick_release, runs_in_team, visible_module
from appyard.server.services.manifest import release_manifest, validate_state
from appyard.server.services.placement import check_start, need_for_start
from appyard.server.services.task_rows import TASKS
from appyard.server.services.task_targets import check_target

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
        select(
            Release.id,
            Release.version,
            Release.sha256,
            Release.config,
            Module.team_id.label("module_team_id"),
            Module.public,
        )
        .select_from(Module)
        .outerjoin(Release, on)
        .where(Module.id == bindparam("module_id"))
        .order_by(Release.id.desc())
        .limit(1)
    )


#: a module's newest release, and its release of a version
_NEWEST_RELEASE, _RELEASE_OF_VERSION = _release_of(False), _release_of(True)


def _newest_release(
    s: Session, p: Principal, module_id: int, version: str | None, team_id: int
) -> Any:
    """The release a start runs in ``team_id`` (id, version, sha256, config: not the readme),
    in one read with its module's owner; else a 404: the module's (missing, or private to another
    team: its id does not leak) or ``pick_release``'s, naming the versions there are."""
    statement = _NEWEST_RELEASE if version is None else _RELEASE_OF_VERSION
    params = {"module_id": module_id, "version": version}
    row = s.connection().execute(statement, params).first()
    if row is not None and not runs_in_team(row.module_team_id, row.public, team_id):
        raise NotFoundError(f"Module {module_id} not found in the ecosystem.", field="module_id")
    if row is None or row.id is None:
        visible_module(s, p, module_id)
        pick_release(s, module_id, version)  # refuses, naming the versions there are
        raise NotFoundError(f"Module {module_id} has no release to run.", field="module_id")
    return row


#: what a start reads and writes beyond the release: the agent's team, the team's app, the task
_AGENT_TEAM = select(Agent.team_id).where(Agent.id == bindparam("agent_id"))
_APP_OF = select(App.id).where(
    App.team_id == bindparam("team_id"), App.module_id == bindparam("module_id")
)
_NEW_TASK = TASKS.insert().returning(TASKS.c.id)


def start(
    s: Session,
    p: Principal,
    *,
    body: TaskStart,
    files_dir: Path,
    pipeline: tuple[int, str] | None = None,
) -> SessionStarted:
    """Queue a session after every check; a retried call with the same key returns the first.

    Nothing is written before the last check passed: a refusal leaves no task and no app.
    ``pipeline``: the run and step the session is an attempt of (the pipeline engine's).
    """
    user_id = require_user(p)
    prior: Task | None = None
    if body.idempotency_key:
        prior = s.scalar(
            select(Task).where(
                Task.user_id == user_id, Task.idempotency_key == body.idempotency_key
            )
        )
        if prior is not None:
            get_task(s, p, prior.id)
    team_id = _starting_team(s, p, body.workspace_id)
    module_id = body.module_id
    # a retry runs what the first start ran, even when a newer release came meanwhile
    version = prior.version if prior is not None and body.version is None else body.version
    release = _newest_release(s, p, module_id, version, team_id)
    params = dict(body.params)
    state = params.get("state", {}) if "state" in params else params
    if "state" not in params:
        params = {"state": state}
    if not isinstance(state, dict):
        raise BadRequestError("params.state must be a JSON object", field="params.state")
    if "context" in params and not isinstance(params["context"], dict):
        raise BadRequestError("params.context must be a JSON object", field="params.context")
    manifest = release_manifest(release.sha256, release.config)
    target = validate_state(manifest, state)
    need = need_for_start(manifest, body.resources)
    checked = check_target(s, files_dir=files_dir, team_id=team_id, target=target, state=state)
    if checked is not state:
        state = checked
        params = {**params, "state": state}
    if prior is not None:
        _same_start(prior, body, params, release.version)
        return _started(prior)
    db = s.connection()  # plain statements from here: a start is on every session's path
    if body.agent_id is not None:
        agent_team = db.execute(_AGENT_TEAM, {"agent_id": body.agent_id}).scalar()
        if agent_team != team_id:
            raise BadRequestError(
                f"agent_id {body.agent_id} is not an agent of team {team_id}; "
                "list the team's agents with api.agent.get_list(team_id).",
                field="agent_id",
            )
    check_start(s, team_id, need, body.agent_id, body.queue_anyway)
    app_id = db.execute(_APP_OF, {"team_id": team_id, "module_id": module_id}).scalar()
    if app_id is None:
        # the team's first session of the module: two starts at once may both get here, and
        # the second insert then meets the first one's row (in a savepoint: the start goes on)
        try:
            with s.begin_nested():
                app = App(team_id=team_id, module_id=module_id)
                s.add(app)
                s.flush()
                app_id = app.id
        except IntegrityError:
            app_id = db.execute(_APP_OF, {"team_id": team_id, "module_id": module_id}).scalar()
            assert app_id is not None
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
                pipeline_run_id=pipeline[0] if pipeline else None,
                pipeline_step=pipeline[1] if pipeline else None,
                resources=need.to_json() if need.asks() else None,
            ),
        ).scalar_one()
    except IntegrityError:
        raise ConflictError(
            "A session with this idempotency_key is being started; retry to get it.",
            field="idempotency_key",
        ) from None
    # the new task's own keys (``task_rows.task_keys``), and the agent chosen or else one of the
    # team's held polls
    wake = keys.agent(body.agent_id) if body.agent_id else keys.queue(team_id)
    emit(s, keys.task(task_id), keys.team(team_id), wake)
    return SessionStarted(
        task_id=task_id,
        user_id=user_id,
        module_id=module_id,
        app_id=app_id,
        status=Status.QUEUED,
    )


def _same_start(prior: Task, body: TaskStart, params: dict[str, Any], version: str) -> None:
    """A retry (the same idempotency key) must ask for what the first start asked for: else a
    409, rather than the first session returned as if it were this one."""
    asked = (
        body.workspace_id,
        body.module_id,
        body.agent_id,
        params,
        body.task_name,
        body.description,
        body.log_level,
        version,
    )
    first = (
        prior.workspace_id,
        prior.module_id,
        prior.requested_agent_id,
        prior.params,
        prior.name,
        prior.description,
        prior.log_level,
        prior.version,
    )
    if asked != first:
        raise ConflictError(
            f"idempotency_key {body.idempotency_key!r} was used for session {prior.id} with "
            "other arguments; use a new key for a new session.",
            field="idempotency_key",
        )


def _started(t: Task) -> SessionStarted:
    return SessionStarted(
        task_id=t.id,
        user_id=t.user_id,
        module_id=t.module_id,
        app_id=t.app_id,
        status=Status(t.status),
    )
