"""``api.app``: the ecosystem catalog and app sessions (the calls of the start/stop tutorial).

``AppApi`` and ``AsyncAppApi`` are thin shells over the same calls (``_calls.apps``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from appyard.domain.status import Status
from appyard.sdk._async import AsyncCore
from appyard.sdk._calls import apps as calls
from appyard.sdk._calls.apps import SessionInfo, start_body, wrap_params
from appyard.sdk._calls.effects import twin_of
from appyard.sdk._calls.modules import lookup
from appyard.sdk._calls.tasks import (
    get_status,
    is_ready_for_api_calls,
    stop,
    wait_until_ready_for_api_calls,
)
from appyard.sdk._sync import SyncCore
from appyard.sdk._wait import MAX_POLL_S, READY_ATTEMPTS, READY_DELAY_S
from appyard.sdk.module_info import ModuleInfo

__all__ = ["AppApi", "AsyncAppApi", "SessionInfo", "start_body", "wrap_params"]


class AppApi:
    """Apps of the ecosystem and their sessions."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def get_ecosystem_module_id(self, slug: str) -> int:
        """The module id of an app slug (``owner/name``)."""
        return self._core.run(lookup(slug))

    def get_ecosystem_module_info(
        self, module_id: int | None = None, version: str | None = None, slug: str | None = None
    ) -> ModuleInfo:
        """The module with the manifest of ``version`` (the newest by default)."""
        return self._core.run(calls.get_ecosystem_module_info(module_id, version, slug))

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
        resources: dict[str, Any] | None = None,
        queue_anyway: bool = False,
    ) -> SessionInfo:
        """Start a session of the app; ``agent_id=None`` lets the server pick an online agent.

        ``workspace_id=None`` reads WORKSPACE_ID. The request carries a fresh idempotency key,
        so the SDK's retry of a lost answer never runs the app twice. ``proxy_keep_url`` and
        ``redirect_requests`` are accepted for compatibility and ignored. ``resources``
        raises or lowers what the app's ``resources`` ask of the agent's machine (``{"gpus":
        2}``, within its ``resources.max``); a start no agent of the team could ever run is a
        422 on ``resources`` unless ``queue_anyway``.
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
            resources=resources,
            queue_anyway=queue_anyway,
        )
        return self._core.run(calls.start(body))

    def wait(
        self,
        task_id: int,
        target_status: Status | str | None = None,
        attempts: int | None = None,
        attempt_delay_sec: float | None = None,
    ) -> Status:
        """``api.task.wait`` under the tutorial's argument names."""
        return self._core.run(calls.wait(task_id, target_status, attempts, attempt_delay_sec))

    def stop(self, task_id: int) -> Status:
        """Ask the session to stop; returns ``terminating`` (running) or ``stopped``."""
        return self._core.run(stop(task_id))

    def get_status(self, task_id: int) -> Status:
        """The session's status now."""
        return self._core.run(get_status(task_id))

    def is_ready_for_api_calls(self, task_id: int) -> bool:
        """Whether the session's app said it is ready for calls and runs unstopped (False for
        a session not found); ``api.task.is_ready_for_api_calls``."""
        return self._core.run(is_ready_for_api_calls(task_id))

    def wait_until_ready_for_api_calls(
        self,
        task_id: int,
        attempts: int = READY_ATTEMPTS,
        attempt_delay_sec: float | None = READY_DELAY_S,
        *,
        max_poll_sec: float = MAX_POLL_S,
    ) -> bool:
        """True once the session's app is ready for calls; False when ``attempts *
        attempt_delay_sec`` seconds pass first, or it stops or ends without being ready.
        Pushed by the server, not a look every ``attempt_delay_sec``."""
        return self._core.run(
            wait_until_ready_for_api_calls(task_id, attempts, attempt_delay_sec, max_poll_sec)
        )

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
        return self._core.run(calls.get_sessions(team_id, module_id, session_name, statuses))


@twin_of(AppApi)
class AsyncAppApi:
    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def get_ecosystem_module_id(self, slug: str) -> int:
        return await self._core.run(lookup(slug))

    async def get_ecosystem_module_info(
        self, module_id: int | None = None, version: str | None = None, slug: str | None = None
    ) -> ModuleInfo:
        return await self._core.run(calls.get_ecosystem_module_info(module_id, version, slug))

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
        resources: dict[str, Any] | None = None,
        queue_anyway: bool = False,
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
            resources=resources,
            queue_anyway=queue_anyway,
        )
        return await self._core.run(calls.start(body))

    async def wait(
        self,
        task_id: int,
        target_status: Status | str | None = None,
        attempts: int | None = None,
        attempt_delay_sec: float | None = None,
    ) -> Status:
        return await self._core.run(calls.wait(task_id, target_status, attempts, attempt_delay_sec))

    async def stop(self, task_id: int) -> Status:
        return await self._core.run(stop(task_id))

    async def get_status(self, task_id: int) -> Status:
        return await self._core.run(get_status(task_id))

    async def is_ready_for_api_calls(self, task_id: int) -> bool:
        return await self._core.run(is_ready_for_api_calls(task_id))

    async def wait_until_ready_for_api_calls(
        self,
        task_id: int,
        attempts: int = READY_ATTEMPTS,
        attempt_delay_sec: float | None = READY_DELAY_S,
        *,
        max_poll_sec: float = MAX_POLL_S,
    ) -> bool:
        return await self._core.run(
            wait_until_ready_for_api_calls(task_id, attempts, attempt_delay_sec, max_poll_sec)
        )

    async def get_sessions(
        self,
        team_id: int,
        module_id: int | None = None,
        show_disabled: bool = False,
        session_name: str | None = None,
        statuses: Iterable[Status | str] | None = None,
        with_shared: bool = False,
    ) -> list[SessionInfo]:
        return await self._core.run(calls.get_sessions(team_id, module_id, session_name, statuses))
