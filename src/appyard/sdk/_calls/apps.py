"""The calls of ``api.app``: the ecosystem catalog and app sessions (the start/stop tutorial)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, NamedTuple

from pydantic import ValidationError

from appyard.domain.status import Status
from appyard.errors import InvalidArgumentsError
from appyard.schemas.tasks import SessionStarted, TaskInfo, TaskStart
from appyard.sdk import env
from appyard.sdk._calls import modules, tasks
from appyard.sdk._calls.effects import Op, collect, request
from appyard.sdk._wait import MAX_POLL_S
from appyard.sdk.module_info import ModuleInfo


class SessionInfo(NamedTuple):
    """One app session; ``details`` is ``{}`` from ``start`` and the task record otherwise."""

    task_id: int
    user_id: int
    module_id: int
    app_id: int
    details: dict[str, Any]

    @classmethod
    def from_task(cls, task: TaskInfo) -> SessionInfo:
        return cls(task.id, task.user_id, task.module_id, task.app_id, task.model_dump(mode="json"))


def wrap_params(params: dict[str, Any] | None) -> dict[str, Any]:
    """``{"state": params}`` unless ``params`` already has ``state``."""
    params = dict(params or {})
    return params if "state" in params else {"state": params}


def start_body(
    *,
    agent_id: int | None,
    workspace_id: int | None,
    module_id: int | None,
    description: str,
    params: dict[str, Any] | None,
    log_level: str,
    users_id: int | None,
    app_version: str | None,
    is_branch: bool,
    task_name: str,
    restart_policy: str,
    resources: dict[str, Any] | None = None,
    queue_anyway: bool = False,
) -> dict[str, Any]:
    """The ``TaskStart`` body of ``start``, checked here so bad arguments fail before a request."""
    if module_id is None:
        raise InvalidArgumentsError(
            "module_id is required: get it with api.app.get_ecosystem_module_id(slug)"
        )
    if users_id is not None:
        raise InvalidArgumentsError(
            "users_id is not supported: a session runs as the token's user; "
            "use a token of that user to start on its behalf"
        )
    if is_branch:
        raise InvalidArgumentsError(
            "is_branch=True is not supported: appyard runs published releases; "
            "pass app_version=<release version> or None for the newest"
        )
    if restart_policy != "never":
        raise InvalidArgumentsError(
            f"restart_policy={restart_policy!r} is not supported; only 'never' is"
        )
    if workspace_id is None:
        workspace_id = env.workspace_id()
    try:
        body = TaskStart(
            workspace_id=workspace_id,
            module_id=module_id,
            agent_id=agent_id,
            version=app_version,
            params=wrap_params(params),
            task_name=task_name,
            description=description,
            log_level=log_level.lower(),  # type: ignore[arg-type]  # validated just below
            idempotency_key=uuid.uuid4().hex,
            resources=resources,
            queue_anyway=queue_anyway,
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise InvalidArgumentsError(f"Cannot start the app: {problems}") from None
    return body.model_dump(mode="json")


def get_ecosystem_module_info(
    module_id: int | None, version: str | None, slug: str | None
) -> Op[ModuleInfo]:
    if module_id is None and slug is None:
        raise InvalidArgumentsError("Either module_id or slug must be provided")
    if slug is not None:
        found = yield from modules.lookup(slug)
        if module_id is not None and int(module_id) != found:
            raise InvalidArgumentsError(
                f"module_id={module_id} and slug={slug!r} name different modules "
                f"({slug} is module {found}); pass one of them"
            )
        module_id = found
    assert module_id is not None
    return (yield from modules.get(module_id, version))


def start(body: dict[str, Any]) -> Op[SessionInfo]:
    """``body`` comes from :func:`start_body`; its idempotency key makes the start safe to
    send again."""
    data = yield from request("POST", "/tasks", json=body, idempotent=True)
    started = SessionStarted.model_validate(data)
    return SessionInfo(started.task_id, started.user_id, started.module_id, started.app_id, {})


def wait(
    task_id: int,
    target_status: Status | str | None,
    attempts: int | None,
    attempt_delay_sec: float | None,
) -> Op[Status]:
    return tasks.wait(task_id, target_status, attempts, attempt_delay_sec, None, MAX_POLL_S)


def get_sessions(
    team_id: int,
    module_id: int | None,
    session_name: str | None,
    statuses: Iterable[Status | str] | None,
) -> Op[list[SessionInfo]]:
    found = yield from collect(
        tasks.iter_list(team_id, module_id, statuses, session_name, tasks.PAGE_SIZE)
    )
    return [SessionInfo.from_task(task) for task in found]
