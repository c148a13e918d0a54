"""``api.app``: the ecosystem catalog and app sessions (the calls of the start/stop tutorial)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, NamedTuple

from pydantic import ValidationError

from appyard.domain.status import Status
from appyard.errors import InvalidArgumentsError, ModuleNotFoundInEcosystem, NotFoundError
from appyard.schemas.ecosystem import ModuleInfoWire
from appyard.schemas.tasks import SessionStarted, TaskInfo, TaskStart
from appyard.sdk import env
from appyard.sdk._core import AsyncCore, SyncCore
from appyard.sdk.module_info import ModuleInfo
from appyard.sdk.task_api import AsyncTaskApi, TaskApi


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


def _lookup_path(slug: str) -> tuple[str, dict[str, str]]:
    return "/modules/lookup", {"slug": slug}


def _not_found(slug: str) -> ModuleNotFoundInEcosystem:
    return ModuleNotFoundInEcosystem(f"Module {slug} not found in ecosystem", status_code=404)


def _check_ids(module_id: int | None, slug: str | None) -> None:
    if module_id is None and slug is None:
        raise InvalidArgumentsError("Either module_id or slug must be provided")


def _disagree(module_id: int, slug: str, found: int) -> InvalidArgumentsError:
    return InvalidArgumentsError(
        f"module_id={module_id} and slug={slug!r} name different modules "
        f"({slug} is module {found}); pass one of them"
    )


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
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise InvalidArgumentsError(f"Cannot start the app: {problems}") from None
    return body.model_dump(mode="json")


class AppApi:
    """Apps of the ecosystem and their sessions."""

    def __init__(self, core: SyncCore, task: TaskApi) -> None:
        self._core = core
        self._task = task

    def get_ecosystem_module_id(self, slug: str) -> int:
        """The module id of an app slug (``owner/name``)."""
        path, params = _lookup_path(slug)
        try:
            data = self._core.request("GET", path, params=params)
        except NotFoundError:
            raise _not_found(slug) from None
        return int(data["id"])

    def get_ecosystem_module_info(
        self, module_id: int | None = None, version: str | None = None, slug: str | None = None
    ) -> ModuleInfo:
        """The module with the manifest of ``version`` (the newest by default)."""
        _check_ids(module_id, slug)
        if slug is not None:
            found = self.get_ecosystem_module_id(slug)
            if module_id is not None and int(module_id) != found:
                raise _disagree(module_id, slug, found)
            module_id = found
        assert module_id is not None
        data = self._core.request("GET", f"/modules/{int(module_id)}", params={"version": version})
        return ModuleInfo.from_wire(ModuleInfoWire.model_validate(data))

    def start(
        self,
        agent_id: int | None = None,
        workspace_id: int | None = None,
        description: str = "",
        params: dict[str, Any] | None = None,
        log_level: str = "info",
        users_id: int | None = None,
        app_version: str | None = None,
        is_branch: bool = False,
        task_name: str = "run-from-python",
        restart_policy: str = "never",
        module_id: int | None = None,
        proxy_keep_url: bool = False,
        redirect_requests: dict[str, Any] | None = None,
    ) -> SessionInfo:
        """Start a session of the app; ``agent_id=None`` lets the server pick an online agent.

        ``workspace_id=None`` reads WORKSPACE_ID. The request carries a fresh idempotency key,
        so the SDK's retry of a lost answer never runs the app twice. ``proxy_keep_url`` and
        ``redirect_requests`` are accepted for compatibility and ignored.
        """
        body = start_body(
            agent_id=agent_id,
            workspace_id=workspace_id,
            module_id=module_id,
            description=description,
            params=params,
            log_level=log_level,
            users_id=users_id,
            app_version=app_version,
            is_branch=is_branch,
            task_name=task_name,
            restart_policy=restart_policy,
        )
        data = self._core.request("POST", "/tasks", json=body, idempotent=True)
        started = SessionStarted.model_validate(data)
        return SessionInfo(started.task_id, started.user_id, started.module_id, started.app_id, {})

    def wait(
        self,
        task_id: int,
        target_status: Status | str | None = None,
        attempts: int | None = None,
        attempt_delay_sec: float | None = None,
    ) -> Status:
        """``api.task.wait`` under the tutorial's argument names."""
        return self._task.wait(task_id, target_status, attempts, attempt_delay_sec)

    def stop(self, task_id: int) -> Status:
        """Ask the session to stop; returns ``terminating`` (running) or ``stopped``."""
        return self._task.stop(task_id)

    def get_status(self, task_id: int) -> Status:
        """The session's status now."""
        return self._task.get_status(task_id)

    def get_sessions(
        self,
        team_id: int,
        module_id: int | None = None,
        show_disabled: bool = False,
        session_name: str | None = None,
        statuses: Iterable[Status | str] | None = None,
        with_shared: bool = False,
    ) -> list[SessionInfo]:
        """Sessions of the app in the team, newest first, filtered on the server.

        ``show_disabled`` and ``with_shared`` are accepted for compatibility: appyard has no
        disabled or shared sessions, so every visible session is listed.
        """
        return [
            SessionInfo.from_task(task)
            for task in self._task.iter_list(team_id, module_id, statuses, session_name)
        ]


class AsyncAppApi:
    """The async twin of :class:`AppApi`."""

    def __init__(self, core: AsyncCore, task: AsyncTaskApi) -> None:
        self._core = core
        self._task = task

    async def get_ecosystem_module_id(self, slug: str) -> int:
        path, params = _lookup_path(slug)
        try:
            data = await self._core.request("GET", path, params=params)
        except NotFoundError:
            raise _not_found(slug) from None
        return int(data["id"])

    async def get_ecosystem_module_info(
        self, module_id: int | None = None, version: str | None = None, slug: str | None = None
    ) -> ModuleInfo:
        _check_ids(module_id, slug)
        if slug is not None:
            found = await self.get_ecosystem_module_id(slug)
            if module_id is not None and int(module_id) != found:
                raise _disagree(module_id, slug, found)
            module_id = found
        assert module_id is not None
        data = await self._core.request(
            "GET", f"/modules/{int(module_id)}", params={"version": version}
        )
        return ModuleInfo.from_wire(ModuleInfoWire.model_validate(data))

    async def start(
        self,
        agent_id: int | None = None,
        workspace_id: int | None = None,
        description: str = "",
        params: dict[str, Any] | None = None,
        log_level: str = "info",
        users_id: int | None = None,
        app_version: str | None = None,
        is_branch: bool = False,
        task_name: str = "run-from-python",
        restart_policy: str = "never",
        module_id: int | None = None,
        proxy_keep_url: bool = False,
        redirect_requests: dict[str, Any] | None = None,
    ) -> SessionInfo:
        body = start_body(
            agent_id=agent_id,
            workspace_id=workspace_id,
            module_id=module_id,
            description=description,
            params=params,
            log_level=log_level,
            users_id=users_id,
            app_version=app_version,
            is_branch=is_branch,
            task_name=task_name,
            restart_policy=restart_policy,
        )
        data = await self._core.request("POST", "/tasks", json=body, idempotent=True)
        started = SessionStarted.model_validate(data)
        return SessionInfo(started.task_id, started.user_id, started.module_id, started.app_id, {})

    async def wait(
        self,
        task_id: int,
        target_status: Status | str | None = None,
        attempts: int | None = None,
        attempt_delay_sec: float | None = None,
    ) -> Status:
        return await self._task.wait(task_id, target_status, attempts, attempt_delay_sec)

    async def stop(self, task_id: int) -> Status:
        return await self._task.stop(task_id)

    async def get_status(self, task_id: int) -> Status:
        return await self._task.get_status(task_id)

    async def get_sessions(
        self,
        team_id: int,
        module_id: int | None = None,
        show_disabled: bool = False,
        session_name: str | None = None,
        statuses: Iterable[Status | str] | None = None,
        with_shared: bool = False,
    ) -> list[SessionInfo]:
        return [
            SessionInfo.from_task(task)
            async for task in self._task.iter_list(team_id, module_id, statuses, session_name)
        ]
